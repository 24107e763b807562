"""What a sync sends: never trainctl's own outputs, never well-known secrets, never
/ or the home directory unasked; a huge tree is announced before it is sent."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from cli_helpers import trainctl
from trainctl import sync

#: prints every file the job sees in its synced directory, as JSON
LIST_FILES = (
    "import json, os\n"
    "print('FILES', json.dumps(sorted(os.path.relpath(os.path.join(d, f)) "
    "for d, _, fs in os.walk('.') for f in fs)))\n"
)


def files_seen(out: str) -> list[str]:
    line = next(x for x in out.splitlines() if x.startswith("FILES "))
    return json.loads(line[len("FILES ") :])


@pytest.fixture
def project(tmp_path) -> Path:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "list.py").write_text(LIST_FILES)
    (d / "ckpt.py").write_text(
        "import os\nos.makedirs('checkpoints', exist_ok=True)\n"
        "open('checkpoints/model.pt', 'w').write('w')\n"
    )
    return d


def test_outputs_of_a_run_are_not_uploaded_by_the_next(project):
    first = trainctl(
        "run", "-p", "local", "-o", "checkpoints", "--", sys.executable, "ckpt.py", cwd=project
    )
    assert first.code == 0, first.err
    assert list((project / "trainctl-runs").glob("*/checkpoints/model.pt"))
    mine = trainctl(
        "run",
        "-p",
        "local",
        "-o",
        "checkpoints",
        "--output-dir",
        "results",
        "--",
        sys.executable,
        "ckpt.py",
        cwd=project,
    )
    assert mine.code == 0, mine.err
    assert (project / "results" / "checkpoints" / "model.pt").exists()
    second = trainctl("run", "-p", "local", "--", sys.executable, "list.py", cwd=project)
    assert second.code == 0, second.err
    seen = files_seen(second.out)
    assert "list.py" in seen
    assert not [f for f in seen if f.startswith(("trainctl-runs", "results"))], seen


def test_secrets_are_never_synced(project):
    for rel in (
        ".ssh/id_rsa",
        ".ssh/config",
        ".aws/credentials",
        ".runpod/config.toml",
        ".lyceum/config.json",
        ".gnupg/pubring.kbx",
        ".config/gcloud/credentials.db",
        ".netrc",
        ".docker/config.json",
        ".kube/config",
        "deep/er/id_ed25519",
        "deep/id_rsa.pub",
        "certs/server.pem",
        ".env",
        ".env.local",
    ):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text("secret\n")
    (project / ".config" / "app.toml").write_text("kept\n")
    (project / ".trainctlignore").write_text("# nothing re-includes a secret\n")
    r = trainctl("run", "-p", "local", "--", sys.executable, "list.py", cwd=project)
    assert r.code == 0, r.err
    assert sorted(files_seen(r.out)) == [
        ".config/app.toml",
        ".trainctlignore",
        "ckpt.py",
        "list.py",
    ]


def test_the_ssm_tree_sync_uses_the_same_rules(project):
    (project / ".aws").mkdir()
    (project / ".aws" / "credentials").write_text("secret")
    (project / "trainctl-runs" / "j-1").mkdir(parents=True)
    (project / "trainctl-runs" / "j-1" / "model.pt").write_text("w")
    assert sorted(sync.list_tree(str(project))) == ["ckpt.py", "list.py"]
    from trainctl.remote import treesync

    assert sorted(treesync.scan(project, {}).files) == ["ckpt.py", "list.py"]


def test_what_a_cut_download_left_is_not_uploaded(project):
    """A download cut inside the project (rsync's partial directory, a killed local or
    SSM copy's temporary file) leaves partial data there: the next sync sends none of
    it, by either sync."""
    (project / "ckpt" / ".trainctl-partial").mkdir(parents=True)
    (project / "ckpt" / ".trainctl-partial" / "model.pt").write_text("half")
    (project / "ckpt" / ".model.pt.trainctl-part-1234").write_text("half")
    (project / ".big.bin.trainctl-part-0a1b2c3d").write_text("half")
    (project / "ckpt" / "model.pt").write_text("whole")
    from trainctl.remote import treesync

    expected = ["ckpt.py", "ckpt/model.pt", "list.py"]
    assert sorted(p for p in sync.list_tree(str(project)) if not p.endswith("/")) == expected
    assert sorted(treesync.scan(project, {}).files) == expected
    r = trainctl("run", "-p", "local", "--", sys.executable, "list.py", cwd=project)
    assert r.code == 0, r.err
    assert sorted(files_seen(r.out)) == expected


def test_home_and_root_are_refused_as_workdir(tmp_path):
    home = Path(os.environ["HOME"])
    (home / "train.py").write_text("print('ran')\n")
    # an unknown provider: even without the refusal, nothing would be rented or sent
    for workdir in ("/", str(home)):
        r = trainctl("run", "-p", "no-such", "-w", workdir, "--", sys.executable, "train.py")
        assert r.code == 2 and "refusing to sync" in r.err and "--allow-any-workdir" in r.err
    r = trainctl(
        "run",
        "-p",
        "local",
        "-w",
        str(home),
        "--allow-any-workdir",
        "--",
        sys.executable,
        "train.py",
    )
    assert r.code == 0 and "ran" in r.out, r.err
    # the default workdir `.` started from the home directory is the home directory
    r = trainctl("run", "-p", "no-such", "--", sys.executable, "train.py", cwd=home)
    assert r.code == 2 and "refusing to sync your home directory" in r.err


def test_a_huge_tree_is_announced_before_the_sync(tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    with open(big / "data.bin", "wb") as f:  # sparse: costs no disk
        f.truncate(1024**3 + 1)
    # the provider is unknown, so nothing is rented or sent after the warning
    r = trainctl("run", "-p", "no-such-provider", "-w", str(big), "--", "true")
    assert r.code == 2
    assert "warning:" in r.err and "1 files, 1.0 GiB to sync" in r.err
    small = trainctl(
        "run", "-p", "no-such-provider", "-w", str(tmp_path / "big"), "--no-sync", "--", "true"
    )
    assert "warning:" not in small.err


def test_progress_option_only_where_rsync_has_it(tmp_path, monkeypatch):
    """rsync 2.6.9 (macOS) and openrsync have no --info=progress2."""
    fake = tmp_path / "bin"
    fake.mkdir()
    rsync = fake / "rsync"
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    try:
        for version, expected in (
            ("rsync  version 2.6.9  protocol version 29", ()),
            ("openrsync: protocol version 29\nrsync version 2.6.9 compatible", ()),
            ("rsync  version 3.2.7  protocol version 31", ("--info=progress2",)),
        ):
            rsync.write_text(f"#!/bin/sh\nprintf '%s\\n' '{version}'\n")
            rsync.chmod(0o755)
            sync.progress_args.cache_clear()
            assert sync.progress_args() == expected
            assert ("--info=progress2" in sync.copy_args("a", "b")) == bool(expected)
    finally:
        sync.progress_args.cache_clear()


def test_the_python_api_refuses_home_and_root_too(tmp_path):
    """The refusal lives in TrainingJob, so library callers get it as the CLI does."""
    from trainctl.errors import BadInput
    from trainctl.types import TrainingJob

    for workdir in ("/", os.environ["HOME"]):
        with pytest.raises(BadInput, match="refusing to sync"):
            TrainingJob(["true"], workdir=workdir)
        assert TrainingJob(["true"], workdir=workdir, allow_any_workdir=True).workdir == workdir
    assert TrainingJob(["true"], workdir=str(tmp_path)).workdir == str(tmp_path)
