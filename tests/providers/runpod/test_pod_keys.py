"""Pod-scoped API keys in the RunPod fake: what a process on the pod can do with the
``RUNPOD_API_KEY`` RunPod gives it (its own pod only), and the environment file that
carries the key to SSH sessions. Requests are made with the standard library, as a
process on the pod would make them."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import urllib.error
import urllib.request
from typing import Any

import pytest

from fake_runpod import ENV_FILE, GPUS, POD_KEY_PREFIX, FakeRunPod
from trainctl.providers.runpod.client import RunPodClient
from trainctl.providers.runpod.provider import RunPodProvider
from trainctl.types import CreateResourceOptions, GpuSpec

#: no proxy, even if the environment names one: the fake is on loopback
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(fake: FakeRunPod, method: str, path: str, key: str, body: Any = None) -> tuple[int, Any]:
    """(status, decoded body) of one request with ``key``."""
    headers = {"Authorization": f"Bearer {key}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(fake.url + path, data=data, method=method, headers=headers)
    try:
        with OPENER.open(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def running_pod(fake: FakeRunPod, name: str = "trainctl-guarded") -> str:
    """A pod made and read to RUNNING with the user's key; its id."""
    client = RunPodClient(fake.url, fake.graphql_url, lambda: fake.api_key, sleep=lambda s: None)
    body = {"name": name, "image": "runpod/base", "gpu": {"id": GPUS[0]["id"], "count": 1}}
    pod_id = client.create_pod({**body, "ports": ["22/tcp"]}, "test pod")["id"]
    for _ in range(10):
        if client.get_pod(pod_id)["status"] == "RUNNING":
            return pod_id
    raise AssertionError(f"pod {pod_id} never ran")


@pytest.fixture
def fake(runpod_api):
    return runpod_api


def test_each_pod_has_its_own_key(fake):
    a, b = running_pod(fake, "trainctl-a"), running_pod(fake, "trainctl-b")
    keys = {fake.pod_key(a), fake.pod_key(b)}
    assert len(keys) == 2 and all(k.startswith(POD_KEY_PREFIX) for k in keys)
    assert fake.api_key not in keys
    # the key is not part of what the API tells about the pod
    status, listed = call(fake, "GET", "/v2/pods", fake.api_key)
    assert status == 200 and not any(k in json.dumps(listed) for k in keys)


def test_the_pod_key_stops_its_own_pod(fake):
    pod_id = running_pod(fake)
    key = fake.pod_key(pod_id)
    path = f"/v2/pods/{pod_id}/action"
    status, pod = call(fake, "POST", path, key, {"action": "stop"})
    assert status == 200 and pod["status"] == "EXITED"
    assert fake.pods[pod_id].data["status"] == "EXITED"
    assert ("POST", path, 200, f"pod:{pod_id}") in fake.key_log
    status, pod = call(fake, "GET", f"/v2/pods/{pod_id}", key)
    assert status == 200 and pod["status"] == "EXITED"


def test_trainctls_client_stops_the_pod_with_the_pod_key(fake):
    pod_id = running_pod(fake)
    client = RunPodClient(
        fake.url, fake.graphql_url, lambda: fake.pod_key(pod_id), sleep=lambda s: None
    )
    assert client.pod_action(pod_id, "stop", ("EXITED",))["status"] == "EXITED"
    assert fake.key_log[-1] == ("POST", f"/v2/pods/{pod_id}/action", 200, f"pod:{pod_id}")


@pytest.mark.parametrize("how", ["terminate", "delete"])
def test_the_pod_key_removes_its_own_pod_then_stops_working(fake, how):
    pod_id = running_pod(fake)
    key = fake.pod_key(pod_id)
    if how == "terminate":
        status, _ = call(fake, "POST", f"/v2/pods/{pod_id}/action", key, {"action": how})
    else:
        status, _ = call(fake, "DELETE", f"/v2/pods/{pod_id}", key)
    assert status == 204 and pod_id not in fake.pods
    status, problem = call(fake, "GET", f"/v2/pods/{pod_id}", key)
    assert status == 401 and problem["title"] == "Unauthorized"
    assert fake.key_log[-1][2:] == (401, "other")


def test_the_pod_key_cannot_touch_another_pod(fake):
    mine, other = running_pod(fake, "trainctl-mine"), running_pod(fake, "trainctl-other")
    key = fake.pod_key(mine)
    for method, path, body in [
        ("POST", f"/v2/pods/{other}/action", {"action": "stop"}),
        ("DELETE", f"/v2/pods/{other}", None),
        ("GET", f"/v2/pods/{other}", None),
    ]:
        status, problem = call(fake, method, path, key, body)
        assert status == 403, (method, path)
        assert problem == {"title": "Forbidden", "status": 403, "detail": "access denied"}
    assert fake.pods[other].data["status"] == "RUNNING"
    assert fake.violations == []


def test_the_pod_key_cannot_list_create_or_reach_the_account(fake):
    pod_id = running_pod(fake)
    key = fake.pod_key(pod_id)
    body = {"name": "x", "image": "runpod/base", "gpu": {"id": GPUS[0]["id"], "count": 1}}
    for method, path, payload in [
        ("GET", "/v2/pods", None),
        ("POST", "/v2/pods", body),
        ("GET", "/v2/account/ssh-keys", None),
        ("GET", "/v2/catalog/gpus", None),
        ("POST", "/graphql", {"query": "query { gpuTypes(input: {id: $id}) { id } }"}),
    ]:
        assert call(fake, method, path, key, payload)[0] == 403, (method, path)
    assert len(fake.pods) == 1
    assert all(who == f"pod:{pod_id}" for *_, who in fake.key_log[-5:])


def test_the_users_key_still_works_and_is_logged_as_the_users(fake):
    pod_id = running_pod(fake)
    status, pod = call(fake, "POST", f"/v2/pods/{pod_id}/action", fake.api_key, {"action": "stop"})
    assert status == 200 and pod["status"] == "EXITED"
    assert {who for *_, who in fake.key_log} == {"user"}


def test_a_machineless_pod_records_its_environment_file(fake):
    pod_id = running_pod(fake)
    machine = fake.pods[pod_id].machine
    data, mode = machine.files[ENV_FILE]
    assert mode == 0o600
    assert data.decode() == (
        f'export RUNPOD_POD_ID="{pod_id}"\nexport RUNPOD_API_KEY="{fake.pod_key(pod_id)}"\n'
    )


def test_the_environment_file_lands_in_the_pods_machine(fake_runpod, sshd):
    provider = RunPodProvider(ready_timeout=20, poll_interval=0.01, sleep=lambda s: None)
    st = provider.create_resource(CreateResourceOptions(gpu=GpuSpec.parse("RTX4090"), name="g"))
    machine = fake_runpod.pods[st.id].machine
    info = (machine.home / ENV_FILE).stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == (machine.uid, machine.gid)
    # what a shell of an SSH session on the pod gets by sourcing it (the key's
    # digest, not the key, crosses the command line and the output)
    machine.authorize(sshd.client_key.with_suffix(".pub").read_text())
    script = f'. ~/{ENV_FILE} && printf %s "$RUNPOD_POD_ID $RUNPOD_API_KEY" | sha256sum'
    out = subprocess.run(
        sshd.ssh_argv(machine, script), capture_output=True, text=True, timeout=30, check=True
    ).stdout
    expected = f"{st.id} {fake_runpod.pod_key(st.id)}"
    assert out.split()[0] == hashlib.sha256(expected.encode()).hexdigest()
