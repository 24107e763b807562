"""SSHRemote against a real OpenSSH server on loopback."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from sshd import Machine, SSHServer, free_port, keygen
from trainctl import sshkeys, sync
from trainctl.errors import CredentialsError, NotFound, OperationFailed, RemoteError
from trainctl.remote.base import TransferEvent
from trainctl.remote.ssh import Endpoint, SSHRemote
from trainctl.runtime.client import JobRuntime


def remote_for(machine: Machine, key: Path | None = None) -> SSHRemote:
    return SSHRemote(Endpoint(machine.host, machine.port, machine.user), key=key)


@pytest.fixture
def remote(sshd: SSHServer, ssh_machine: Machine):
    r = remote_for(ssh_machine, sshd.client_key)
    yield r
    r.close()


# -- the fixture itself -----------------------------------------------------------------


def test_machines_are_isolated_and_destroy_removes_everything(sshd: SSHServer):
    a, b = sshd.new_machine(), sshd.new_machine()
    try:
        secret = b.write("secret.txt", "b's data", mode=0o600)
        p = subprocess.run(sshd.ssh_argv(a, "cat", str(secret)), capture_output=True, text=True)
        assert p.returncode != 0 and "Permission denied" in p.stderr
        subprocess.run(sshd.ssh_argv(b, "sleep 300 >/dev/null 2>&1 &"), check=True)
        assert b.processes()
    finally:
        b.destroy()
        a.destroy()
    assert not b.home.exists() and not b.processes()
    assert subprocess.run(["id", b.user], capture_output=True).returncode != 0


# -- commands ---------------------------------------------------------------------------


def test_run_returns_output_and_exit_code(remote: SSHRemote):
    r = remote.run(["sh", "-c", "echo out; echo err >&2; exit 7"])
    assert (r.returncode, r.stdout, r.stderr) == (7, b"out\n", b"err\n")
    r = remote.run(
        ["python3", "-c", "import sys; sys.stdout.write(sys.stdin.read()[::-1])"], input=b"abc"
    )
    assert r.stdout == b"cba"


def test_commands_run_in_the_login_home(remote: SSHRemote, ssh_machine: Machine):
    assert remote.run(["pwd"]).text().strip() == str(ssh_machine.home)
    assert remote.runtime_root == ".trainctl"


def test_a_warm_connection_is_reused(remote: SSHRemote, ssh_machine: Machine):
    remote.run(["true"])
    sessions = [p for p in ssh_machine.processes() if _comm(p) == "sshd"]
    for _ in range(5):
        remote.run(["true"])
    assert [p for p in ssh_machine.processes() if _comm(p) == "sshd"] == sessions
    remote.close()
    deadline = time.monotonic() + 5
    while any(_comm(p) == "sshd" for p in ssh_machine.processes()):
        assert time.monotonic() < deadline, "close() left the connection open"
        time.sleep(0.05)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def test_long_trainctl_home_with_odd_characters(sshd, ssh_machine, tmp_path, monkeypatch):
    home = tmp_path / ("a home with spaces, 'quotes' and %percent " + "x" * 120)
    monkeypatch.setenv("TRAINCTL_HOME", str(home))
    r = remote_for(ssh_machine, sshd.client_key)
    try:
        assert r.run(["echo", "hi"]).stdout == b"hi\n"
        src = tmp_path / "src"
        src.mkdir()
        (src / "f.txt").write_text("data")
        assert r.put_tree(src, ".trainctl/work").files_sent == 1
        assert (home / "ssh" / "known_hosts").exists()
    finally:
        r.close()


# -- connection drops -------------------------------------------------------------------


class CountingRemote(SSHRemote):
    streams = 0

    def stream(self, argv):
        self.streams += 1
        return super().stream(argv)


def test_follow_survives_dropped_connections(sshd: SSHServer, ssh_machine: Machine):
    remote = CountingRemote(
        Endpoint(ssh_machine.host, ssh_machine.port, ssh_machine.user), key=sshd.client_key
    )
    rt = JobRuntime(remote, "test")
    n = 300
    script = (
        f"import time\nfor i in range({n}):\n"
        "    print('line', i, flush=True)\n    time.sleep(0.005)\n"
    )
    job = rt.start(["python3", "-c", script])
    received = bytearray()
    drops = []

    def dropper():
        for threshold in (40, 150):
            while received.count(b"\n") < threshold:
                time.sleep(0.002)
            drops.append(ssh_machine.drop_connections())

    t = threading.Thread(target=dropper, daemon=True)
    t.start()
    final = rt.follow(job.job_id, received.extend)
    t.join(timeout=10)
    assert final.status.value == "completed"
    assert drops == [1, 1] and remote.streams >= 3
    assert received.decode().splitlines() == [f"line {i}" for i in range(n)]
    remote.close()


def test_stream_raises_when_the_connection_drops(remote: SSHRemote, ssh_machine: Machine):
    chunks = remote.stream(["sh", "-c", "echo first; sleep 30"])
    assert next(chunks) == b"first\n"
    ssh_machine.drop_connections()
    with pytest.raises(RemoteError, match=f"lost the connection to {ssh_machine.target}"):
        next(chunks)


def test_a_command_may_exit_255_itself(remote: SSHRemote):
    assert remote.run(["sh", "-c", "exit 255"]).returncode == 255


# -- host keys ----------------------------------------------------------------------------


def test_changed_host_key_is_refused(sshd_factory):
    server: SSHServer = sshd_factory()
    machine = server.new_machine()
    r = remote_for(machine, server.client_key)
    assert r.run(["true"]).ok
    known = sshkeys.known_hosts_path().read_text()
    name = f"[127.0.0.1]:{server.port}"
    found = ["ssh-keygen", "-F", name, "-f", str(sshkeys.known_hosts_path())]
    assert subprocess.run(found, capture_output=True).returncode == 0
    server.restart(new_host_key=True)
    with pytest.raises(OperationFailed, match="host key of .* has changed") as e:
        r.run(["true"])
    assert machine.target in str(e.value) and "ssh-keygen" in (e.value.hint or "")
    assert sshkeys.known_hosts_path().read_text() == known
    # the hint's command is the fix: after it, the new key is accepted
    subprocess.run(shlex.split(e.value.hint.split(": ", 1)[1]), capture_output=True, check=True)
    assert r.run(["true"]).ok
    server.restart(new_host_key=True)
    r.forget_host_key()  # what a provider does for a machine it has just created
    assert r.run(["true"]).ok


# -- clear errors -------------------------------------------------------------------------


def test_unreachable_port_is_a_clear_error(sshd: SSHServer):
    port = free_port()
    r = SSHRemote(Endpoint("127.0.0.1", port, "nobody"), key=sshd.client_key)
    with pytest.raises(RemoteError, match=rf"cannot reach nobody@127.0.0.1:{port}: .*refused") as e:
        r.run(["true"])
    assert "\n" not in str(e.value) and e.value.hint


def test_wrong_key_is_a_clear_error(ssh_machine: Machine, tmp_path):
    other = keygen(tmp_path / "other_key", "not authorized")
    with pytest.raises(CredentialsError, match=f"{ssh_machine.target} refused the SSH key") as e:
        remote_for(ssh_machine, other).run(["true"])
    assert str(other) in str(e.value) and "--key" in (e.value.hint or "")


def _restricted_machine(sshd: SSHServer, commands: list[str]) -> Machine:
    """A machine whose PATH offers only ``commands``."""
    machine = sshd.new_machine(authorize_client_key=False)
    for name in commands:
        target = subprocess.run(["which", name], capture_output=True, text=True).stdout.strip()
        link = machine.home / "bin" / name
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(target)
    os.chown(machine.home / "bin", machine.uid, machine.gid)
    machine.authorize(
        sshd.client_key.with_suffix(".pub").read_text(),
        options=f'environment="PATH={machine.home}/bin"',
    )
    return machine


def test_rsync_missing_on_the_machine(sshd: SSHServer, tmp_path):
    machine = _restricted_machine(sshd, ["mkdir", "sh", "python3"])
    r = remote_for(machine, sshd.client_key)
    try:
        (tmp_path / "f").write_text("x")
        with pytest.raises(RemoteError, match=f"rsync is not installed on {machine.target}") as e:
            r.put_tree(tmp_path, ".trainctl/work")
        assert "apt-get install rsync" in (e.value.hint or "")
    finally:
        r.close()
        machine.destroy()


def test_full_disk_on_the_machine(sshd: SSHServer, ssh_machine: Machine, remote, tmp_path):
    if not sshd.mount_tmpfs(ssh_machine.runtime_root, "256k", ssh_machine):
        pytest.skip("cannot mount a small tmpfs here")
    rt = JobRuntime(remote, "test")
    work = rt.workdir  # installs the runtime while there is room
    (tmp_path / "big.bin").write_bytes(os.urandom(1 << 20))
    with pytest.raises(RemoteError, match=f"the disk of {ssh_machine.target} is full") as e:
        remote.put_tree(tmp_path, work)
    assert "df -h" in (e.value.hint or "")
    remote.run(["sh", "-c", f"head -c 1000000 /dev/zero > {work}/fill"])
    with pytest.raises(RemoteError, match=f"the disk of {ssh_machine.target} is full"):
        rt.start(["echo", "hi"])


# -- files --------------------------------------------------------------------------------


def test_sync_sends_only_changed_files(remote: SSHRemote, tmp_path):
    src = tmp_path / "tree"
    for i in range(40):
        (src / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
        (src / f"d{i % 4}" / f"f{i}.bin").write_bytes(os.urandom(32 * 1024))
    first = remote.put_tree(src, ".trainctl/work")
    assert first.files_sent == 40
    assert first.bytes_sent > first.total_bytes  # random data: all of it went over
    assert remote.put_tree(src, ".trainctl/work").files_sent == 0

    changed = src / "d1" / "f5.bin"
    data = bytearray(changed.read_bytes())
    data[100:110] = b"0123456789"
    changed.write_bytes(bytes(data))
    # an edit made later: same size, newer time (rsync's quick check compares both)
    os.utime(changed, (time.time() + 5, time.time() + 5))
    names: list[str] = []
    again = remote.put_tree(src, ".trainctl/work", progress=names.append)
    assert again.files_sent == 1
    assert names[-1].startswith("sync: 1 file, ") and names[-1].finished  # one summary
    assert again.bytes_sent < 0.02 * again.total_bytes
    r = remote.run(["sha256sum", ".trainctl/work/d1/f5.bin"])
    assert r.text().split()[0] == _sha256(changed)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sync_delete_keeps_protected_paths(remote: SSHRemote, ssh_machine: Machine, tmp_path):
    src = tmp_path / "tree"
    src.mkdir()
    (src / "keep.py").write_text("k")
    (src / "gone.py").write_text("g")
    (src / ".trainctlignore").write_text("data/\n")
    (src / "data").mkdir()
    (src / "data" / "huge.bin").write_bytes(b"x")
    remote.put_tree(src, ".trainctl/work")
    remote.run(
        ["sh", "-c", "mkdir -p .trainctl/work/checkpoints && echo w > .trainctl/work/checkpoints/c"]
    )
    (src / "gone.py").unlink()
    remote.put_tree(src, ".trainctl/work", delete=True, protect=["checkpoints"])
    listing = remote.run(["find", ".trainctl/work", "-type", "f"]).text().split()
    assert sorted(listing) == [
        ".trainctl/work/.trainctlignore",
        ".trainctl/work/checkpoints/c",
        ".trainctl/work/keep.py",
    ]


def test_get_files_and_directories(remote: SSHRemote, ssh_machine: Machine, tmp_path):
    remote.run(["sh", "-c", "mkdir -p out/sub && echo a > out/a.txt && echo b > out/sub/b.txt"])
    home = ssh_machine.home
    got = remote.get(f"{home}/out", tmp_path / "dir")
    assert (got / "a.txt").read_text() == "a\n" and (got / "sub" / "b.txt").read_text() == "b\n"
    into = tmp_path / "existing"
    into.mkdir()
    assert remote.get(f"{home}/out/a.txt", into) == into / "a.txt"
    assert remote.get(f"{home}/out/a.txt", tmp_path / "renamed.txt").read_text() == "a\n"
    with pytest.raises(NotFound, match="does not exist on"):
        remote.get(f"{home}/nothing", tmp_path / "x")


# -- trainctl's own key ----------------------------------------------------------------------


def test_own_key_is_made_once_and_private(ssh_machine: Machine):
    path = sshkeys.private_key_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    pub = sshkeys.public_key()
    assert pub.startswith("ssh-ed25519 ") and sshkeys.private_key_path() == path
    assert sshkeys.public_key() == pub
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True)
    assert derived.stdout.split()[:2] == pub.split()[:2]
    ssh_machine.authorize(pub)
    r = SSHRemote(Endpoint(ssh_machine.host, ssh_machine.port, ssh_machine.user))
    try:
        assert r.run(["whoami"]).text().strip() == ssh_machine.user
    finally:
        r.close()


@pytest.mark.parametrize(
    "text,expected",
    [
        ("u@h", Endpoint("h", None, "u")),
        ("u@10.0.0.1:2222", Endpoint("10.0.0.1", 2222, "u")),
        ("h.example.com", Endpoint("h.example.com")),
        ("root@[::1]:22", Endpoint("::1", 22, "root")),
        ("root@fe80::1", Endpoint("fe80::1", None, "root")),
    ],
)
def test_endpoint_parse(text, expected):
    assert Endpoint.parse(text) == expected
    assert Endpoint.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["", "u@", "u@h:0", "u@h:x", "-oProxyCommand=x", "u@h h", "a b@h"])
def test_endpoint_parse_refuses_bad_input(text):
    from trainctl.errors import BadInput

    with pytest.raises(BadInput, match="bad SSH host"):
        Endpoint.parse(text)


def test_stream_to_and_from_data(remote: SSHRemote):
    # a job's log holds arbitrary bytes; they arrive unchanged
    payload = bytes(range(256)) * 4
    out = b"".join(
        remote.stream(
            ["python3", "-c", "import sys; sys.stdout.buffer.write(bytes(range(256)) * 4)"]
        )
    )
    assert out == payload


def _partial_appears(folder: Path, name: str) -> bool:
    """Whether a download has begun writing ``name`` in ``folder``: rsync's temporary
    file, or a stream's partial file."""
    partial = folder / sync.PARTIAL_DIR / name
    return (partial.is_file() and partial.stat().st_size > 0) or any(
        p.name.startswith(f".{name}.") and p.stat().st_size > 0
        for p in folder.iterdir()
        if p.is_file()
    )


