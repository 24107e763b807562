"""Every requested provider, end to end on a real machine: create, train a job whose
arguments hold shell metacharacters, monitor it, download what it wrote, terminate,
and see through the provider's API that nothing bills any more; and the guard on a
machine releasing it through the provider's API with the credential trainctl gave it.
"""

from __future__ import annotations

import livekit

livekit.require_live()

import json  # noqa: E402 - after the gate: nothing is imported when the suite is skipped
import time  # noqa: E402

from trainctl.errors import NotFound  # noqa: E402
from trainctl.types import ExecutionStatus, ResourceState, TrainingJob  # noqa: E402

#: arguments that a shell would split, expand or run
TRICKY = ["a b", "it's", 'say "hi"', "x; rm -rf /", "$(id)", "`id`", "*", "line\nbreak", "ünï €"]

JOB = """\
import json, os, sys
print("argv", json.dumps(sys.argv[1:]), flush=True)
with open("result.txt", "w") as f:
    f.write(json.dumps({"argv": sys.argv[1:], "job": os.environ["TRAINCTL_JOB_ID"]}))
print("wrote result.txt", flush=True)
"""


def test_full_lifecycle(live, provider_name, observe, tmp_path):
    record = live.create(provider_name, "life", observe=observe)
    guards = record.guards or {}
    assert guards.get("max_spend") and guards.get("deadline"), f"uncapped: {guards}"
    workdir = tmp_path / "job"
    workdir.mkdir()
    (workdir / "job.py").write_text(JOB)
    started = live.tc.train(record.name, TrainingJob(["python3", "job.py", *TRICKY],
                                                     workdir=str(workdir)))  # fmt: skip
    out = bytearray()
    final = live.tc.monitor(started.job_id, follow=True, sink=out.extend)
    text = out.decode(errors="replace")
    observe(f"job {started.job_id}: {final.status.value}, exit {final.exit_code}")
    assert final.status is ExecutionStatus.COMPLETED and final.exit_code == 0, text
    argv_lines = [ln for ln in text.splitlines() if ln.startswith("argv ")]
    assert argv_lines, text
    assert json.loads(argv_lines[0].removeprefix("argv ")) == TRICKY, text
    got = live.tc.download(record.name, "result.txt", tmp_path / "result.txt")
    assert json.loads(got.read_text()) == {"argv": TRICKY, "job": started.job_id}
    observe("argv arrived verbatim; result.txt came home")
    live.release(record, observe)
    listed = [s for s in live.provider(provider_name).list_resources() if s.id == record.id]
    assert all(s.state is ResourceState.TERMINATED for s in listed), listed


def test_guard_releases_its_machine_through_the_api(live, provider_name, observe):
    """An idle machine's guard releases it with the credential trainctl handed it
    (AWS: the instance profile; RunPod: the pod's own key; Lyceum: a key made for
    that VM): from here on this process only reads the machine's state."""
    record = live.create(provider_name, "guard", idle_stop=live.timing.guard_idle, observe=observe)
    guards = record.guards or {}
    observe(f"guard: idle stop {guards.get('idle_stop')} s, then {guards.get('release')}")
    provider = live.provider(provider_name)
    began = time.monotonic()
    deadline = began + float(guards["idle_stop"]) + live.timing.released_within
    released = (ResourceState.STOPPED, ResourceState.TERMINATED, ResourceState.TERMINATING)
    state = "unknown"
    while time.monotonic() < deadline:
        try:
            st = provider.get_resource_status(record.id)
        except NotFound:
            state = "gone"
            break
        state = st.raw_state or st.state.value
        if st.state in released:
            break
        time.sleep(live.timing.poll)
    waited = time.monotonic() - began
    observe(f"after {waited:.0f} s the API says: {state}")
    assert state == "gone" or provider.state_of(state) in released, (
        f"the guard did not release {record.id} within {deadline - began:.0f} s "
        f"(the API still says {state})"
    )
    live.release(record, observe)  # a stopped machine's disk still bills
