"""The provider conformance suite: every provider runs the same lifecycle.

A provider's test module subclasses ``ProviderConformance`` (named ``Test...``) and
supplies two fixtures:

- ``provider``: a ready ``TrainingProvider`` talking to its real or faked API;
- ``create_options``: the ``CreateResourceOptions`` that make a small machine;

and, where its real or faked API can have one, a third:

- ``foreign_id``: the id of a machine that exists there but that trainctl did not
  make (without it, the tests that need one are skipped, saying so).

The suite creates one machine per test and terminates it afterwards.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from trainctl.api import Trainctl, run
from trainctl.capabilities import Capability
from trainctl.errors import BadInput, CapabilityError, NotFound, OperationFailed
from trainctl.guards import GuardRequest
from trainctl.provider import SelfRelease, StopStart, TrainingProvider
from trainctl.types import (
    CreateResourceOptions,
    ExecutionStatus,
    GpuSpec,
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

#: each capability a create option needs, with options that ask for it
CAPABILITY_OPTIONS = [
    pytest.param(Capability.SPOT, {"spot": True}, id="spot"),
    pytest.param(Capability.REGIONS, {"region": "nowhere-1"}, id="region"),
    pytest.param(Capability.CUSTOM_IMAGE, {"image": "example.org/img:1"}, id="image"),
    pytest.param(Capability.GPU_SELECTION, {"gpu": GpuSpec("A100", 1)}, id="gpu"),
    pytest.param(Capability.INSTANCE_TYPE, {"instance_type": "conf.large"}, id="instance-type"),
    pytest.param(Capability.DISK_SIZE, {"disk_gb": 50}, id="disk"),
    pytest.param(Capability.TAGS, {"tags": {"team": "ml"}}, id="tags"),
]

#: how long a call on a stopped machine may take to fail (a wait for it to come up
#: would take the provider's whole ready timeout)
STOPPED_FAILS_WITHIN = 10.0

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


def failure_within(call: Callable[[], Any], seconds: float) -> BaseException:
    """The exception ``call`` raises, which it must do within ``seconds``; a call
    that hangs fails the test instead of hanging it."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(("returned", call()))
        except BaseException as e:  # noqa: BLE001 - handed to the test
            outcome.append(("raised", e))

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if not outcome:
        raise AssertionError(f"still waiting after {seconds:g} s instead of failing")
    kind, value = outcome[0]
    if kind == "returned":
        raise AssertionError(f"expected a failure, got {value!r}")
    return value


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

    @pytest.fixture
    def foreign_id(self) -> str:
        pytest.skip(
            f"{type(self).__name__} has no foreign_id fixture: its test harness cannot "
            "make a machine outside trainctl yet"
        )

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

    # -- capabilities --------------------------------------------------------------

    @pytest.mark.parametrize(("capability", "asked"), CAPABILITY_OPTIONS)
    def test_a_missing_capability_is_refused_before_anything_is_made(
        self, provider, create_options, capability, asked
    ):
        request = replace(create_options, **asked)
        why = provider.unsupported_reason(capability, request)
        if why is None:
            pytest.skip(f"{provider.name} has {capability.value}")
        before = {r.id for r in provider.list_resources()}
        try:
            made = provider.create_resource(request)
        except CapabilityError as e:
            assert e.message == why
        else:
            provider.terminate(made.id)
            pytest.fail(f"{provider.name} made {made.id} without {capability.value}")
        assert {r.id for r in provider.list_resources()} == before

    def test_a_flag_of_another_provider_is_refused_before_anything_is_made(
        self, provider, create_options
    ):
        request = replace(create_options, extra={**create_options.extra, "no_such_flag": "x"})
        before = {r.id for r in provider.list_resources()}
        with pytest.raises(CapabilityError, match="does not take --no-such-flag"):
            provider.create_resource(request)
        assert {r.id for r in provider.list_resources()} == before

    def test_stop_start_is_declared_with_its_methods(self, provider):
        declared = Capability.STOP_START in type(provider).capabilities
        assert declared == isinstance(provider, StopStart)

    def test_a_stopped_machine_says_to_start_it(self, provider, resource, workdir):
        """``connect`` and ``train`` on a stopped machine fail at once, naming
        ``trainctl start``; they do not wait for the machine to come back."""
        if not isinstance(provider, StopStart):
            pytest.skip(f"{provider.name} cannot stop machines")
        provider.stop(resource)
        for call in (
            lambda: provider.connect(resource),
            lambda: provider.train(resource, self.job(workdir)),
        ):
            error = failure_within(call, STOPPED_FAILS_WITHIN)
            assert isinstance(error, OperationFailed), repr(error)
            assert "trainctl start" in str(error)

    # -- runs outlive their machines ------------------------------------------------

    def test_a_run_outlives_its_machine(self, provider, create_options, workdir, tmp_path):
        """Through the API: after `run` released the machine, the run is recorded with
        its offer and exit, its whole log is at home, and `jobs` and `monitor` answer
        from the record; the machine's history says when it ended."""
        tc = Trainctl()
        tc._providers[provider.name] = provider  # the suite's instance, with its endpoints
        out = bytearray()
        result = run(
            tc,
            provider.name,
            replace(create_options, guards=GuardRequest(idle_stop="never")),
            self.job(workdir, STEPS="2"),
            outputs=[],
            output_dir=tmp_path / "out",
            sink=out.extend,
        )
        assert result.terminated and result.exit_code == 0, result.to_dict()
        job_id = result.job.job_id
        record = tc.store.job(job_id)
        assert record is not None and record.machine == result.resource.name
        assert (record.provider, record.status, record.exit_code) == (provider.name, "completed", 0)
        assert record.instance_type == result.resource.instance_type and record.log_complete
        assert [s.job_id for s in tc.jobs(result.resource.name)] == [job_id]
        saved = bytearray()
        assert tc.monitor(job_id, sink=saved.extend).exit_code == 0
        assert bytes(saved) == bytes(out) and b"step 1" in saved
        assert tc.store.machine(result.resource.id).ended_at is not None

    # -- the machine's guard -----------------------------------------------------------

    def test_the_guard_runs_on_the_machine_and_goes(self, provider, resource):
        """The guard starts detached on the machine, answers, and ends when disarmed."""
        rt = provider.runtime(resource)
        policy = {"deadline": time.time() + 3600, "launched_at": time.time(), "release": None}
        report = rt.guard_set({**policy, "interval": 0.2})
        assert report["armed"] and report["running"], report
        assert rt.guard_stop()["armed"] is False
        deadline = time.time() + 10
        while rt.guard_status()["running"] and time.time() < deadline:
            time.sleep(0.1)
        assert not rt.guard_status()["running"]

    def test_self_release_is_declared_with_its_methods(self, provider, resource):
        """A provider that lets machines release themselves says how, for each release
        its machines allow, in a request the job runtime can make."""
        declared = Capability.SELF_RELEASE in type(provider).capabilities
        assert declared == isinstance(provider, SelfRelease)
        status = provider.get_resource_status(resource)
        releases = type(provider).releases(CreateResourceOptions(spot=status.spot))
        if not declared:
            assert releases == ()
            pytest.skip(f"{provider.name} machines have nothing to release")
        assert releases and set(releases) <= {"stop", "terminate"}
        if "stop" in releases:
            assert isinstance(provider, StopStart)
        for action in releases:
            release = provider.guard_release(status, action, until=time.time() + 3600)
            assert release.action == action
            assert release.request["kind"] in ("http", "aws-ec2")
            assert release.secret is None or release.secret not in json.dumps(release.request)
        provider.forget_release(resource)

    # -- machines trainctl did not make ---------------------------------------------

    def test_a_foreign_machine_is_not_found(self, provider, foreign_id):
        """A machine someone else made is not trainctl's: not listed, and every call
        on it is NotFound (so that trainctl never ends or reaches into it)."""
        assert foreign_id not in {r.id for r in provider.list_resources()}
        wrong = {}
        for call in (provider.get_resource_status, provider.connect, provider.terminate):
            try:
                answer = call(foreign_id)
            except NotFound:
                continue
            except Exception as e:  # noqa: BLE001 - reported below
                answer = e
            wrong[call.__name__] = repr(answer)
        assert wrong == {}, f"not NotFound: {wrong}"

    def unknown_id(self) -> str:
        """An id shaped like the provider's own that names nothing."""
        return "does-not-exist-0000"