def _rsync_flags(args: list[str]) -> str:
    (flags,) = [a for a in args if a.startswith("-rlpt")]
    return flags


def test_a_checkpoint_download_is_streamed_and_a_cut_one_resumed_uncompressed(tmp_path):
    """A file with a checkpoint suffix is streamed as it is (``cat``: random bytes do
    not compress, and a rewritten checkpoint shares no blocks with the old copy);
    partial data left by a cut download is the basis rsync resumes from, without
    -z; a log goes through rsync with -z; a directory, which may hold logs, keeps -z
    and goes whole unless a cut download left partial data in it."""
    r = SSHRemote(Endpoint("box.example"), key=tmp_path / "key")
    for src, streamed in [
        ("/w/ck/model.pt", True),
        ("/w/ck/Weights.SafeTensors", True),
        ("/w/ck/step-100.ckpt", True),
        ("/w/train.log", False),
        ("/w/.bin", False),
    ]:
        target, args = r._download_args(src, tmp_path / "out", directory=False)
        assert target == tmp_path / "out"
        assert r._streams(src, target) is streamed, src
        assert _rsync_flags(args) == ("-rlpt" if streamed else "-rlptz"), src
        assert f"--partial-dir={sync.PARTIAL_DIR}" in args
    (tmp_path / sync.PARTIAL_DIR).mkdir()
    (tmp_path / sync.PARTIAL_DIR / "model.pt").write_bytes(b"first half")
    assert not r._streams("/w/ck/model.pt", tmp_path / "model.pt")
    assert r._streams("/w/ck/other.pt", tmp_path / "other.pt")
    (tmp_path / "fresh").mkdir()
    _, fresh = r._download_args("/w/ck", tmp_path / "fresh", directory=True)
    assert _rsync_flags(fresh) == "-rlptzW"
    _, again = r._download_args("/w/ck", tmp_path, directory=True)
    assert _rsync_flags(again) == "-rlptz"


