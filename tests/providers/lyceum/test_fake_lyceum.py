"""The fake Lyceum server keeps to api.md and refuses what a real one would."""

from __future__ import annotations

import time

import httpx
import pytest

from fake_lyceum import API, DEFAULT_KEY, DEFAULT_ORG, FakeLyceum

KEY_LINE = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeFakeFakeFakeFakeFakeFakeFakeFake test"


@pytest.fixture
def fake():
    with FakeLyceum() as f:
        f.provision_seconds = 0.06
        yield f


@pytest.fixture
def client(fake):
    headers = {"Authorization": f"Bearer {DEFAULT_KEY}", "X-Org-Slug": DEFAULT_ORG}
    with httpx.Client(base_url=fake.url + API, headers=headers, timeout=5) as c:
        yield c


def create(client, **body):
    return client.post("/vms/create", json={"user_public_key": KEY_LINE, **body})


def test_auth_is_required(fake):
    r = httpx.get(fake.url + API + "/vms/list")
    assert r.status_code == 401
    assert r.json() == {"detail": "Not authenticated"}
    r = httpx.get(fake.url + API + "/vms/list", headers={"Authorization": "Bearer lk_wrong"})
    assert r.status_code == 401


def test_unknown_org_is_refused(client):
    r = client.get("/vms/list", headers={"X-Org-Slug": "someone-else"})
    assert r.status_code == 403
    assert "someone-else" in r.json()["detail"]


def test_unknown_route_answers_bare_not_found(client):
    r = client.get("/vms/nope/status/extra")
    assert (r.status_code, r.json()) == (404, {"detail": "Not Found"})


