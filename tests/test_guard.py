"""The machine's guard (runtime/guard.py) on this machine: idle stop, deadline, spend
cap, the release call it makes, and its coming back after being killed. The release
goes to an HTTP stand-in on loopback that records each call."""

from __future__ import annotations

import json
import os
import signal
import stat
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from polling import wait_for
from trainctl.remote.local import LocalRemote
from trainctl.runtime import release
from trainctl.runtime.client import JobRuntime
from trainctl.types import ExecutionStatus


class ReleaseApi:
    """Answers every request with ``status`` and records it."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.calls: list[dict] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                api.calls.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": json.loads(body) if body else None,
                        "at": time.time(),
                    }
                )
                self.send_response(api.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_DELETE = do_PUT = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def request(self, path: str = "/machines/m1", method: str = "DELETE") -> dict:
        return {"kind": "http", "method": method, "url": self.url + path, "body": None}


@pytest.fixture
def api():
    server = ReleaseApi()
    yield server
    server.server.shutdown()


@pytest.fixture
def rt(tmp_path):
    (tmp_path / "machine").mkdir()
    runtime = JobRuntime(LocalRemote(tmp_path / "machine"), "m")
    yield runtime
    runtime.guard_stop()


def policy(api: ReleaseApi, **limits) -> dict:
    return {
        "idle_stop": None,
        "deadline": None,
        "max_spend": None,
        "hourly": None,
        "launched_at": time.time(),
        "interval": 0.2,
        "grace": 2.0,
        "release": {"action": "terminate", "request": api.request()},
        **limits,
    }


def guard_dir(rt: JobRuntime):
    return rt.remote.root / "guard"


def state(rt: JobRuntime) -> dict:
    """The guard's state, read without a runtime command (which is a contact)."""
    try:
        return json.loads((guard_dir(rt) / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def guard_alive(rt: JobRuntime) -> bool:
    pid = int((guard_dir(rt) / "pid").read_text())
    return os.path.exists(f"/proc/{pid}") and not _zombie(pid)


def test_an_idle_machine_is_released_with_no_client(rt, api):
    began = time.time()
    report = rt.guard_set(policy(api, idle_stop=1.0), secret="s3cret-token")
    assert report["armed"] and report["running"]
    wait_for(lambda: api.calls)
    call = api.calls[0]
    assert call["method"] == "DELETE" and call["path"] == "/machines/m1"
    assert call["auth"] == "Bearer s3cret-token"
    assert 1.0 <= call["at"] - began < 1.0 + 3
    wait_for(lambda: state(rt).get("released"))
    assert state(rt)["released"]["why"] == "idle"
    time.sleep(1)
    assert len(api.calls) == 1  # once: the machine is on its way out


def test_a_machine_still_running_after_its_release_is_released_again(rt, api):
    rt.guard_set({**policy(api, idle_stop=0.3), "recheck": 1.0}, secret="t")
    wait_for(lambda: len(api.calls) >= 2, timeout=10)
    assert api.calls[1]["at"] - api.calls[0]["at"] >= 1.0
    assert guard_alive(rt)


def test_moving_a_passed_deadline_never_releases(rt, api):
    """autostop on a machine whose guard is not running (after a start) and whose
    deadline passed: the new deadline is in force before any guard looks."""
    rt.guard_set(policy(api, deadline=time.time() + 3600), secret="t")
    pid = int((guard_dir(rt) / "pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _zombie(pid))
    stale = json.loads((guard_dir(rt) / "policy.json").read_text())
    stale["deadline"] = time.time() - 60  # as if it passed while the guard was gone
    (guard_dir(rt) / "policy.json").write_text(json.dumps(stale))
    rt.guard_set({"deadline": time.time() + 3600})
    time.sleep(1.5)
    assert api.calls == []


def test_an_answer_that_cannot_be_read_does_not_end_the_guard(rt, api, tmp_path):
    import socket

    garbage = socket.socket()
    garbage.bind(("127.0.0.1", 0))
    garbage.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = garbage.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{garbage.getsockname()[1]}/x"
    request = {"kind": "http", "method": "DELETE", "url": url, "body": None}
    rt.guard_set(
        {**policy(api, idle_stop=0.2), "release": {"action": "terminate", "request": request}},
        secret="t",
    )
    wait_for(lambda: state(rt).get("last_error"), timeout=10)
    time.sleep(0.5)
    assert guard_alive(rt)
    garbage.close()


def test_the_secret_is_kept_apart_and_private(rt, api):
    rt.guard_set(policy(api, idle_stop=60.0), secret="s3cret-token")
    d = guard_dir(rt)
    assert stat.S_IMODE((d / "secret").stat().st_mode) == 0o600
    assert "s3cret-token" not in (d / "policy.json").read_text()
    pid = int((d / "pid").read_text())
    assert b"s3cret-token" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert "s3cret-token" not in json.dumps(rt.guard_status())


def test_contact_keeps_an_idle_machine(rt, api):
    rt.guard_set(policy(api, idle_stop=1.5), secret="t")
    end = time.time() + 3
    while time.time() < end:
        rt.list()  # any trainctl command there is a client attached
        time.sleep(0.3)
    assert api.calls == []
    wait_for(lambda: api.calls, timeout=5)


def test_a_running_job_keeps_the_machine(rt, api):
    rt.guard_set(policy(api, idle_stop=0.5), secret="t")
    job = rt.start(["sleep", "2"])
    time.sleep(1.5)
    assert api.calls == []
    wait_for(lambda: rt.status(job.job_id).status.is_final)
    wait_for(lambda: api.calls, timeout=5)
    assert api.calls[0]["at"] - time.time() < 5


SAVES_ON_TERM = (
    "import signal, sys, time\n"
    "def term(*_):\n"
    "    open('saved', 'w').write('checkpoint')\n"
    "    sys.exit(7)\n"
    "signal.signal(signal.SIGTERM, term)\n"
    "print('training', flush=True)\n"
    "time.sleep(60)\n"
)


def test_a_deadline_ends_the_job_with_sigterm_then_releases(rt, api, tmp_path):
    rt.guard_set(policy(api, deadline=time.time() + 2.0), secret="t")
    job = rt.start(["python3", "-c", SAVES_ON_TERM])
    wait_for(lambda: api.calls, timeout=15)
    final = rt.status(job.job_id)
    assert final.status is ExecutionStatus.CANCELLED
    assert final.ended_by == "deadline" and final.reason.startswith("deadline:")
    assert final.exit_code == 7
    assert (rt.remote.root / "work" / "saved").read_text() == "checkpoint"
    assert api.calls[0]["at"] >= final.ended_at.timestamp() - 0.5


def test_a_spend_cap_ends_the_job_and_releases(rt, api):
    # $3600 an hour is a dollar a second: a $2 cap is reached two seconds after launch
    rt.guard_set(policy(api, hourly=3600.0, max_spend=2.0), secret="t")
    job = rt.start(["sleep", "60"])
    wait_for(lambda: api.calls, timeout=15)
    final = rt.status(job.job_id)
    assert final.ended_by == "spend cap" and "cap $2.00" in final.reason
    assert rt.guard_status()["spent"] >= 2.0


def test_nothing_to_release_ends_jobs_only(rt, api):
    rt.guard_set({**policy(api, deadline=time.time() + 1.0), "release": None})
    job = rt.start(["sleep", "60"])
    wait_for(lambda: rt.status(job.job_id).status.is_final, timeout=15)
    assert rt.status(job.job_id).ended_by == "deadline"
    assert api.calls == []
    assert rt.guard_status()["running"]  # it goes on ending jobs past the deadline


def test_a_killed_guard_comes_back_on_the_next_contact(rt, api):
    rt.guard_set(policy(api, idle_stop=60.0), secret="t")
    pid = int((guard_dir(rt) / "pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or _zombie(pid))
    assert rt.guard_status()["running"]  # the command itself started it again
    assert int((guard_dir(rt) / "pid").read_text()) != pid


def _zombie(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_a_failed_release_is_retried_and_reported(rt, api):
    api.status = 503
    rt.guard_set(policy(api, idle_stop=0.3), secret="t")
    wait_for(lambda: state(rt).get("last_error"), timeout=10)
    assert "answered 503" in state(rt)["last_error"]
    api.status = 200
    wait_for(lambda: state(rt).get("released"), timeout=20)
    assert len(api.calls) >= 2


def test_changing_a_limit_takes_effect_and_never_switches_it_off(rt, api):
    # room for the second call on a loaded machine: it must land before the deadline
    deadline = time.time() + 3
    rt.guard_set(policy(api, deadline=deadline), secret="t")
    rt.guard_set({"deadline": None, "idle_stop": 60.0})
    assert time.time() < deadline, "the change came after the deadline: the test proves nothing"
    time.sleep(deadline + 1 - time.time())
    assert api.calls == []
    assert rt.guard_status()["deadline"] is None


def test_a_gone_machine_counts_as_released(rt, api):
    api.status = 404
    req = {**api.request(), "gone": [404]}
    rt.guard_set(
        {**policy(api, idle_stop=0.2), "release": {"action": "terminate", "request": req}},
        secret="t",
    )
    wait_for(lambda: state(rt).get("released"), timeout=10)
    assert state(rt)["released"]["outcome"] == "gone"


# --- credentials the machine already holds, and EC2's signature ---------------------


def test_a_machine_secret_is_read_from_its_environment_files(tmp_path):
    environ = tmp_path / "environ"
    environ.write_bytes(b"PATH=/bin\0RUNPOD_POD_ID=other\0RUNPOD_API_KEY=wrong\0")
    exported = tmp_path / "rp_environment"
    exported.write_text('export RUNPOD_POD_ID="p1"\nexport RUNPOD_API_KEY="rpp_right"\n')
    spec = {
        "files": [str(tmp_path / "missing"), str(environ), str(exported)],
        "name": "RUNPOD_API_KEY",
        "match": {"RUNPOD_POD_ID": "p1"},
    }
    assert release.machine_secret(spec) == "rpp_right"  # the other pod's key is skipped
    assert release.machine_secret({**spec, "match": {"RUNPOD_POD_ID": "p2"}}) is None


def test_sigv4_matches_botocore():
    from datetime import datetime, timezone
    from unittest import mock

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    when = datetime(2026, 12, 6, 21, 30, 5, tzinfo=timezone.utc)
    body = b"Action=StopInstances&Version=2016-11-15&InstanceId.1=i-0abc"
    url = "https://ec2.eu-west-1.amazonaws.com/"
    creds = {"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "wJalr/K7MDENG", "Token": "tok=="}
    ours = release.sigv4_headers("POST", url, "eu-west-1", "ec2", body, creds, when)
    req = AWSRequest("POST", url, data=body, headers={"Content-Type": ours["content-type"]})
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        SigV4Auth(
            Credentials("AKIDEXAMPLE", "wJalr/K7MDENG", "tok=="), "ec2", "eu-west-1"
        ).add_auth(req)
    theirs = req.headers["Authorization"]
    assert ours["x-amz-date"] == req.headers["X-Amz-Date"]
    assert ours["Authorization"].rsplit("Signature=", 1)[1] == theirs.rsplit("Signature=", 1)[1]


def test_a_long_transfer_is_not_idleness(rt, api):
    rt.guard_set(policy(api, idle_stop=1.5), secret="t")
    with rt.attached(every=0.3):  # an upload or download that takes a while
        time.sleep(3)
    assert api.calls == []
    wait_for(lambda: api.calls, timeout=5)
