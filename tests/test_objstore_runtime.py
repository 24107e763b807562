"""The object store on the machine (runtime/objstore.py) and the guard's uploads to it,
against moto's S3 server on loopback reached through an endpoint URL."""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from objstore_support import KEYS, endpoint, new_bucket, objects, s3
from polling import wait_for
from test_guard import ReleaseApi, guard_dir
from trainctl.remote.local import LocalRemote
from trainctl.runtime import files, objstore
from trainctl.runtime.client import JobRuntime

INTERVAL = 0.5

# A job that saves a checkpoint a second (written under a temporary name, renamed into
# place) and notes, outside the machine, when each one was complete.
CHECKPOINTS = r"""
import os, sys, time
d = os.environ["TRAINCTL_CHECKPOINT_DIR"]
for step in range(1000):
    tmp = os.path.join(d, "step-%04d.pt.tmp" % step)
    with open(tmp, "wb") as f:
        f.write((b"step %06d " % step) * 20000)
    os.replace(tmp, os.path.join(d, "step-%04d.pt" % step))
    with open(sys.argv[1], "a") as f:
        f.write("%d %f\n" % (step, time.time()))
    print("saved", step, flush=True)
    time.sleep(1)
"""


def body(step: int) -> bytes:
    return (b"step %06d " % step) * 20000


def written(record: Path) -> list[tuple[int, float]]:
    if not record.exists():
        return []
    return [
        (int(a), float(b))
        for a, b in (line.split() for line in record.read_text().split("\n") if line)
    ]


# --- signing --------------------------------------------------------------------------


