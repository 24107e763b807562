"""`trainctl ssh` on a local workspace."""

from __future__ import annotations

from cli_helpers import trainctl


def test_a_command_runs_in_the_workspace_work_dir(trainctl_home):
    assert trainctl("create", "--provider", "local", "--name", "here").code == 0
    r = trainctl("ssh", "here", "--", "sh", "-c", 'pwd; echo "$1"; exit 5', "sh", "a;b")
    assert r.code == 5, r.err
    where, arg = r.out.splitlines()
    assert where.startswith(str(trainctl_home)) and where.endswith("/work") and arg == "a;b"
