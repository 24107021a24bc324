"""The one way into Ray (cluster.address): imported lazily, so nothing needs Ray unless it is used.

Ray is an optional extra (``pip install 'rag-service[ray]'``). Everything scale-out does goes
through here: :func:`connect` joins the configured cluster once per process (a second call with
the same address reuses the connection), and a missing install or an unreachable cluster is a
:class:`rag.errors.ClusterError` that says what to do.
"""

from __future__ import annotations

import logging
import os
import threading
from types import ModuleType

from rag.errors import ClusterError

NAMESPACE = "rag-service"  # named actors (the search shards) live here, shared by API replicas
INSTALL_HINT = "install it with `pip install 'rag-service[ray]'` (or `pip install ray`)"
_lock = threading.Lock()
_connected: str | None = None  # the address this process joined


def ray_module() -> ModuleType:
    """``import ray``, or a ClusterError naming the extra that provides it."""
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(f"cluster.address is set but Ray is not installed: {INSTALL_HINT}") from exc
    return ray


def connect(address: str) -> ModuleType:
    """Join the Ray cluster at ``address`` (once per process) and return the ``ray`` module.

    The driver's working directory is not shipped to the workers: they import this package from
    their own install, so every node needs the same rag-service version installed."""
    global _connected
    ray = ray_module()
    with _lock:
        if ray.is_initialized():
            if _connected not in (None, address):
                raise ClusterError(
                    f"this process is already connected to the Ray cluster at {_connected!r}, not "
                    f"{address!r}; use one cluster.address per process"
                )
            return ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report to Ray's servers
        try:
            # log_to_driver=False: workers' output stays in the cluster's logs, not on our stderr.
            ray.init(address=address, namespace=NAMESPACE, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ClusterError(
                f"cannot connect to the Ray cluster at cluster.address={address!r} ({exc}); start one "
                "with `ray start --head` or correct the address"
            ) from exc
        _connected = address
    return ray


def disconnect() -> None:
    """Leave the cluster (tests, and a process that switches clusters); a no-op when not joined."""
    global _connected
    with _lock:
        if _connected is not None:
            import ray

            ray.shutdown()
            _connected = None