def test_the_signature_is_the_one_of_the_s3_documentation():
    """Signature Version 4's worked example "GET Object" (Amazon S3 API Reference,
    Signature Calculations for the Authorization Header: Transferring Payload in a
    Single Chunk): the same request gives the same signature."""
    creds = {
        "AccessKeyId": "AKIAIOSFODNN7EXAMPLE",
        "SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    when = datetime(2013, 5, 24, tzinfo=timezone.utc)
    headers = objstore.sign(
        "GET",
        "examplebucket.s3.amazonaws.com",
        "/test.txt",
        {},
        {"Range": "bytes=0-9"},
        empty,
        "us-east-1",
        creds,
        when,
    )
    assert headers["Authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_a_put_with_an_odd_key_is_signed_as_botocore_signs_it():
    from unittest import mock

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    when = datetime(2026, 12, 7, 1, 2, 3, tzinfo=timezone.utc)
    creds = {"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "sk/+x", "Token": "tok=="}
    data = b"weights"
    digest = objstore.hashlib.sha256(data).hexdigest()
    path = "/bkt/" + objstore.quote("runs/j-1/checkpoints/epoch 1+(a)=~.pt")
    ours = objstore.sign(
        "PUT", "127.0.0.1:9000", path, {}, {"content-length": "7"}, digest, "auto", creds, when
    )
    req = AWSRequest("PUT", "http://127.0.0.1:9000" + path, data=data)
    req.headers["content-length"] = "7"
    req.headers["x-amz-content-sha256"] = digest
    with mock.patch("botocore.auth.get_current_datetime", return_value=when):
        S3SigV4Auth(Credentials("AKIDEXAMPLE", "sk/+x", "tok=="), "s3", "auto").add_auth(req)
    assert (
        ours["Authorization"].rsplit("Signature=", 1)[1]
        == (req.headers["Authorization"].rsplit("Signature=", 1)[1])
    )


# --- the store --------------------------------------------------------------------------


def test_put_list_and_get_through_an_endpoint(tmp_path):
    bucket = new_bucket()
    store = objstore.Store(
        {"bucket": bucket, "prefix": "runs/a", "endpoint": endpoint()}, lambda: KEYS
    )
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(3 * objstore.CHUNK + 5))
    store.put_file(store.key("j-1/checkpoints/sub dir/w.bin"), str(src), src.stat().st_size)
    store.put_bytes(store.key("j-1/log"), b"hello\n")
    listed = dict(store.list(store.key("j-1/")))
    assert listed == {
        "runs/a/j-1/checkpoints/sub dir/w.bin": src.stat().st_size,
        "runs/a/j-1/log": 6,
    }
    store.get_file("runs/a/j-1/checkpoints/sub dir/w.bin", str(tmp_path / "back"))
    assert (tmp_path / "back").read_bytes() == src.read_bytes()
    with pytest.raises(objstore.Failed, match="answered 404"):
        store.get_file("runs/a/missing", str(tmp_path / "none"))
    assert not (tmp_path / "none").exists()


def test_a_log_that_grows_is_sent_as_it_was_when_looked_at(tmp_path):
    bucket = new_bucket()
    store = objstore.Store({"bucket": bucket, "endpoint": endpoint()}, lambda: KEYS)
    log = tmp_path / "log"
    log.write_bytes(b"a" * 100)
    with open(log, "ab") as f:
        f.write(b"b" * 50)  # after the size was taken
        store.put_file("log", str(log), 100)
    assert objects(bucket) == {"log": b"a" * 100}


def test_a_file_too_large_for_one_put_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(objstore, "MAX_SINGLE_PUT", 10)
    store = objstore.Store({"bucket": "b", "endpoint": endpoint()}, lambda: KEYS)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 11)
    with pytest.raises(objstore.Failed, match="multipart uploads are not implemented"):
        store.put_file("big", str(big), 11)


# --- the guard's uploads -------------------------------------------------------------------


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


def store_policy(bucket: str, api: ReleaseApi | None, **limits) -> dict:
    return {
        "idle_stop": None,
        "deadline": None,
        "max_spend": None,
        "hourly": None,
        "launched_at": time.time(),
        "interval": INTERVAL,
        "grace": 2.0,
        "release": {"action": "terminate", "request": api.request()} if api else None,
        "store": {
            "url": f"s3://{bucket}/runs",
            "bucket": bucket,
            "prefix": "runs",
            "endpoint": endpoint(),
            "region": "us-east-1",
            "credentials": "secret",
        },
        **limits,
    }


def check_store(bucket: str, job_id: str, steps: list[int]) -> dict[str, bytes]:
    found = objects(bucket, f"runs/{job_id}/")
    for step in steps:
        assert f"runs/{job_id}/checkpoints/step-{step:04d}.pt" in found, step
    for key, data in found.items():  # no object is partial
        if "/checkpoints/" in key:
            assert data == body(int(key.rsplit("-", 1)[1][:4])), key
    return found


def test_a_released_machine_leaves_every_checkpoint_in_the_store(rt, api, tmp_path):
    """The deadline ends the job while it saves a checkpoint a second; the guard
    uploads what it left, then releases the machine."""
    bucket = new_bucket()
    record = tmp_path / "written"
    rt.guard_set(
        store_policy(bucket, api, deadline=time.time() + 6.0), secret="t", store_secret=KEYS
    )
    job = rt.start(["python3", "-c", CHECKPOINTS, str(record)])
    wait_for(lambda: api.calls, timeout=30)
    gone_at = api.calls[0]["at"]
    steps = [s for s, _ in written(record)]
    assert len(steps) >= 4
    found = check_store(bucket, job.job_id, steps)  # all, the last ones too: flushed first
    assert b"saved %d" % steps[-1] in found[f"runs/{job.job_id}/log"]
    assert all(t < gone_at for _, t in written(record))


def test_a_machine_that_vanishes_keeps_what_was_written_an_interval_before(rt, tmp_path):
    """Everything on the machine stops at once (no release, no last upload): what was
    complete more than an interval (and the second a file takes to settle) before is
    in the store."""
    bucket = new_bucket()
    record = tmp_path / "written"
    rt.guard_set(store_policy(bucket, None), secret="t", store_secret=KEYS)
    job = rt.start(["python3", "-c", CHECKPOINTS, str(record)])
    wait_for(lambda: len(written(record)) >= 5, timeout=30)
    gone_at = time.time()
    guard_pid = int((guard_dir(rt) / "pid").read_text())
    pid = json.loads((rt.remote.root / "jobs" / job.job_id / "pid.json").read_text())
    os.kill(guard_pid, signal.SIGKILL)
    os.killpg(pid["pgid"], signal.SIGKILL)
    os.kill(pid["supervisor_pid"], signal.SIGKILL)
    time.sleep(0.5)  # an upload under way when it stopped lands or not, but never partly
    bound = gone_at - INTERVAL - files.SETTLE_SECONDS - 0.5
    early = [s for s, t in written(record) if t < bound]
    assert len(early) >= 2
    check_store(bucket, job.job_id, early)


def test_an_ended_job_is_uploaded_once_and_then_left_alone(rt, tmp_path):
    bucket = new_bucket()
    rt.guard_set(store_policy(bucket, None), secret="t", store_secret=KEYS)
    script = "import os; open(os.environ['TRAINCTL_CHECKPOINT_DIR'] + '/last.pt', 'w').write('w')"
    job = rt.start(["python3", "-c", script])
    key = f"runs/{job.job_id}/checkpoints/last.pt"
    wait_for(lambda: key in objects(bucket), timeout=15)

    def noted() -> dict:  # the guard notes a pass once its uploads are done
        path = guard_dir(rt) / "uploaded.json"
        return json.loads(path.read_text()).get(job.job_id, {}) if path.exists() else {}

    wait_for(lambda: noted().get("final"), timeout=15)
    done = {job.job_id: noted()}
    s3().delete_object(Bucket=bucket, Key=key)
    time.sleep(4 * INTERVAL)
    assert key not in objects(bucket)  # not looked at again
    assert done[job.job_id]["files"]["last.pt"][0] == 1


def test_the_store_credentials_stay_in_their_private_file(rt, api, tmp_path):
    bucket = new_bucket()
    record = tmp_path / "written"
    rt.guard_set(
        store_policy(bucket, api, deadline=time.time() + 4.0), secret="t", store_secret=KEYS
    )
    rt.start(["python3", "-c", CHECKPOINTS, str(record)])
    secret = KEYS["SecretAccessKey"].encode()
    seen_in_ps = []
    while not api.calls:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if secret in Path(f"/proc/{entry}/cmdline").read_bytes():
                        seen_in_ps.append(entry)
                except OSError:
                    pass
        time.sleep(0.1)
    assert seen_in_ps == []
    d = guard_dir(rt)
    assert stat.S_IMODE((d / "store-secret").stat().st_mode) == 0o600
    for path in d.iterdir():
        if path.name != "store-secret":
            assert secret not in path.read_bytes(), path.name
            assert KEYS["AccessKeyId"].encode() not in path.read_bytes(), path.name
    rt.guard_stop()
    assert not (d / "store-secret").exists()


def test_a_store_that_refuses_does_not_keep_the_guard_from_releasing(rt, api, tmp_path):
    rt.guard_set(
        {**store_policy("no-such-bucket-here", api, idle_stop=1.0)}, secret="t", store_secret=KEYS
    )
    rt.start(["python3", "-c", "print('hi')"])
    wait_for(lambda: api.calls, timeout=20)
    log = (guard_dir(rt) / "log").read_text()
    assert "store: job" in log and "NoSuchBucket" in log
    assert KEYS["SecretAccessKey"] not in log


def test_a_large_log_is_sent_again_only_now_and_then(tmp_path, monkeypatch):
    monkeypatch.setattr(objstore, "LOG_PAUSE_BYTES", 10)
    bucket = new_bucket()
    spec = {"bucket": bucket, "prefix": "p", "endpoint": endpoint()}
    (tmp_path / "secret").write_text(json.dumps(KEYS))
    up = objstore.Uploader(spec, str(tmp_path / "secret"), str(tmp_path / "done"), print)
    log = tmp_path / "log"
    log.write_bytes(b"x" * 20)
    job = {"job_id": "j-1", "status": "running", "log_path": str(log)}
    up.look([job])
    log.write_bytes(b"y" * 30)
    up.look([job])  # changed, but sent a moment ago
    assert objects(bucket) == {"p/j-1/log": b"x" * 20}
    up.look([{**job, "status": "completed"}])  # the job ended: sent
    assert objects(bucket) == {"p/j-1/log": b"y" * 30}
