"""What no stand-in can settle: each test asserts one behaviour of a real provider that
trainctl relies on, and says what it saw, so that a failure names the assumption
that broke (and where trainctl makes it)."""

from __future__ import annotations

import livekit

livekit.require_live()

import json  # noqa: E402 - after the gate: nothing is imported when the suite is skipped
import time  # noqa: E402

import pytest  # noqa: E402

from trainctl.types import ExecutionStatus, ResourceState, TrainingJob  # noqa: E402


@pytest.mark.live_provider("runpod")
def test_runpod_rents_spot_pods_through_graphql(live, observe):
    """providers/runpod/client.py ``rent_spot``: a spot pod is the GraphQL mutation
    ``podRentInterruptable`` (REST v2 has no spot create), bidding RunPod's current
    spot price (``spot_prices``)."""
    record = live.create("runpod", "spot", spot=True, observe=observe)
    st = live.provider("runpod").get_resource_status(record.id)
    observe(f"pod {st.id}: {st.raw_state}, spot={st.spot}, {st.instance_type}, "
            f"bid ${record.price_per_hour}/h, RunPod says ${st.cost_per_hour}/h")  # fmt: skip
    assert st.spot, "the pod podRentInterruptable made does not carry trainctl's spot mark"
    assert st.state is ResourceState.RUNNING and st.ssh_host, st
    live.release(record, observe)


@pytest.mark.live_provider("runpod")
def test_runpod_community_pod_gets_a_direct_ssh_endpoint(live, observe):
    """providers/runpod/provider.py ``_wait_usable``: trainctl reaches a pod only over
    its direct ``22/tcp`` mapping (rsync needs it), and releases one that runs
    ``direct_ssh_grace`` seconds without it. A community pod is the doubtful case."""
    record = live.create("runpod", "community", cloud="community", observe=observe)
    st = live.provider("runpod").get_resource_status(record.id)
    observe(f"community pod {st.id} on {st.instance_type}: direct SSH "
            f"{st.ssh_user}@{st.ssh_host}:{st.ssh_port}")  # fmt: skip
    assert st.details.get("cloud") == "COMMUNITY", st.details
    assert st.ssh_host and st.ssh_port
    _, remote = live.tc.remote(record.name)
    assert remote.run(["true"]).returncode == 0
    live.release(record, observe)


@pytest.mark.live_provider("lyceum")
def test_lyceum_vm_becomes_ready_or_running(live, observe):
    """providers/lyceum/provider.py ``_wait_usable``/``Probe``: a VM is usable once
    Lyceum says ``ready``, or ``running`` with an address where an SSH login works
    (lyceum-cli accepts ``running``); every state on the way is in trainctl's
    table (providers/lyceum/states.py)."""
    seen: list[str] = []
    record = live.create("lyceum", "ready", observe=observe, progress=seen.append)
    provider = live.provider("lyceum")
    states = []
    began = time.monotonic()
    while True:
        st = provider.get_resource_status(record.id)
        if not states or states[-1] != st.raw_state:
            states.append(st.raw_state)
        if st.raw_state == "ready" or time.monotonic() - began > live.timing.watch_states:
            break
        time.sleep(live.timing.poll)
    observe(f"while starting: {' | '.join(seen) or '(no progress lines)'}")
    observe(f"after create, watched {time.monotonic() - began:.0f} s: {' -> '.join(states)}")
    unknown = [s for s in states if provider.state_of(s) is ResourceState.UNKNOWN]
    assert not unknown, f"states trainctl does not know: {unknown}"
    assert states[-1] in ("ready", "running"), states
    _, remote = live.tc.remote(record.name)
    assert remote.run(["true"]).returncode == 0, "usable by trainctl's rule, yet no SSH login"
    live.release(record, observe)


PROBE = r"""
if command -v snap >/dev/null 2>&1 && snap list amazon-ssm-agent >/dev/null 2>&1; then
  echo "snap yes $(snap list amazon-ssm-agent | tail -n 1 | tr -s ' ')"
else
  echo "snap no"
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  for unit in snap.amazon-ssm-agent.amazon-ssm-agent.service amazon-ssm-agent.service; do
    if systemctl cat "$unit" >/dev/null 2>&1; then
      echo "unit $unit KillMode=$(systemctl show -p KillMode --value "$unit")"
    fi
  done
fi
"""

#: a detached job that outlives the agent's restart (live) and says so in a file
SURVIVOR = "import sys, time; time.sleep(float(sys.argv[1])); open('survived', 'w').write('yes')"


