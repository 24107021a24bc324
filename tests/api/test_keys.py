"""Scoped API keys (api/keys.py): hash-only storage, scopes, refusals by reason, live reload, the
environment's keys and the legacy admin key, and creates that race without losing a key."""

from __future__ import annotations

import json
import logging
import stat
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from api.keys import ALL, AuthError, KeyFile, KeyRing, Principal, keys_path, parse_grant
from rag.config import Settings
from rag.errors import ConfigError

ENV_SECRET = "env-secret-0123456789-abcdef"
ADMIN_SECRET = "legacy-admin-secret-9876543210"


def make_settings(tmp_path: Path, **server: object) -> Settings:
    return Settings(index_dir=tmp_path / "index", server=server)


@pytest.fixture
def keyfile(tmp_path: Path) -> KeyFile:
    return KeyFile(keys_path(make_settings(tmp_path)))


def reason(ring: KeyRing, token: str | None) -> str:
    with pytest.raises(AuthError) as caught:
        ring.authenticate(token)
    if token:
        assert token not in str(caught.value)
    return caught.value.reason


def test_keys_file_defaults_to_the_index_dir_and_follows_the_setting(tmp_path: Path) -> None:
    assert keys_path(make_settings(tmp_path)) == tmp_path / "index" / "keys.json"
    assert keys_path(make_settings(tmp_path, keys_file=tmp_path / "k.json")) == tmp_path / "k.json"


def test_only_the_hash_is_stored_in_a_file_only_its_owner_reads(keyfile: KeyFile) -> None:
    record, token = keyfile.create("ci-bot", ["docs:read"])
    text = keyfile.path.read_text()
    secret = token.rsplit("_", 1)[-1]
    assert token not in text and secret not in text
    assert token.startswith("rag_" + record.id.removeprefix("k_") + "_")
    assert record.id.startswith("k_") and len(record.id) == len("k_") + 8
    assert json.loads(text)["keys"][0]["sha256"] == record.sha256
    assert stat.S_IMODE(keyfile.path.stat().st_mode) == 0o600
    assert keyfile.records() == [record]


def test_scope_hierarchy_and_every_collection() -> None:
    writer = Principal("k_1", "w", frozenset({("docs", "write")}))
    assert writer.allows("docs", "read") and writer.allows("docs", "write")
    assert not writer.allows("docs", "admin") and not writer.allows("wiki", "read")
    admin = Principal("k_2", "a", frozenset({(ALL, "admin"), ("docs", "read")}))
    assert admin.allows("anything", "admin") and admin.readable() == ALL
    mixed = Principal("k_3", "m", frozenset({("docs", "read"), ("wiki", "admin"), (ALL, "read")}))
    assert mixed.collections("write") == frozenset({"wiki"}) and mixed.readable() == ALL
    assert not mixed.allows("docs", "write")


@pytest.mark.parametrize(
    "bad", ["docs", "docs:reed", "Docs:read", ":read", "a/b:read", "docs:read:x", "docs\n:read"]
)
def test_a_bad_grant_names_the_valid_scopes(bad: str, keyfile: KeyFile) -> None:
    with pytest.raises(ValueError, match="read, write, admin"):
        parse_grant(bad)
    with pytest.raises(ValueError, match="read, write, admin"):
        keyfile.create("x", [bad])
    assert not keyfile.path.exists()


def test_tokens_are_refused_with_their_reason(tmp_path: Path, keyfile: KeyFile) -> None:
    active, token = keyfile.create("reader", ["docs:read", "wiki:write"])
    _, gone = keyfile.create("gone", ["docs:read"])
    _, old = keyfile.create("old", ["docs:read"], expires_at=datetime.now(UTC) + timedelta(hours=1))
    keyfile.revoke(keyfile.records()[1].id)
    _expire(keyfile.path, "old")
    ring = KeyRing.from_settings(make_settings(tmp_path))
    principal = ring.authenticate(token)
    assert principal.key_id == active.id and principal.name == "reader"
    assert principal.allows("wiki", "read") and not principal.allows("wiki", "admin")
    assert reason(ring, None) == "missing" and reason(ring, "") == "missing"
    assert reason(ring, token + "x") == "unknown" and reason(ring, "rag_00000000_nope") == "unknown"
    assert reason(ring, gone) == "revoked"
    assert reason(ring, old) == "expired"
    assert ring.configured


def _expire(path: Path, name: str) -> None:
    """Move a key's expiry into the past, as time passing would."""
    data = json.loads(path.read_text())
    for entry in data["keys"]:
        if entry["name"] == name:
            entry["expires_at"] = "2020-01-01T00:00:00Z"
    path.write_text(json.dumps(data))


