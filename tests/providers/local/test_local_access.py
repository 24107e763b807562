"""`trainctl ssh` on a local workspace."""

from __future__ import annotations

from cli_helpers import trainctl


def test_a_command_runs_in_the_workspace_work_dir(trainctl_home):
    assert trainctl("create", "--provider", "local", "--name", "here").code == 0
    r = trainctl("ssh", "here", "--", "sh", "-c", 'pwd; echo "$1"; exit 5', "sh", "a;b")
    assert r.code == 5, r.err
    where, arg = r.out.splitlines()
    assert where.startswith(str(trainctl_home)) and where.endswith("/work") and arg == "a;b"


def test_train_port_on_a_local_workspace(tmp_path):
    assert trainctl("create", "--provider", "local", "--name", "here").code == 0
    r = trainctl("train", "here", "--no-sync", "--port", "6006", "--", "true")
    assert r.code == 0 and "forwarding localhost:6006 -> here:6006" in r.err, r.err
    r = trainctl("train", "here", "--no-sync", "--port", "6006:7007", "--", "true")
    assert r.code == 0 and "warning: ports not forwarded: " in r.err  # the job runs on
    r = trainctl("train", "here", "--no-sync", "-d", "--port", "6006", "--", "true")
    assert r.code == 2 and "not with --detach" in r.err
