"""The SSM data plane against moto and the SSM agent stand-in: input and output
through the staging bucket, SSM's output limits, detached starts, incremental sync,
managed-transfer downloads, and an agent that never comes online."""

from __future__ import annotations

import json
import os
import random
import stat
import time
from pathlib import Path

import boto3
import pytest

from aws_support import agent, instance, set_up
from ssm_agent import agent_output
from trainctl.errors import NotFound, OperationFailed, RemoteError
from trainctl.providers.aws import AwsProvider
from trainctl.providers.aws.ssm import READ_LIMIT, STDERR_LIMIT, STDOUT_LIMIT
from trainctl.runtime.client import JobRuntime
from trainctl.types import CreateResourceOptions, ExecutionStatus, GpuSpec

REGION = "eu-west-1"
BUCKET = f"trainctl-staging-123456789012-{REGION}"


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRAINCTL_HOME", str(tmp_path_factory.mktemp("home")))
        set_up(mp, REGION)
        provider = AwsProvider(poll_interval=0.05)
        rid = provider.create_resource(CreateResourceOptions(gpu=GpuSpec("T4", 1))).id
        yield rid
        provider.terminate(rid)


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def remote(monkeypatch, machine, lines):
    set_up(monkeypatch, REGION)
    return AwsProvider(progress=lines.append, poll_interval=0.05).connect(machine)


def staged(instance_id: str) -> list[str]:
    """The machine's objects in the staging bucket (under ``<role id>:<instance id>/``)."""
    s3 = boto3.client("s3", region_name=REGION)
    found = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return [o["Key"] for o in found if o["Key"].split("/")[0].endswith(f":{instance_id}")]


def machine_home(instance_id: str) -> Path:
    return agent().home(instance_id)


def test_input_goes_through_the_bucket_never_into_the_command(remote, machine):
    secret = "s3cr3t-" + os.urandom(6).hex()
    r = remote.run(["cat"], input=f"API_KEY={secret}\n".encode())
    assert r.ok and r.stdout == f"API_KEY={secret}\n".encode()
    sent = boto3.client("ssm", region_name=REGION).list_commands(InstanceId=machine)["Commands"]
    assert sent and all(secret not in json.dumps(c["Parameters"]) for c in sent)
    assert secret not in agent().history[-1].script
    assert staged(machine) == []


def test_input_is_sealed_to_the_machines_own_key(remote, machine):
    key = machine_home(machine) / ".trainctl" / "input.key"
    assert remote.run(["cat"], input=b"first").stdout == b"first"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    key.unlink()  # the machine lost its key (a new disk): the client asks again, once
    assert remote.run(["cat"], input=b"second").stdout == b"second"
    assert key.exists() and staged(machine) == []


def test_output_beyond_ssm_limits(remote, machine):
    code = "import sys; sys.stdout.write('x' * 100000); sys.stderr.write('e' * 20000); sys.exit(3)"
    r = remote.run([remote.python, "-c", code])
    assert r.returncode == 3
    assert r.stdout == b"x" * 100000  # spilled to the bucket by the machine, fetched whole
    assert r.stderr == b"e" * STDERR_LIMIT  # SSM keeps the first 8,000 characters
    assert staged(machine) == []


def test_the_stand_in_cuts_output_as_the_agent_does():
    assert agent_output(b"z" * 23_999, b"", None) == ("z" * 23_999, "")
    cut, err = agent_output(b"z" * 24_000, b"e" * 9000, "exit status 1")
    assert cut == "z" * 23_980 + "--output truncated--" and err == "e" * 8000
    assert agent_output(b"", b"", "signal: killed") == (
        "",
        "failed to run commands: signal: killed",
    )


@pytest.mark.parametrize("size", [STDOUT_LIMIT - 1, STDOUT_LIMIT, STDOUT_LIMIT + 1])
def test_output_at_the_agents_cut_comes_back_whole(remote, machine, size):
    # the agent cuts output of 24,000 bytes or more, not only output above that
    code = f"import sys; sys.stdout.write('y' * {size})"
    assert remote.run([remote.python, "-c", code]).stdout == b"y" * size
    assert staged(machine) == []


def test_the_agents_failure_line_is_not_taken_for_the_cause(remote, machine):
    r = remote.run(["sh", "-c", "echo 'python3: not found' >&2; exit 127"])
    assert r.returncode == 127 and r.stderr == b"python3: not found\n"
    reported = agent().history[-1].reported_stderr
    assert reported == "python3: not found\n\nfailed to run commands: exit status 127"
    assert remote.run(["sh", "-c", "exit 4"]).stderr == b""

    remote.python = "no-such-python3"  # a machine without the interpreter
    with pytest.raises(RemoteError, match="no-such-python3: not found") as e:
        JobRuntime(remote, machine).start(["true"])
    assert "failed to run commands" not in str(e.value)


