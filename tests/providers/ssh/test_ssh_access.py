"""`trainctl ssh` on a machine of the ssh provider, against the real sshd."""

from __future__ import annotations

from cli_helpers import trainctl
from sshd import Machine, SSHServer

ODD = ["a b", "$HOME", ";", '"q"', "*", "it's"]


def create(sshd: SSHServer, machine: Machine, name: str = "box") -> str:
    made = trainctl(
        "create", "--provider", "ssh", "--host", machine.target,
        "--key", str(sshd.client_key), "--name", name, "--json",
    )  # fmt: skip
    assert made.code == 0, made.err
    return made.json()["id"]


def test_a_command_runs_in_the_work_dir_with_its_arguments_verbatim(sshd, ssh_machine):
    rid = create(sshd, ssh_machine)
    r = trainctl("ssh", "box", "--", "printf", "%s\\n", *ODD)
    assert r.code == 0, r.err
    assert r.out.splitlines() == ODD
    r = trainctl("ssh", "box", "pwd")  # no -- needed
    work = ssh_machine.home / ".trainctl" / rid / "work"
    assert r.out.strip() == str(work) and r.code == 0


def test_the_exit_code_passes_through(sshd, ssh_machine):
    create(sshd, ssh_machine)
    r = trainctl("ssh", "box", "--", "sh", "-c", "echo out; exit 7")
    assert (r.code, r.out) == (7, "out\n"), r.err


def test_the_jobs_environment_file_is_sourced(sshd, ssh_machine):
    rid = create(sshd, ssh_machine)
    ssh_machine.write(f".trainctl/{rid}/job.env", "export TRAINCTL_JOB_ID='j-1 $x'\n")
    r = trainctl("ssh", "box", "--", "sh", "-c", 'echo "$TRAINCTL_JOB_ID"')
    assert (r.code, r.out) == (0, "j-1 $x\n"), r.err


def test_a_shell_reads_its_commands_from_stdin(sshd, ssh_machine):
    create(sshd, ssh_machine)
    r = trainctl("ssh", "box", input="echo from-stdin; exit 3\n")
    assert (r.code, r.out.strip().splitlines()[-1]) == (3, "from-stdin"), r.err


def test_an_unknown_machine_is_a_one_line_error():
    r = trainctl("ssh", "nope", "--", "true")
    assert r.code == 3 and len(r.err.strip().splitlines()) == 1, r.err