def test_a_past_or_naive_expiry_is_refused_at_creation(keyfile: KeyFile) -> None:
    with pytest.raises(ValueError, match="in the past"):
        keyfile.create("x", ["docs:read"], expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(ValueError, match="timezone"):
        keyfile.create("x", ["docs:read"], expires_at=datetime(2099, 1, 1))


def test_a_running_ring_sees_revoke_and_create_without_a_rebuild(tmp_path: Path, keyfile: KeyFile) -> None:
    ring = KeyRing.from_settings(make_settings(tmp_path))
    assert not ring.configured
    record, token = keyfile.create("late", ["docs:read"])
    assert ring.configured and ring.authenticate(token).key_id == record.id
    keyfile.revoke(record.id)
    assert reason(ring, token) == "revoked"
    assert ring.configured  # a revoked key keeps reads locked


def test_revoking_an_unknown_id_says_where_to_look(keyfile: KeyFile) -> None:
    keyfile.create("a", ["docs:read"])
    with pytest.raises(ValueError, match="rag keys list"):
        keyfile.revoke("k_deadbeef")
    first = keyfile.revoke(keyfile.records()[0].id)
    assert keyfile.revoke(first.id).revoked_at == first.revoked_at


def test_a_corrupt_keys_file_keeps_the_last_good_keys(
    tmp_path: Path, keyfile: KeyFile, caplog: pytest.LogCaptureFixture
) -> None:
    record, token = keyfile.create("kept", ["docs:read"])
    ring = KeyRing.from_settings(make_settings(tmp_path))
    good = keyfile.path.read_text()
    keyfile.path.write_text("{ not json")
    with caplog.at_level(logging.ERROR, logger="rag.api.keys"):
        assert ring.authenticate(token).key_id == record.id
        ring.authenticate(token)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "not valid JSON" in errors[0].getMessage()
    assert token not in caplog.text
    keyfile.path.unlink()  # deleting the file does not unlock the server either
    assert ring.authenticate(token).key_id == record.id
    keyfile.path.write_text(good.replace('"revoked_at": null', '"revoked_at": "2024-01-01T00:00:00Z"'))
    assert reason(ring, token) == "revoked"
    keyfile.path.write_text("[")
    with pytest.raises(ConfigError, match="not valid JSON"):
        KeyRing.from_settings(make_settings(tmp_path))


def test_environment_keys_are_hashed_scoped_and_may_expire(tmp_path: Path) -> None:
    entries = [
        {"key": ENV_SECRET, "scopes": ["docs:read", "wiki:admin"], "name": "ci", "expires_at": None},
        {"key": "another-env-secret", "scopes": ["*:read"], "expires_at": "2020-01-01T00:00:00Z"},
    ]
    ring = KeyRing.from_settings(make_settings(tmp_path, api_keys=SecretStr(json.dumps(entries))))
    assert ring.configured
    ci = ring.authenticate(ENV_SECRET)
    assert ci.key_id == "env:ci" and ci.allows("wiki", "write") and not ci.allows("docs", "write")
    assert reason(ring, "another-env-secret") == "expired"
    assert ENV_SECRET not in repr(ring.__dict__)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"key": "' + ENV_SECRET + '"}', "JSON list"),
        (json.dumps([{"key": ENV_SECRET, "scopes": ["docs:reed"]}]), "read, write, admin"),
        (json.dumps([{"key": ENV_SECRET, "scope": ["docs:read"]}]), "unknown fields scope"),
        (json.dumps([{"key": ENV_SECRET, "scopes": []}]), "at least one grant"),
        (json.dumps([{"key": "", "scopes": ["docs:read"]}]), "non-empty string key"),
        (json.dumps([{"key": ENV_SECRET, "scopes": ["a:read"], "expires_at": "2030-01-01"}]), "timezone"),
        (json.dumps([{"key": ENV_SECRET, "scopes": ["a:read"], "name": "x"}] * 2), "used twice"),
    ],
)
def test_bad_environment_keys_name_the_variable_not_the_secret(
    tmp_path: Path, value: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        KeyRing.from_settings(make_settings(tmp_path, api_keys=SecretStr(value)))
    text = str(caught.value)
    assert "RAG_SERVER__API_KEYS" in text and message in text
    assert ENV_SECRET not in text


def test_the_admin_api_key_has_every_scope_on_every_collection(tmp_path: Path) -> None:
    ring = KeyRing.from_settings(make_settings(tmp_path, admin_api_key=SecretStr(ADMIN_SECRET)))
    assert ring.configured
    admin = ring.authenticate(ADMIN_SECRET)
    assert admin.key_id == "admin" and admin.grants == frozenset({(ALL, "admin")})
    assert admin.allows("any-collection", "admin") and admin.readable() == ALL
    assert reason(ring, ADMIN_SECRET.upper()) == "unknown"
    assert not KeyRing.from_settings(make_settings(tmp_path, admin_api_key=SecretStr(""))).configured


def test_concurrent_creates_in_threads_keep_every_key(keyfile: KeyFile) -> None:
    threads, per_thread = 8, 5
    tokens: list[str] = []

    def work() -> None:
        for _ in range(per_thread):
            tokens.append(keyfile.create("t", ["docs:read"])[1])

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len({r.id for r in keyfile.records()}) == threads * per_thread
    ring = KeyRing(keyfile, [])
    assert all(ring.authenticate(t).name == "t" for t in tokens)


CREATE_LOOP = """
import sys
from pathlib import Path
from api.keys import KeyFile
keyfile = KeyFile(Path(sys.argv[1]))
for _ in range(int(sys.argv[2])):
    keyfile.create("proc", ["docs:read"])
"""


def test_concurrent_creates_in_two_processes_keep_every_key(keyfile: KeyFile) -> None:
    per_process = 15
    root = Path(__file__).resolve().parents[2]
    procs = [
        subprocess.Popen([sys.executable, "-c", CREATE_LOOP, str(keyfile.path), str(per_process)], cwd=root)
        for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert len({r.id for r in keyfile.records()}) == 2 * per_process
