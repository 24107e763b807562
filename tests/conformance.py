"""The provider conformance suite: every provider runs the same lifecycle.

A provider's test module subclasses ``ProviderConformance`` (named ``Test...``) and
supplies two fixtures:

- ``provider``: a ready ``TrainingProvider`` talking to its real or faked API;
- ``create_options``: the ``CreateResourceOptions`` that make a small machine.

The suite creates one machine per test and terminates it afterwards.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest

from trainctl.errors import BadInput, NotFound
from trainctl.provider import TrainingProvider
from trainctl.types import (
    CreateResourceOptions,
    ExecutionStatus,
    ResourceState,
    TrainingJob,
)

JOB_SCRIPT = """\
import json, os, sys, time
ckpt = os.environ["TRAINCTL_CHECKPOINT_DIR"]
os.makedirs(ckpt, exist_ok=True)
print("job", os.environ["TRAINCTL_JOB_ID"], flush=True)
print("argv", json.dumps(sys.argv[1:]), flush=True)
print("env", json.dumps(os.environ.get("CONFORMANCE_VALUE")), flush=True)
steps = int(os.environ.get("STEPS", "3"))
for i in range(steps):
    print("step", i, flush=True)
    with open(os.path.join(ckpt, "ckpt-%d.txt" % i), "w") as f:
        f.write("weights %d" % i)
    time.sleep(float(os.environ.get("STEP_SECONDS", "0.05")))