def test_a_streamed_checkpoint_arrives_whole_with_its_progress(
    remote: SSHRemote, ssh_machine: Machine, tmp_path
):
    name = "step $(touch pwned) 'one'.pt"  # reaches cat verbatim, run by no shell
    data = os.urandom(3 << 20)
    ssh_machine.write(f"ck/{name}", data)
    events: list[str] = []
    dest = tmp_path / "dest"
    dest.mkdir()
    got = remote.get(f"{ssh_machine.home}/ck/{name}", dest, progress=events.append)
    assert got == dest / name and got.read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == [name]  # no partial left
    assert not (ssh_machine.home / "pwned").exists()
    last = events[-1]
    assert isinstance(last, TransferEvent) and last.finished and last.done == len(data)


def test_a_cut_download_keeps_the_good_copy(remote: SSHRemote, ssh_machine: Machine, tmp_path):
    """The connection drops mid-download of a large file: the complete copy that was
    there before is still there, nothing truncated takes its name, and the next
    download resumes and completes."""
    data = os.urandom(48 << 20)  # random, as a checkpoint: sent whole, not compressed
    ssh_machine.write("big.bin", data)
    dest = tmp_path / "out"
    dest.mkdir()
    good = dest / "big.bin"
    good.write_bytes(b"the complete copy from yesterday")
    errors: list[Exception] = []

    def download() -> None:
        try:
            remote.get(f"{ssh_machine.home}/big.bin", good)
        except Exception as e:  # noqa: BLE001 - collected for the assertion below
            errors.append(e)

    t = threading.Thread(target=download)
    t.start()
    deadline = time.monotonic() + 30
    while not _partial_appears(dest, "big.bin") and t.is_alive():
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert t.is_alive(), "the download ended before it could be cut"
    assert ssh_machine.drop_connections() > 0
    t.join(30)
    assert errors and isinstance(errors[0], (RemoteError, OperationFailed)), errors
    assert good.read_bytes() == b"the complete copy from yesterday"
    assert {p.name for p in dest.iterdir()} <= {"big.bin", ".trainctl-partial"}

    assert remote.get(f"{ssh_machine.home}/big.bin", good) == good
    assert good.read_bytes() == data
    assert sorted(p.name for p in dest.iterdir()) == ["big.bin"]
