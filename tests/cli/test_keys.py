"""`rag keys create/list/revoke` as an operator runs them: the token printed once, the listing
without secrets, revokes seen by the server's KeyRing, and one clear line for every mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from api.keys import AuthError, KeyRing
from cli.main import app
from rag.config import load_settings

KEY_ENV = ("RAG_SERVER__API_KEYS", "RAG_SERVER__ADMIN_API_KEY", "RAG_SERVER__KEYS_FILE", "RAG_INDEX_DIR")


@pytest.fixture(autouse=True)
def _no_keys_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def index(tmp_path: Path) -> Path:
    return tmp_path / "index"


def rag(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def flat(text: str) -> str:
    """Output with rich's line wrapping undone, to match phrases."""
    return " ".join(text.split())


def ring(index: Path) -> KeyRing:
    return KeyRing.from_settings(load_settings(index_dir=index))


def test_create_prints_the_token_once_and_how_to_use_it(index: Path) -> None:
    r = rag("keys", "create", "--collection", "docs", "--scope", "read", "--scope", "write",
            "--name", "ci-bot", "--expires-in", "30d", "--index", str(index))  # fmt: skip
    assert r.exit_code == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("rag_") and "\n" not in token
    said = flat(r.stderr)
    assert "cannot be shown again" in said and "Authorization: Bearer <token>" in said
    principal = ring(index).authenticate(token)
    assert principal.key_id in said and principal.name == "ci-bot"
    assert principal.allows("docs", "write") and not principal.allows("docs", "admin")
    assert token not in (index / "keys.json").read_text()


def test_grants_for_several_collections_and_json_output(index: Path) -> None:
    r = rag("keys", "create", "--grant", "docs:admin", "--grant", "*:read", "--index", str(index), "--json")
    assert r.exit_code == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["grants"] == ["docs:admin", "*:read"] and created["expires_at"] is None
    assert "sha256" not in created and created["status"] == "active"
    principal = ring(index).authenticate(created["token"])
    assert principal.allows("wiki", "read") and principal.allows("docs", "admin")
    every = rag("keys", "create", "--collection", "*", "--scope", "admin", "--index", str(index), "--json")
    assert ring(index).authenticate(json.loads(every.stdout)["token"]).allows("any", "admin")


def test_list_shows_status_and_never_a_secret(index: Path) -> None:
    first = json.loads(
        rag("keys", "create", "-g", "docs:read", "-n", "one", "-i", str(index), "--json").stdout
    )
    second = json.loads(
        rag("keys", "create", "-g", "docs:read", "-n", "two", "-i", str(index), "--json").stdout
    )
    assert rag("keys", "revoke", second["id"], "--index", str(index)).exit_code == 0
    listed = rag("keys", "list", "--index", str(index), "--json")
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert rows[first["id"]]["status"] == "active" and rows[second["id"]]["status"] == "revoked"
    table = rag("keys", "list", "--index", str(index))
    for output in (listed.stdout, table.stdout):
        assert first["token"] not in output and first["id"] in output
        assert "sha256" not in output
    assert "revoked" in table.stdout and "one" in table.stdout and "docs:read" in table.stdout


def test_revoke_is_seen_by_a_running_servers_ring(index: Path) -> None:
    created = json.loads(rag("keys", "create", "-g", "docs:read", "-i", str(index), "--json").stdout)
    live = ring(index)
    assert live.authenticate(created["token"]).key_id == created["id"]
    r = rag("keys", "revoke", created["id"], "--index", str(index))
    assert r.exit_code == 0 and created["id"] in r.stderr
    with pytest.raises(AuthError) as caught:
        live.authenticate(created["token"])
    assert caught.value.reason == "revoked"


def test_the_keys_file_setting_is_honoured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "secrets" / "api-keys.json"
    monkeypatch.setenv("RAG_SERVER__KEYS_FILE", str(elsewhere))
    r = rag("keys", "create", "-g", "docs:read", "-i", str(tmp_path / "index"))
    assert r.exit_code == 0 and elsewhere.is_file() and not (tmp_path / "index" / "keys.json").exists()
    assert str(elsewhere) in flat(r.stderr)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--grant", "docs:reed"], "read, write, admin"),
        (["create", "--collection", "Docs!", "--scope", "read"], "read, write, admin"),
        (["create", "--collection", "docs"], "--collection needs --scope"),
        (["create", "--scope", "read"], "--scope needs --collection"),
        (["create"], "--grant docs:read"),
        (["create", "-g", "docs:read", "--expires-in", "soon"], "units"),
        (["create", "-g", "docs:read", "--expires-in", "0d"], "positive number"),
        (["revoke", "k_00000000"], "rag keys list"),
    ],
)
def test_mistakes_are_one_line_and_exit_1(index: Path, args: list[str], message: str) -> None:
    r = rag("keys", *args, "--index", str(index))
    assert r.exit_code == 1
    assert message in flat(r.stderr) and "Traceback" not in r.stderr
    assert not (index / "keys.json").exists()


def test_help_teaches_the_commands() -> None:
    root = Path(__file__).resolve().parents[2]
    run = [sys.executable, "-m", "cli"]
    top = subprocess.run([*run, "--help"], capture_output=True, text=True, cwd=root, timeout=120)
    assert top.returncode == 0 and "keys" in top.stdout
    r = subprocess.run([*run, "keys", "--help"], capture_output=True, text=True, cwd=root, timeout=120)
    assert r.returncode == 0
    text = flat(r.stdout)
    for word in ("create", "list", "revoke", "Authorization: Bearer", "shown once"):
        assert word in text
    create = flat(rag("keys", "create", "--help").stdout)
    assert "--expires-in" in create and "--grant" in create and "every collection" in create