def test_log_reads_fit_ssm_output_limit(remote, machine):
    rt = JobRuntime(remote, machine)
    size = 100_000
    writer = (
        f"import random, sys; random.seed(7); sys.stdout.buffer.write(random.randbytes({size}))"
    )
    started = rt.start([remote.python, "-c", writer])
    while not rt.status(started.job_id).status.is_final:
        time.sleep(0.05)
    first = len(agent().history)
    log = b""
    while chunk := rt.read(started.job_id, len(log)):
        log += chunk
    random.seed(7)
    assert log == random.randbytes(size)  # binary, non-UTF-8 bytes arrive intact
    reads = [i for i in agent().history[first:] if " read " in i.script]
    assert len(reads) == -(-size // READ_LIMIT) + 1  # full chunks, then the empty read
    assert max(len(i.stdout) for i in reads) <= STDOUT_LIMIT


def test_a_started_job_detaches_so_ssm_returns_at_once(remote, machine):
    rt = JobRuntime(remote, machine)
    before = time.monotonic()
    st = rt.start(["sleep", "60"])
    assert st.status is ExecutionStatus.RUNNING
    assert time.monotonic() - before < 10
    start = next(i for i in reversed(agent().history) if " start" in i.script)
    assert start.seconds < 5  # the agent did not wait for the job's output streams
    assert rt.cancel(st.job_id, grace=1).status is ExecutionStatus.CANCELLED


def _tree(src: Path) -> None:
    (src / "sub").mkdir(parents=True)
    (src / "secret").mkdir()
    (src / "a.py").write_text("print('a')\n")
    (src / "sp ace.txt").write_text("spaces\n")
    (src / "new\nline.txt").write_text("newline\n")
    (src / "ünï €.txt").write_text("unicode\n")
    (src / "sub" / "x.py").write_text("x = 1\n")
    (src / "big.bin").write_bytes(b"\0" * 1000)
    (src / "secret" / "key").write_text("k")
    (src / ".gitignore").write_text("*.bin\n")
    (src / ".trainctlignore").write_text("secret/\n")
    (src / "link").symlink_to("a.py")
    os.chmod(src / "a.py", 0o755)


def test_sync_sends_only_what_changed(remote, machine, tmp_path, lines):
    src = tmp_path / "src"
    _tree(src)
    dest = machine_home(machine) / "proj"
    first = remote.put_tree(src, str(dest))
    sent = {p.relative_to(dest).as_posix() for p in dest.rglob("*")}
    assert sent == {
        ".gitignore",
        ".trainctlignore",
        "a.py",
        "sp ace.txt",
        "new\nline.txt",
        "ünï €.txt",
        "sub",
        "sub/x.py",
        "link",
    }
    assert first.files_sent == 7 and first.total_bytes > 0
    assert (dest / "new\nline.txt").read_text() == "newline\n"
    assert os.readlink(dest / "link") == "a.py" and os.access(dest / "a.py", os.X_OK)

    os.utime(src / "a.py", (1, 1))  # touched, same content: not sent
    assert remote.put_tree(src, str(dest)).files_sent == 0

    (src / "sub" / "x.py").write_text("x = 2\n")
    (dest / "sp ace.txt").write_text("changed on the machine\n")
    progress: list[str] = []
    # the changed file goes first; the machine then names the file changed there
    assert remote.put_tree(src, str(dest), progress=progress.append).files_sent == 2
    # one summary line, not a line per file
    assert len(progress) == 1 and progress[0].startswith("sync: 2 files, ")
    assert (dest / "sub" / "x.py").read_text() == "x = 2\n"
    assert (dest / "sp ace.txt").read_text() == "spaces\n"

    (src / "a.py").unlink()
    (dest / "checkpoints").mkdir()
    (dest / "checkpoints" / "c.pt").write_text("weights")
    (dest / "made-there.txt").write_text("x")
    remote.put_tree(src, str(dest))
    assert (dest / "a.py").exists()  # without delete, nothing is removed
    remote.put_tree(src, str(dest), delete=True, protect=["checkpoints"])
    assert not (dest / "a.py").exists() and not (dest / "made-there.txt").exists()
    assert (dest / "checkpoints" / "c.pt").read_text() == "weights"
    assert staged(machine) == []


def test_download_uses_managed_transfer(remote, machine, tmp_path, lines):
    out = machine_home(machine) / "out"
    (out / "sub").mkdir(parents=True)
    big = os.urandom(17 << 20)  # above the 16 MiB multipart threshold: two parts
    (out / "model.bin").write_bytes(big)
    (out / "b.txt").write_text("b")
    (out / "sub" / "c.txt").write_text("c")
    ranged: list[str] = []
    remote._s3.meta.events.register(
        "provide-client-params.s3.GetObject",
        lambda params, **_: ranged.append(params.get("Range", "")),
    )
    progress: list[str] = []
    dest = remote.get(str(out), tmp_path / "dl", progress=progress.append)
    assert (dest / "model.bin").read_bytes() == big
    assert (dest / "sub" / "c.txt").read_text() == "c"
    assert len([r for r in ranged if r.startswith("bytes=")]) >= 2
    assert progress[0] == f"downloading 3 files, {len(big) + 2} bytes"
    assert [e.done for e in progress[1:-1]][-1] == len(big) + 2  # bytes as files land
    assert progress[-1].finished and progress[-1].startswith("download: 3 files, 17.8 MB in")
    assert staged(machine) == []

    one = remote.get(str(out / "b.txt"), tmp_path / "one.txt")
    assert one.read_text() == "b"
    inside = remote.get(str(out / "b.txt"), tmp_path)
    assert inside == tmp_path / "b.txt"
    with pytest.raises(NotFound, match="does not exist"):
        remote.get(str(out / "absent"), tmp_path / "x")
    assert staged(machine) == []


def test_invocation_unknown_at_first_is_waited_for(remote):
    agent().lag = True
    try:
        assert remote.run(["echo", "hi"]).stdout == b"hi\n"
    finally:
        agent().lag = False


def test_command_timeout(remote):
    with pytest.raises(RemoteError, match="timed out after 1 s"):
        remote.run(["sleep", "20"], timeout=1)


def test_agent_never_online(monkeypatch, machine):
    set_up(monkeypatch, REGION)
    lines: list[str] = []
    provider = AwsProvider(progress=lines.append, ready_timeout=0.5, poll_interval=0.05)
    agent().offline.add(machine)
    try:
        with pytest.raises(RemoteError, match="did not come online within") as e:
            provider.connect(machine).run(["true"])
    finally:
        agent().offline.discard(machine)
    assert "instance profile" in (e.value.hint or "")
    assert lines and "waiting for the SSM agent" in lines[0]


def test_create_releases_a_machine_whose_agent_never_comes_online(monkeypatch):
    set_up(monkeypatch, REGION)
    lines: list[str] = []
    provider = AwsProvider(ready_timeout=0.3, poll_interval=0.05)
    agent().all_offline = True
    try:
        with pytest.raises(OperationFailed, match="was not ready after") as e:
            provider.create_resource(
                CreateResourceOptions(gpu=GpuSpec("T4", 1)), progress=lines.append
            )
    finally:
        agent().all_offline = False
    instance_id = e.value.message.split()[1]
    assert "was terminated" in e.value.message and "SSM agent" in (e.value.hint or "")
    assert instance(REGION, instance_id).state in ("shutting-down", "terminated")
    assert any("SSM agent" in line for line in lines)


class _CutBody:
    """A GetObject body whose stream breaks after its first chunk, as a dropped
    connection does mid-download."""

    def __init__(self, body):
        self.body = body

    def iter_chunks(self, size):
        from botocore.exceptions import ResponseStreamingError

        yield next(self.body.iter_chunks(size))
        raise ResponseStreamingError(error="connection reset by peer")


def test_a_cut_download_keeps_the_good_copy(remote, machine, tmp_path):
    out = machine_home(machine) / "cut"
    out.mkdir()
    (out / "model.bin").write_bytes(os.urandom(3 << 20))

    def cut(parsed, **_):
        parsed["Body"] = _CutBody(parsed["Body"])

    remote._s3.meta.events.register("after-call.s3.GetObject", cut)
    (tmp_path / "dl").mkdir()
    good = tmp_path / "dl" / "model.bin"
    good.write_bytes(b"the complete copy from yesterday")
    with pytest.raises(OperationFailed):
        remote.get(str(out / "model.bin"), good)
    assert good.read_bytes() == b"the complete copy from yesterday"
    assert [p.name for p in good.parent.iterdir()] == ["model.bin"]
    remote._s3.meta.events.unregister("after-call.s3.GetObject", cut)
    assert remote.get(str(out / "model.bin"), good).read_bytes() == (out / "model.bin").read_bytes()
