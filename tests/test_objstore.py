"""--store: a machine's guard saves its jobs' work to an S3-compatible object store
(moto's server on loopback, reached through the endpoint setting), and ``download``
gets it from there once the machine is gone."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from pathlib import Path

import pytest

from cli_helpers import trainctl
from objstore_support import KEYS, endpoint, new_bucket, objects
from polling import wait_for
from test_objstore_runtime import CHECKPOINTS, body, written
from trainctl import objstore
from trainctl.api import Trainctl
from trainctl.errors import BadInput, NotFound
from trainctl.types import CreateResourceOptions, TrainingJob


@pytest.fixture
def store_env(monkeypatch, trainctl_home):
    """The store's endpoint and access key as a user sets them, and a guard that looks
    twice a second."""
    monkeypatch.setenv(objstore.ENDPOINT_ENV, endpoint())
    monkeypatch.setenv(objstore.KEY_ENV, KEYS["AccessKeyId"])
    monkeypatch.setenv(objstore.SECRET_ENV, KEYS["SecretAccessKey"])
    trainctl_home.mkdir(exist_ok=True)
    (trainctl_home / "config.toml").write_text("[guard]\ninterval = 0.5\n")
    return trainctl_home


def machine_root(tc: Trainctl, name: str) -> Path:
    return Path(tc.provider("local").root) / tc.store.resource(name).id


def test_a_gone_machine_s_checkpoints_are_downloaded_from_the_store(store_env, tmp_path):
    bucket = new_bucket()
    tc = Trainctl()
    tc.create("local", CreateResourceOptions(name="box", store=f"s3://{bucket}/runs"))
    record = tmp_path / "written"
    job = tc.train("box", TrainingJob(["python3", "-c", CHECKPOINTS, str(record)]))
    wait_for(lambda: len(written(record)) >= 4, timeout=30)
    secret = KEYS["SecretAccessKey"].encode()
    for entry in os.listdir("/proc"):  # the key is on no command line
        if entry.isdigit():
            with contextlib.suppress(OSError):
                assert secret not in Path(f"/proc/{entry}/cmdline").read_bytes()
    guard = machine_root(tc, "box") / "guard"
    assert stat.S_IMODE((guard / "store-secret").stat().st_mode) == 0o600
    for path in guard.iterdir():
        if path.name != "store-secret":
            assert secret not in path.read_bytes(), path.name
    tc.terminate("box")  # the record goes; the store's row stays
    gone_at = time.time()
    assert secret not in (store_env / "state.db").read_bytes()
    with pytest.raises(NotFound):
        tc.store.resource("box")

    dest = tmp_path / "back"
    messages: list[str] = []
    landed = tc.download("box", "checkpoints", dest, progress=messages.append)
    assert landed == dest
    steps = [s for s, t in written(record) if t < gone_at]
    assert steps and sorted(p.name for p in dest.iterdir()) == [f"step-{s:04d}.pt" for s in steps]
    for s in steps:
        assert (dest / f"step-{s:04d}.pt").read_bytes() == body(s)
    assert any("is gone: downloading from its store" in m for m in messages)
    one = tc.download("box", f"checkpoints/step-{steps[0]:04d}.pt", tmp_path)
    assert one == tmp_path / f"step-{steps[0]:04d}.pt" and one.read_bytes() == body(steps[0])
    log = objects(bucket, f"runs/{job.job_id}/log")[f"runs/{job.job_id}/log"]
    assert b"saved 0" in log
    with pytest.raises(NotFound, match="nothing under 'outputs'"):
        tc.download("box", "outputs", tmp_path / "none")


def test_a_live_machine_is_downloaded_from_as_before(store_env, tmp_path):
    bucket = new_bucket()
    tc = Trainctl()
    tc.create("local", CreateResourceOptions(name="box", store=f"s3://{bucket}/p"))
    job = tc.train(
        "box", TrainingJob(["sh", "-c", "echo on-machine > $TRAINCTL_CHECKPOINT_DIR/a.txt"])
    )
    wait_for(lambda: tc.monitor(job.job_id).status.is_final)
    landed = tc.download("box", "checkpoints/a.txt", tmp_path / "a.txt")
    assert landed.read_text() == "on-machine\n"
    tc.terminate("box")


def test_a_store_without_a_key_or_a_default_is_refused_before_anything_is_made(
    store_env, monkeypatch
):
    tc = Trainctl()
    with pytest.raises(BadInput, match="local has no object store of its own"):
        tc.create("local", CreateResourceOptions(name="a", store="default"))
    monkeypatch.delenv(objstore.SECRET_ENV)
    with pytest.raises(BadInput, match="no access key for the object store"):
        tc.create("local", CreateResourceOptions(name="b", store="s3://bucket-x/p"))
    assert tc.store.resources() == []


@pytest.mark.parametrize(
    "value",
    ["s3://Bad_Bucket/x", "gs://bucket/x", "s3://", "s3://ok-bucket/a//b", "s3://ok-bucket/../x"],
)
def test_a_bad_store_is_a_one_line_error_before_anything_is_rented(store_env, value):
    r = trainctl("create", "-p", "local", "--store", value)
    assert r.code == 2, r.err
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert lines[0].startswith("error: bad --store") and len(lines) == 1, r.err
    assert trainctl("list", "--json").json()["resources"] == []


def test_run_refuses_a_bad_store_from_its_task_file(store_env, tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text("provider: local\nstore: s3://UPPER/x\ncommand: [echo, hi]\n")
    r = trainctl("run", "-f", str(task))
    assert r.code == 2 and "bad --store 's3://UPPER/x'" in r.err
    assert trainctl("list", "--json").json()["resources"] == []


def test_the_config_file_names_the_store_and_none_switches_it_off(store_env, tmp_path):
    bucket = new_bucket()
    (store_env / "config.toml").write_text(
        f'[guard]\ninterval = 0.5\n[object_store]\nurl = "s3://{bucket}/cfg"\n'
    )
    tc = Trainctl()
    tc.create("local", CreateResourceOptions(name="cfg"))
    assert tc.store.object_store("cfg")["url"] == f"s3://{bucket}/cfg"
    tc.create("local", CreateResourceOptions(name="off", store="none"))
    assert tc.store.object_store("off") is None
    (store_env / "config.toml").write_text('[object_store]\nurl = "s3://x"\nbogus = 1\n')
    with pytest.raises(BadInput, match="unknown key 'bogus'"):
        objstore.requested(None)


def test_keys_in_the_config_file_must_be_private(store_env, monkeypatch):
    monkeypatch.delenv(objstore.KEY_ENV)
    monkeypatch.delenv(objstore.SECRET_ENV)
    config = store_env / "config.toml"
    config.write_text('[object_store]\naccess_key_id = "AK"\nsecret_access_key = "SK"\n')
    config.chmod(0o644)
    with pytest.raises(BadInput, match="others may read it"):
        objstore.access_key()
    config.chmod(0o600)
    assert objstore.access_key() == {"AccessKeyId": "AK", "SecretAccessKey": "SK"}
    config.write_text(
        '[object_store]\naccess_key_id_env = "R2_KEY"\nsecret_access_key_env = "R2_SECRET"\n'
    )
    monkeypatch.setenv("R2_KEY", "ak2")
    monkeypatch.setenv("R2_SECRET", "sk2")
    assert objstore.access_key() == {"AccessKeyId": "ak2", "SecretAccessKey": "sk2"}


def test_a_store_url_is_parsed_strictly():
    assert objstore.parse_url("s3://my-bucket/runs/exp1/") == ("my-bucket", "runs/exp1")
    assert objstore.parse_url("s3://my.bucket") == ("my.bucket", "")
    with pytest.raises(BadInput):
        objstore.parse_url("s3://-bad-/x")
    assert objstore.requested("NONE") is None and objstore.requested("default") == "default"


def test_the_saved_row_holds_no_secret(store_env):
    bucket = new_bucket()
    tc = Trainctl()
    tc.create("local", CreateResourceOptions(name="row", store=f"s3://{bucket}/r"))
    saved = tc.store.object_store("row")
    assert saved["credentials"] == "secret" and saved["endpoint"] == endpoint()
    assert KEYS["SecretAccessKey"] not in json.dumps(saved)
    assert KEYS["AccessKeyId"] not in json.dumps(saved)
    tc.terminate("row")