sys.exit(int(os.environ.get("EXIT_CODE", "0")))
"""

TRICKY = ["a b", "it's", 'say "hi"', "x; rm -rf /", "$(id)", "`id`", "line\nbreak", "ünï €"]


def wait_final(provider: TrainingProvider, rid: str, job_id: str, timeout: float = 60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = provider.job_status(rid, job_id)
        if st.status.is_final:
            return st
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end within {timeout} s")


def wait_running(provider: TrainingProvider, rid: str, job_id: str, timeout: float = 30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = provider.job_status(rid, job_id)
        if st.status is ExecutionStatus.RUNNING:
            return st
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not start within {timeout} s")


class ProviderConformance:
    python = "python3"  # interpreter on the machine; a provider may override

    @pytest.fixture
    def workdir(self, tmp_path: Path) -> Path:
        d = tmp_path / "project"
        d.mkdir()
        (d / "train.py").write_text(JOB_SCRIPT)
        (d / ".gitignore").write_text("ignored.bin\n")
        (d / "ignored.bin").write_bytes(b"x" * 100)
        return d

    @pytest.fixture
    def resource(self, provider: TrainingProvider, create_options: CreateResourceOptions):
        status = provider.create_resource(create_options)
        try:
            yield status.id
        finally:
            provider.terminate(status.id)

    def job(self, workdir: Path | None, *args: str, **env: str) -> TrainingJob:
        return TrainingJob(
            command=[self.python, "train.py", *args],
            workdir=str(workdir) if workdir else None,
            env={k: str(v) for k, v in env.items()},
        )

    # -- lifecycle ----------------------------------------------------------------

    def test_full_lifecycle(self, provider, create_options, workdir, tmp_path):
        created = provider.create_resource(create_options)
        rid = created.id
        try:
            assert created.provider == provider.name
            st = provider.get_resource_status(rid)
            assert st.id == rid
            assert st.state in (ResourceState.RUNNING, ResourceState.STARTING)
            assert rid in {r.id for r in provider.list_resources()}

            started = provider.train(rid, self.job(workdir, CONFORMANCE_VALUE="v"))
            assert started.status in (ExecutionStatus.RUNNING, ExecutionStatus.PENDING)
            out = bytearray()
            final = provider.monitor(rid, started.job_id, follow=True, sink=out.extend)
            assert final.status is ExecutionStatus.COMPLETED
            assert final.exit_code == 0
            text = out.decode()
            assert f"job {started.job_id}" in text
            assert [ln for ln in text.splitlines() if ln.startswith("step")] == [
                "step 0",
                "step 1",
                "step 2",
            ]
            assert 'env "v"' in text

            # the ignored file was not synced
            with pytest.raises(NotFound):
                provider.download(rid, "ignored.bin", tmp_path / "ignored.bin")

            dest = provider.download(rid, "checkpoints", tmp_path / "out")
            assert sorted(p.name for p in Path(dest).iterdir()) == [
                "ckpt-0.txt",
                "ckpt-1.txt",
                "ckpt-2.txt",
            ]
            assert (Path(dest) / "ckpt-2.txt").read_text() == "weights 2"

            again = provider.monitor(rid, follow=False, sink=(buf := bytearray()).extend)
            assert again.job_id == started.job_id
            assert bytes(buf) == bytes(out)
        finally:
            provider.terminate(rid)
        gone = self._status_or_none(provider, rid)
        assert gone is None or gone.state in (ResourceState.TERMINATED, ResourceState.TERMINATING)
        listed = {r.id: r for r in provider.list_resources()}
        assert rid not in listed or listed[rid].state in (
            ResourceState.TERMINATED,
            ResourceState.TERMINATING,
        )

    @staticmethod
    def _status_or_none(provider, rid):
        try:
            return provider.get_resource_status(rid)
        except NotFound:
            return None

    # -- jobs ---------------------------------------------------------------------

    def test_failing_job_reports_its_exit_code(self, provider, resource, workdir):
        started = provider.train(resource, self.job(workdir, EXIT_CODE="3"))
        final = provider.monitor(resource, started.job_id, follow=True)
        assert final.status is ExecutionStatus.FAILED
        assert final.exit_code == 3

    def test_job_killed_by_signal(self, provider, resource, workdir):
        job = TrainingJob(command=["sh", "-c", "echo before; kill -9 $$"], workdir=str(workdir))
        started = provider.train(resource, job)
        final = wait_final(provider, resource, started.job_id)
        assert final.status is ExecutionStatus.FAILED
        assert final.exit_code == 128 + 9
        assert "SIGKILL" in (final.reason or "")

    def test_cancel(self, provider, resource, workdir):
        started = provider.train(resource, self.job(workdir, STEPS="600", STEP_SECONDS="0.1"))
        wait_running(provider, resource, started.job_id)
        st = provider.cancel(resource, started.job_id, grace=2)
        assert st.status is ExecutionStatus.CANCELLED
        assert provider.job_status(resource, started.job_id).status is ExecutionStatus.CANCELLED

    def test_two_concurrent_jobs_keep_apart(self, provider, resource, workdir):
        a = provider.train(resource, self.job(workdir, "first", STEPS="5"))
        b = provider.train(
            resource, replace(self.job(None, "second", STEPS="5"), checkpoint_dir="b")
        )
        assert a.job_id != b.job_id
        out_a, out_b = bytearray(), bytearray()
        fa = provider.monitor(resource, a.job_id, follow=True, sink=out_a.extend)
        fb = provider.monitor(resource, b.job_id, follow=True, sink=out_b.extend)
        assert fa.status is fb.status is ExecutionStatus.COMPLETED
        assert '["first"]' in out_a.decode() and "second" not in out_a.decode()
        assert '["second"]' in out_b.decode() and "first" not in out_b.decode()
        ids = {j.job_id for j in provider.jobs(resource)}
        assert {a.job_id, b.job_id} <= ids

    def test_a_running_job_keeps_its_checkpoints_and_code(
        self, provider, resource, workdir, tmp_path
    ):
        """While a job runs, a second one with the same checkpoint directory is refused,
        and so is a sync that would change the code under it; both before anything is
        sent. Another checkpoint directory on the code already there is fine."""
        first = provider.train(resource, self.job(workdir, STEPS="600", STEP_SECONDS="0.1"))
        wait_running(provider, resource, first.job_id)
        (workdir / "new.txt").write_text("not yet")
        with pytest.raises(BadInput, match="same checkpoint directory") as refused:
            provider.train(resource, self.job(None))
        assert "--checkpoint-dir" in refused.value.hint and first.job_id in refused.value.hint
        with pytest.raises(BadInput, match="same checkpoint directory"):
            provider.train(resource, self.job(workdir))
        with pytest.raises(BadInput, match="from the synced code") as refused:
            provider.train(resource, replace(self.job(workdir), checkpoint_dir="other"))
        assert "--no-sync" in refused.value.hint
        with pytest.raises(NotFound):  # nothing was synced
            provider.download(resource, "new.txt", tmp_path / "new.txt")
        second = provider.train(
            resource, replace(self.job(None, STEPS="1"), checkpoint_dir="other")
        )
        assert wait_final(provider, resource, second.job_id).status is ExecutionStatus.COMPLETED
        provider.cancel(resource, first.job_id, grace=2)
        again = provider.train(resource, self.job(workdir, STEPS="1"))
        assert wait_final(provider, resource, again.job_id).status is ExecutionStatus.COMPLETED

    def test_arguments_reach_the_script_verbatim(self, provider, resource, workdir):
        started = provider.train(
            resource, self.job(workdir, *TRICKY, CONFORMANCE_VALUE="$(id) `x` ;")
        )
        out = bytearray()
        final = provider.monitor(resource, started.job_id, follow=True, sink=out.extend)
        assert final.status is ExecutionStatus.COMPLETED
        lines = out.decode().splitlines()
        argv_line = next(ln for ln in lines if ln.startswith("argv "))
        assert json.loads(argv_line[5:]) == TRICKY
        assert 'env "$(id) `x` ;"' in lines

    # -- bad ids and idempotence --------------------------------------------------

    def test_unknown_resource(self, provider):
        with pytest.raises(NotFound):
            provider.get_resource_status(self.unknown_id())

    def test_unknown_job(self, provider, resource):
        with pytest.raises(NotFound):
            provider.job_status(resource, "j-00000000")

    def test_terminate_twice(self, provider, create_options):
        rid = provider.create_resource(create_options).id
        first = provider.terminate(rid)
        second = provider.terminate(rid)
        assert first.state in (ResourceState.TERMINATED, ResourceState.TERMINATING)
        assert second.state in (ResourceState.TERMINATED, ResourceState.TERMINATING)

    def unknown_id(self) -> str:
        """An id shaped like the provider's own that names nothing."""
        return "does-not-exist-0000"
