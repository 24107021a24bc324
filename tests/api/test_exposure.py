"""Who may reach the server: the Host header check (api/hosts.py), CORS closed unless origins are
configured, and the start-up exposure check (api/exposure.py).

In process with the real embedder and index and a scripted generator; one test also asks the real
`rag serve` process (light_server)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.exposure import check_exposure
from api.hosts import host_allowed, host_name, is_loopback
from rag.components import build_components
from rag.config import Settings, load_settings
from rag.errors import ConfigError
from rag.protocols import Embedder
from tests.rag.test_pipeline import ScriptedGenerator

APP_ORIGIN = "https://app.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}


@pytest.fixture(scope="module")
def client(built_index: Settings, embedder: Embedder) -> Iterator[TestClient]:
    settings = load_settings(index_dir=built_index.index_dir, **{"server.cors_origins": [APP_ORIGIN]})
    components = build_components(settings, embedder=embedder, generator=ScriptedGenerator("Port 7341."))
    with TestClient(create_app(settings, components=components), base_url="http://127.0.0.1") as c:
        yield c


# ----------------------------------------------------------------------------- Host header


@pytest.mark.parametrize(
    "host", ["evil.example", "attacker.com:8000", "127.0.0.1.evil.example", "localhost.evil"]
)
@pytest.mark.parametrize("path", ["/healthz", "/v1/search", "/v1/documents"])
def test_a_foreign_host_is_refused_with_the_setting_named(client: TestClient, host: str, path: str) -> None:
    r = client.get(f"http://{host}{path}")
    assert r.status_code == 400, r.text
    body = r.json()
    assert set(body) == {"error"}
    assert "server.allowed_hosts" in body["error"] and "RAG_SERVER__ALLOWED_HOSTS" in body["error"]
    assert host_name(host) in body["error"]


def test_a_foreign_host_on_the_chat_routes_gets_openai_s_shape(client: TestClient) -> None:
    r = client.post("http://evil.example/v1/chat/completions", json={})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "host_not_allowed" and "server.allowed_hosts" in error["message"]


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:1234", "[::1]:8000", "LOCALHOST", "127.0.0.1"])
def test_loopback_hosts_pass(client: TestClient, host: str) -> None:
    r = client.get(f"http://{host}/healthz")
    assert r.status_code == 200, r.text


def test_the_real_server_checks_the_host_too(light_server: httpx.Client) -> None:
    assert light_server.get("/healthz", headers={"Host": "evil.example"}).status_code == 400
    assert light_server.get("/healthz", headers={"Host": "localhost:8000"}).status_code == 200


@pytest.mark.parametrize(
    ("host", "allowed", "expected"),
    [
        ("rag.example.org:443", ["rag.example.org"], True),
        ("RAG.example.org.", ["rag.example.org"], True),
        ("a.internal", ["*.internal"], True),
        ("internal", ["*.internal"], False),
        ("eviLinternal", ["*.internal"], False),
        ("anything:1", ["*"], True),
        ("[0:0:0:0:0:0:0:1]:80", ["::1"], True),
        ("[::1]junk", ["::1"], False),
        ("localhost:http", ["localhost"], False),
        ("", ["*"], False),
    ],
)
def test_host_matching(host: str, allowed: list[str], expected: bool) -> None:
    assert host_allowed(host, allowed) is expected


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("rag.example.org", False),
        ("", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


# ------------------------------------------------------------------------------------ CORS


def test_a_preflight_from_an_unknown_origin_gets_no_allow_origin(client: TestClient) -> None:
    r = client.options("/v1/query", headers={"Origin": "https://evil.example", **PREFLIGHT})
    assert "access-control-allow-origin" not in r.headers


def test_a_configured_origin_may_call_the_api(client: TestClient) -> None:
    r = client.options("/v1/query", headers={"Origin": APP_ORIGIN, **PREFLIGHT})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    r = client.get("/healthz", headers={"Origin": APP_ORIGIN})
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "retry-after" in r.headers["access-control-expose-headers"].lower()
    assert (
        "access-control-allow-origin"
        not in client.get("/healthz", headers={"Origin": "https://x.example"}).headers
    )


def test_cors_is_closed_by_default(light_server: httpx.Client) -> None:
    r = light_server.options("/v1/query", headers={"Origin": APP_ORIGIN, **PREFLIGHT})
    assert "access-control-allow-origin" not in r.headers
    r = light_server.get("/healthz", headers={"Origin": APP_ORIGIN})
    assert "access-control-allow-origin" not in r.headers


# ------------------------------------------------------------------------ start-up exposure


def _settings(**server: object) -> Settings:
    return load_settings(**{f"server.{k}": v for k, v in server.items()})


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_needs_no_key(host: str) -> None:
    assert check_exposure(_settings(host=host), keys_configured=False) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "rag.example.org"])
def test_a_non_loopback_bind_without_a_key_is_refused(host: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_exposure(_settings(host=host), keys_configured=False)
    message = str(err.value)
    assert "rag keys create --collection default --scope read --index" in message
    assert "RAG_SERVER__API_KEYS" in message and "--insecure-no-auth" in message


def test_insecure_no_auth_is_a_warning() -> None:
    settings = _settings(host="0.0.0.0", insecure_no_auth=True, allowed_hosts=["rag.example.org"])
    warning = check_exposure(settings, keys_configured=False)
    assert warning is not None and "with no API key" in warning and "allowed_hosts" not in warning


def test_a_key_and_a_public_name_need_no_warning() -> None:
    assert (
        check_exposure(_settings(host="0.0.0.0", allowed_hosts=["rag.example.org"]), keys_configured=True)
        is None
    )


def test_loopback_only_allowed_hosts_on_a_public_bind_are_warned_about() -> None:
    warning = check_exposure(_settings(host="0.0.0.0"), keys_configured=True)
    assert warning is not None and "server.allowed_hosts" in warning and "gets 400" in warning
