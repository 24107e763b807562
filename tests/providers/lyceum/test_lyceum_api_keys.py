"""Personal API keys (api.md section 2): the client makes and revokes them, and the
fake lets a key it issued act as the account's own keys do until it is revoked or
expires."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from fake_lyceum import API, DEFAULT_KEY, DEFAULT_ORG, FakeLyceum
from trainctl.errors import CredentialsError, OperationFailed, ResourceLeft
from trainctl.providers.lyceum import settings
from trainctl.providers.lyceum.client import LyceumClient

KEY_LINE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFake test"


@pytest.fixture
def fake(monkeypatch):
    with FakeLyceum() as f:
        monkeypatch.setenv("TRAINCTL_LYCEUM_API_URL", f.url)
        monkeypatch.setenv("LYCEUM_API_KEY", DEFAULT_KEY)
        monkeypatch.setenv("LYCEUM_ORG", DEFAULT_ORG)
        yield f


def make_client() -> LyceumClient:
    """A client for the key and org in the environment (read at its first request)."""
    return LyceumClient(settings.load(), backoff=0.01)


@pytest.fixture
def client(fake):
    return make_client()


def in_hours(hours: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(hours=hours)


def client_with_key(monkeypatch, secret: str) -> LyceumClient:
    monkeypatch.setenv("LYCEUM_API_KEY", secret)
    return make_client()


def raw(fake: FakeLyceum, method: str, path: str, token: str, **kw) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "X-Org-Slug": DEFAULT_ORG}
    return httpx.request(method, fake.url + API + path, headers=headers, timeout=5, **kw)


def test_create_sends_the_documented_body_and_returns_the_secret(fake, client):
    expires = datetime(2031, 5, 6, 9, 30, tzinfo=timezone(timedelta(hours=2)))
    secret = client.create_api_key("guard-vm-1", expires)
    post = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/api-keys/")]
    assert post[0].path == f"{API}/auth/api-keys/"
    assert post[0].body == {"key_name": "guard-vm-1", "expires_at": "2031-05-06T07:30:00.000Z"}
    assert secret.startswith("lk_")
    issued = fake.issued_key(secret)
    assert issued is not None and issued.key_name == "guard-vm-1" and issued.org == DEFAULT_ORG
    assert issued.expires == expires.timestamp()
    (listed,) = client.api_keys()
    assert listed["key_name"] == "guard-vm-1" and listed["id"] == issued.id
    assert listed["expires_at"] == "2031-05-06T07:30:00+00:00"
    assert secret not in str(listed)


def test_a_time_without_timezone_is_refused_before_any_request(fake, client):
    with pytest.raises(ValueError, match="timezone"):
        client.create_api_key("guard", datetime(2031, 1, 1))
    assert fake.requests == []


def test_the_new_key_deletes_a_vm(fake, client, monkeypatch):
    vm_id = client.create_vm({"user_public_key": KEY_LINE}, display="d1", timeout=10)["vm_id"]
    secret = client.create_api_key("guard-d1", in_hours(2))
    guard = client_with_key(monkeypatch, secret)
    guard.delete_vm(vm_id)
    assert fake.vms[vm_id].status == "terminated"
    delete = fake.requests[-1]
    assert (delete.method, delete.path, delete.status) == ("DELETE", f"{API}/vms/{vm_id}", 200)
    assert delete.headers["authorization"] == f"Bearer {secret}"


def test_revoke_makes_the_key_401_and_is_idempotent(fake, client, monkeypatch):
    secret = client.create_api_key("guard-d2", in_hours(2))
    client.create_api_key("other", in_hours(2))
    assert raw(fake, "GET", "/vms/list", secret).status_code == 200
    assert client.revoke_api_key("guard-d2") is True
    r = raw(fake, "GET", "/vms/list", secret)
    assert r.status_code == 401 and r.json() == {"detail": "Invalid or expired token"}
    with pytest.raises(CredentialsError):
        client_with_key(monkeypatch, secret).vms()
    assert client.revoke_api_key("guard-d2") is False
    assert [k.key_name for k in fake.issued if k.revoked] == ["guard-d2"]
    assert [k["key_name"] for k in client.api_keys()] == ["other"]
    deletes = [r for r in fake.requests if r.method == "DELETE"]
    assert [r.path for r in deletes] == [f"{API}/auth/api-keys/{fake.issued[0].id}"]


def test_revoke_of_an_unknown_name_is_false(fake, client):
    client.create_api_key("guard-d3", in_hours(2))
    assert client.revoke_api_key("no-such-key") is False
    assert not any(k.revoked for k in fake.issued)
    assert not any(r.method == "DELETE" for r in fake.requests)


def test_revoke_takes_every_key_of_the_name(fake, client):
    first = client.create_api_key("twice", in_hours(2))
    second = client.create_api_key("twice", in_hours(2))
    assert client.revoke_api_key("twice") is True
    for secret in (first, second):
        assert raw(fake, "GET", "/vms/list", secret).status_code == 401


def test_an_expired_key_is_401(fake, client):
    secret = client.create_api_key("short", datetime.now(timezone.utc) + timedelta(seconds=0.5))
    assert raw(fake, "GET", "/machine-types", secret).status_code == 200
    time.sleep(max(0.0, fake.issued_key(secret).expires - time.time()) + 0.05)
    r = raw(fake, "GET", "/machine-types", secret)
    assert r.status_code == 401
    # expired, not revoked: it is still listed
    assert [k["key_name"] for k in client.api_keys()] == ["short"]


def test_a_key_switched_off_is_401_until_switched_on(fake, client):
    secret = client.create_api_key("toggled", in_hours(1))
    key_id = fake.issued_key(secret).id
    toggle = f"/auth/api-keys/{key_id}/toggle"
    assert raw(fake, "PATCH", toggle, DEFAULT_KEY).json()["is_active"] is False
    assert raw(fake, "GET", "/vms/list", secret).status_code == 401
    assert raw(fake, "PATCH", toggle, DEFAULT_KEY).json()["is_active"] is True
    assert raw(fake, "GET", "/vms/list", secret).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"key_name": ""},
        {"key_name": 7},
        {"key_name": "k", "expires_at": "2031-01-01T00:00:00"},  # no timezone
        {"key_name": "k", "expires_at": "next year"},
        {"key_name": "k", "expires_at": "2001-01-01T00:00:00Z"},  # past
        {"key_name": "k", "scopes": ["vms"]},
        ["k"],
    ],
)
def test_the_fake_refuses_a_bad_create_body(fake, body):
    r = raw(fake, "POST", "/auth/api-keys/", DEFAULT_KEY, json=body)
    assert r.status_code == 422
    assert all({"loc", "msg", "type"} <= set(e) for e in r.json()["detail"])
    assert fake.issued == []


def test_the_fake_keeps_to_the_documented_paths(fake):
    assert raw(fake, "GET", "/auth/api-keys", DEFAULT_KEY).status_code == 404  # no slash
    assert raw(fake, "DELETE", "/auth/api-keys/nope", DEFAULT_KEY).status_code == 404
    assert raw(fake, "PUT", "/auth/api-keys/", DEFAULT_KEY, json={}).status_code == 405
    assert raw(fake, "GET", "/auth/api-keys/", "lk_unknown").status_code == 401


def test_the_secret_never_shows(fake, client, monkeypatch, caplog):
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        secret = client.create_api_key("quiet", in_hours(1))
        guard = client_with_key(monkeypatch, secret)
        guard.vms()
        seen += [repr(client), repr(guard), repr(guard.credentials), str(client.api_keys())]
        # an answer that cannot be read, which holds a new secret: the error does
        # not quote it, and the key nobody received is revoked
        seen_secrets: list[str] = []
        fake.rewrite_next(
            lambda answer: seen_secrets.append(answer["api_key"]) or {"key": answer},
            method="POST",
            path_contains="/api-keys/",
        )
        with pytest.raises(OperationFailed) as e:
            client.create_api_key("lost", in_hours(1))
        assert "was revoked" in str(e.value)
        seen.append(str(e.value))
        lost = seen_secrets[0]
        fake.rewrite_next(b'{"key_name": "cut", "api_key": "' + lost.encode()[:20], method="POST")
        with pytest.raises(OperationFailed) as e:
            client.create_api_key("cut", in_hours(1))
        seen.append(str(e.value))
        client.revoke_api_key("quiet")
        with pytest.raises(CredentialsError) as e:
            guard.vms()
        seen.append(str(e.value))
    seen.append(caplog.text)
    assert [k.key_name for k in fake.issued if not k.revoked] == []
    for s in seen:
        assert secret not in s and lost not in s and lost[:20] not in s


def test_a_lost_create_whose_revoke_fails_says_a_key_may_be_left(fake, client):
    fake.rewrite_next(b"<html>502</html>", method="POST", content_type="text/html")
    fake.fail_next(503, 8, method="GET", path_contains="/api-keys/")
    with pytest.raises(ResourceLeft) as e:
        client.create_api_key("left", in_hours(1))
    assert "revoke the API key 'left'" in (e.value.hint or "")
    assert [k.key_name for k in fake.issued if not k.revoked] == ["left"]