@pytest.mark.parametrize(
    "body, loc",
    [
        ({}, ["body", "user_public_key"]),
        ({"user_public_key": KEY_LINE, "instance_specs": {"gpu_count": "1"}}, None),
        ({"user_public_key": KEY_LINE, "instance_type": "reserved"}, ["body", "instance_type"]),
        ({"user_public_key": KEY_LINE, "gpus": 1}, ["body", "gpus"]),
        ({"user_public_key": "not a key"}, ["body", "user_public_key"]),
        ({"user_public_key": KEY_LINE, "display_name": 7}, ["body", "display_name"]),
        (
            {"user_public_key": KEY_LINE, "new_volume": {"size_gb": 1}, "volume_ids": ["v"]},
            ["body", "new_volume"],
        ),
    ],
)
def test_malformed_create_is_refused(fake, client, body, loc):
    r = client.post("/vms/create", json=body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    if loc:
        assert loc in [d["loc"] for d in detail]
    assert fake.vms == {}


def test_unknown_profile_and_count(fake, client):
    assert create(client, hardware_profile="b200").status_code == 400
    r = create(client, hardware_profile="a100", instance_specs={"gpu_count": 3})
    assert r.status_code == 400
    assert fake.vms == {}


def test_vm_lifecycle_and_volume_outliving_it(fake, client):
    r = create(
        client,
        hardware_profile="a100",
        instance_type="spot",
        instance_specs={"gpu_count": 2},
        display_name="trainctl-x",
        new_volume={"size_gb": 20},
    )
    assert r.status_code == 200, r.text
    vm_id = r.json()["vm_id"]
    assert r.json()["status"] == "pending"
    seen = []
    deadline = time.time() + 5
    while time.time() < deadline:
        st = client.get(f"/vms/{vm_id}/status").json()
        if not seen or seen[-1] != st["status"]:
            seen.append(st["status"])
        if st["status"] == "ready":
            break
        time.sleep(0.01)
    assert seen[-1] == "ready"
    assert set(seen) <= {"pending", "provisioning", "running", "ready"}
    host, _, port = st["ip_address"].partition(":")
    assert host and port.isdigit()
    assert st["instance_type"] == "spot" and st["gpu_count"] == 2
    assert st["volumes"][0]["size_gb"] == 20
    assert "ssh_user" not in st
    listed = client.get("/vms/list", params={"include_terminated": "false"}).json()["vms"]
    assert [v["vm_id"] for v in listed] == [vm_id]

    gone = client.delete(f"/vms/{vm_id}").json()
    assert gone["detached_volumes"][0]["size_gb"] == 20
    assert client.delete(f"/vms/{vm_id}").status_code == 404
    assert client.get(f"/vms/{vm_id}/status").json()["status"] == "terminated"
    vols = client.get("/storage/block").json()["volumes"]
    assert vols[0]["attached_vm_id"] is None
    assert client.get("/vms/list", params={"include_terminated": "false"}).json()["vms"] == []


def test_vms_are_scoped_to_the_org(fake, client):
    vm_id = create(client).json()["vm_id"]
    personal = {"Authorization": f"Bearer {DEFAULT_KEY}"}
    r = httpx.get(f"{fake.url}{API}/vms/{vm_id}/status", headers=personal)
    assert r.status_code == 404


def test_injected_failures_and_402(fake, client):
    fake.fail_next(429, 2, path_contains="/vms/create", retry_after="1")
    assert create(client).status_code == 429
    r = create(client)
    assert (r.status_code, r.headers["Retry-After"]) == (429, "1")
    assert create(client).status_code == 200
    fake.credit = False
    assert create(client).status_code == 402
    assert len(fake.vms) == 1


def test_lost_create_still_makes_the_vm(fake, client):
    fake.lose_next_create("drop")
    with pytest.raises(httpx.RemoteProtocolError):
        create(client, display_name="trainctl-lost")
    assert [vm.display_name for vm in fake.vms.values()] == ["trainctl-lost"]


def test_failed_provisioning(fake, client):
    fake.provision_outcome = "failed"
    vm_id = create(client).json()["vm_id"]
    time.sleep(0.1)
    st = client.get(f"/vms/{vm_id}/status").json()
    assert st["status"] == "failed" and not st["ip_address"]


def test_list_query_must_be_boolean(client):
    assert client.get("/vms/list", params={"include_ready": "maybe"}).status_code == 422
    assert client.get("/vms/list", params={"everything": "true"}).status_code == 422


# -- session tokens and their refresh (api.md section 2) -----------------------------


def test_session_tokens_expire(fake):
    token, _ = fake.issue_session(0.2)
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(fake.url + API + "/vms/list", headers=headers).status_code == 200
    time.sleep(0.3)
    r = httpx.get(fake.url + API + "/vms/list", headers=headers)
    assert r.status_code == 401 and "expired" in r.json()["detail"]


def test_refresh_answers_new_tokens_and_spends_the_old_refresh_token(fake):
    old, refresh = fake.issue_session(10)
    url = fake.url + API + "/auth/refresh"
    r = httpx.post(url, json={"refresh_token": refresh})
    assert r.status_code == 200 and set(r.json()) == {"access_token", "refresh_token"}
    new = r.json()["access_token"]
    assert new != old and new.count(".") == 2
    headers = {"Authorization": f"Bearer {new}"}
    assert httpx.get(fake.url + API + "/vms/list", headers=headers).status_code == 200
    again = httpx.post(url, json={"refresh_token": refresh})
    assert again.status_code == 401 and again.json()["detail"]
    assert httpx.post(url, json={"refresh_token": r.json()["refresh_token"]}).status_code == 200


@pytest.mark.parametrize(
    "body, headers, status",
    [
        ({"refresh_token": "rt_x"}, {"Authorization": "Bearer lk_fake_0123456789abcdef"}, 400),
        ({"refresh_token": 5}, {}, 422),
        ({"refresh_token": "rt_x", "grant_type": "refresh_token"}, {}, 422),
        ({}, {}, 422),
        (None, {}, 422),
        ({"refresh_token": "rt_unknown"}, {}, 401),
    ],
)
def test_refresh_is_validated_as_api_md_describes(fake, body, headers, status):
    _, refresh = fake.issue_session(10)
    if body and body.get("refresh_token") == "rt_x":
        body = {**body, "refresh_token": refresh}
    r = httpx.post(fake.url + API + "/auth/refresh", json=body, headers=headers)
    assert r.status_code == status and "detail" in r.json()


def test_rewrite_replaces_one_answer(fake, client):
    fake.rewrite_next(lambda d: None, path_contains="/vms/list")
    assert client.get("/vms/list").json() is None
    fake.rewrite_next(b"<html>", path_contains="/vms/list", content_type="text/html")
    r = client.get("/vms/list")
    assert r.text == "<html>" and r.headers["content-type"] == "text/html"
    assert client.get("/vms/list").json() == {"vms": []}


def test_stay_running_gives_an_address_but_never_ready(fake, client):
    fake.stay_running = True
    vm_id = create(client).json()["vm_id"]
    time.sleep(fake.provision_seconds * 2)
    st = client.get(f"/vms/{vm_id}/status").json()
    assert st["status"] == "running" and st["ip_address"]