@pytest.mark.live_provider("aws")
def test_aws_job_survives_a_restart_of_the_ssm_agent(live, observe, tmp_path):
    """runtime/jobrunner.py (``systemd-run --scope``): on the Deep Learning AMI the
    SSM agent is a snap (it says whether, and its unit's KillMode), whose restart
    kills every process of its service's cgroup; a job started through it lives in a
    scope of its own and survives ``snap restart amazon-ssm-agent``."""
    record = live.create("aws", "snap", observe=observe)
    _, remote = live.tc.remote(record.name)
    facts = remote.run(["sh", "-c", PROBE]).text().splitlines()
    snap = any(line.startswith("snap yes") for line in facts)
    units = [line.split()[1] for line in facts if line.startswith("unit ")]
    observe("agent: " + "; ".join(facts))
    seconds = 120 if not live.fake else 1
    job = live.tc.train(record.name, TrainingJob(["python3", "-c", SURVIVOR, str(seconds)]))
    pid = json.loads(remote.run(["sh", "-c", f'cat "$HOME/.trainctl/jobs/{job.job_id}/pid.json"'])
                     .text())["supervisor_pid"]  # fmt: skip
    cgroups = remote.run(["cat", f"/proc/{pid}/cgroup"]).text().splitlines()
    cgroup = "; ".join(c for c in cgroups if c.startswith(("0::", "1:name=systemd:")))
    observe(f"job {job.job_id}: supervisor {pid} in cgroup {cgroup or '(none)'}")
    if units:
        assert f"trainctl-{job.job_id}.scope" in cgroup, "the job is not in a scope of its own"
        how = "snap restart amazon-ssm-agent" if snap else f"systemctl restart {units[0]}"
        observe(f"restarting the agent: {how}")
        # from a timer of its own: the command that asks is in the agent's cgroup
        restart = f"systemd-run --unit=trainctl-live-agent-restart --collect --on-active=2 {how}"
        assert remote.run(["sh", "-c", restart]).returncode == 0
        time.sleep(30)  # the agent goes down and comes back; SSM queues commands meanwhile
    final = live.tc.monitor(job.job_id, follow=True, sink=lambda _b: None)
    observe(f"after the restart: {final.status.value}, exit {final.exit_code}" if units
            else f"no restart: {final.status.value}, exit {final.exit_code}")  # fmt: skip
    assert final.status is ExecutionStatus.COMPLETED and final.exit_code == 0, final
    got = live.tc.download(record.name, "survived", tmp_path / "survived")
    assert got.read_text() == "yes"
    live.release(record, observe)
    if not units:
        pytest.skip(
            "the SSM agent here is a stand-in running commands on the test host, with "
            "no amazon-ssm-agent unit to restart; the rest of the check ran as live"
        )


@pytest.mark.live_provider("aws")
def test_aws_dlami_parameter_resolves_in_every_region(live, observe):
    """providers/aws/images.py ``DLAMI_PARAMETER``: the public SSM parameter trainctl
    reads for the default image names an available AMI in every region the account
    can launch in, for both architectures (else trainctl falls back to a name search
    of Amazon's images)."""
    from trainctl.providers.aws.images import DLAMI_PARAMETER
    from trainctl.providers.aws.session import client

    provider = live.provider("aws")
    session, home_region = provider.session()
    regions = sorted(r["RegionName"] for r in
                     client(session, "ec2", home_region).describe_regions()["Regions"])  # fmt: skip
    missing = []
    for region in regions:
        regional, _ = provider.session(region)
        ssm, ec2 = client(regional, "ssm", region), client(regional, "ec2", region)
        found = []
        for arch in ("x86_64", "arm64"):
            try:
                image_id = ssm.get_parameter(Name=DLAMI_PARAMETER.format(arch=arch))["Parameter"][
                    "Value"
                ]
                state = ec2.describe_images(ImageIds=[image_id])["Images"][0]["State"]
            except Exception as e:  # noqa: BLE001 - reported per region and arch
                missing.append(f"{region} {arch}: {type(e).__name__}: {e}")
                found.append(f"{arch} missing")
                continue
            found.append(f"{arch} {image_id} ({state})")
            if state != "available":
                missing.append(f"{region} {arch}: {image_id} is {state}")
        observe(f"{region}: {', '.join(found)}")
    assert regions, "no region enabled"
    assert not missing, "; ".join(missing)
