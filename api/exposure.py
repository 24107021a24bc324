"""The start-up check of who can reach the server: `rag serve` refuses to bind a non-loopback
address (0.0.0.0, ::, a LAN address, a host name other than localhost) while no API key is
configured, because every document would then be readable by anyone on the network.

``server.insecure_no_auth`` (``rag serve --insecure-no-auth``) turns the refusal into a warning,
logged at every start so it is never forgotten. A non-loopback bind whose ``server.allowed_hosts``
are all loopback names is warned about too: every remote request would get 400 (api/hosts.py).
"""

from __future__ import annotations

from api.hosts import is_loopback
from rag.config import Settings
from rag.errors import ConfigError

KEY_EXAMPLE = """'[{"key": "<a long random secret>", "scopes": ["*:read"]}]'"""


def check_exposure(settings: Settings, keys_configured: bool) -> str | None:
    """None when serving as configured is safe; a warning to log when it is allowed but risky.

    Raises ConfigError for a non-loopback bind with no key and no ``server.insecure_no_auth``."""
    server = settings.server
    if is_loopback(server.host):
        return None
    warnings = []
    if not keys_configured:
        if not server.insecure_no_auth:
            raise ConfigError(_no_key(settings))
        warnings.append(
            f"serving on {server.host!r} (reachable from other machines) with no API key "
            "(--insecure-no-auth, server.insecure_no_auth): anyone who can reach this port can read "
            "every document; create a key with `rag keys create` and drop the flag"
        )
    if all(is_loopback(host) for host in server.allowed_hosts):
        warnings.append(
            f"serving on {server.host!r}, but server.allowed_hosts ({', '.join(server.allowed_hosts)}) "
            "are loopback names only, so every request from another machine gets 400; add the name or "
            "address clients use (env RAG_SERVER__ALLOWED_HOSTS, a JSON list)"
        )
    return "; ".join(warnings) or None


def _no_key(settings: Settings) -> str:
    host = settings.server.host
    return (
        f"refusing to serve on {host!r}: it is reachable from other machines and no API key is "
        "configured, so anyone on the network could read every document. Create a key with "
        f"`rag keys create --collection default --scope read --index {settings.index_dir}` (or set "
        f"RAG_SERVER__API_KEYS={KEY_EXAMPLE}) and send it as `Authorization: Bearer <key>`; or "
        "serve on 127.0.0.1 (--host 127.0.0.1); or, on a network you trust, pass --insecure-no-auth "
        "(server.insecure_no_auth)"
    )
