"""Arguments, environment values and paths reach the machine verbatim over SSH, and
nothing in them runs (property tests against a real OpenSSH server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sshd import Machine, SSHServer
from trainctl.remote.ssh import Endpoint, SSHRemote
from trainctl.runtime.client import JobRuntime

SHELL_CHARS = list(" \t\n'\"`$();&|<>*?[]{}~#!\\%^=,-") + ["ü", "€", "日", "\u202e"]
CANARY = "trainctl-canary"
INJECTIONS = [
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"; touch {CANARY}",
    f"' ; touch {CANARY} ; '",
    f'" ; touch {CANARY} ; "',
    f"\ntouch {CANARY}\n",
    f"&& touch {CANARY}",
    f"| touch {CANARY}",
]

#: any text a command line can hold: no NUL, no lone surrogates
text = st.text(
    alphabet=st.one_of(
        st.sampled_from(SHELL_CHARS),
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    ),
    max_size=24,
)
#: a file name: text without "/", not "." or ".."
name = text.filter(lambda s: s not in ("", ".", "..") and "/" not in s and len(s.encode()) < 200)

ECHO = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ.get('V')]))"


def relaxed(max_examples: int) -> settings:
    """Each example is a round trip to the machine, which the fixtures share."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


@pytest.fixture(scope="module")
def machine(sshd: SSHServer):
    m = sshd.new_machine()
    yield m
    m.destroy()


@pytest.fixture
def remote(sshd: SSHServer, machine: Machine):
    r = SSHRemote(Endpoint(machine.host, machine.port, machine.user), key=sshd.client_key)
    yield r
    r.close()
    assert not (machine.home / CANARY).exists(), "an argument ran as a command"


@relaxed(60)
@given(args=st.lists(text, max_size=5))
@example(args=INJECTIONS)
@example(args=["", " ", "-c", "--", "~", "*", "$HOME", "a\\", "'", '"'])
def test_arguments_reach_the_program_verbatim(remote: SSHRemote, args: list[str]):
    r = remote.run(["python3", "-c", ECHO, *args])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [args, None]


@relaxed(12)
@given(args=st.lists(text, max_size=3), value=text)
@example(args=INJECTIONS[:4], value=INJECTIONS[4])
def test_job_arguments_and_env_reach_the_job_verbatim(
    remote: SSHRemote, args: list[str], value: str
):
    rt = JobRuntime(remote, "quoting")
    job = rt.start(["python3", "-c", ECHO, *args], env={"V": value})
    out = bytearray()
    final = rt.follow(job.job_id, out.extend)
    assert final.exit_code == 0, out
    assert json.loads(out) == [args, value]
    assert rt.status(job.job_id).command == ["python3", "-c", ECHO, *args]


@relaxed(12)
@given(dirname=name, filename=name)
@example(dirname=INJECTIONS[0], filename=INJECTIONS[1])
@example(dirname="a b; c", filename="x\ny 'z' ü")
def test_paths_reach_the_machine_verbatim(
    remote: SSHRemote, machine: Machine, tmp_path_factory, dirname: str, filename: str
):
    remote.run(["rm", "-rf", "--", f"{machine.home}/put"])
    src = tmp_path_factory.mktemp("src") / dirname
    src.mkdir()
    content = filename.encode()
    (src / filename).write_bytes(content)
    dest = f"{machine.home}/put/{dirname}"
    assert remote.put_tree(src, dest).files_sent == 1
    ls = "import os, sys, json; print(json.dumps(os.listdir(sys.argv[1])))"
    listing = remote.run(["python3", "-c", ls, dest])
    assert json.loads(listing.stdout) == [filename]
    back = tmp_path_factory.mktemp("back")
    assert remote.get(dest, back / "dir") == back / "dir"
    assert (back / "dir" / filename).read_bytes() == content
    one = remote.get(f"{dest}/{filename}", back)
    assert one == back / filename and Path(one).read_bytes() == content
