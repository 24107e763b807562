"""The machine's guard: how soon it releases a machine after its deadline, and what it
costs an idle machine.

1. Deadline to release, per provider fake: a machine is created through the API with
   ``--max-duration`` and no trainctl process looks after it; the figure is the time
   from its deadline to the moment the fake sees the release (the RunPod pod stopped,
   the Lyceum VM deleted, the EC2 instance stopped in moto), watched every 20 ms.
   The guard's own settings are the defaults (it looks every 5 s, and sleeps until
   the deadline when that comes sooner). Target: under 10 s.
2. CPU of an idle guard: one guard with an hour's idle stop and the default interval,
   on this machine; its user and system CPU time over the window, as a share of one
   core. Target: under 0.1 %.
3. The same with an object store (``--store``, moto's S3 server on loopback) and a
   running job whose 200 checkpoint files are already uploaded and do not change:
   what each look costs when there is nothing new to send.

Needs root (the SSH test server makes a Unix user per machine)::

    .venv/bin/python bench/guard.py [--cpu-seconds 60] [runpod lyceum aws]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fake_env import Env, fresh_home  # noqa: E402 - also puts the tests' helpers on sys.path

from trainctl.api import Trainctl  # noqa: E402
from trainctl.guards import GuardRequest  # noqa: E402
from trainctl.remote.local import LocalRemote  # noqa: E402
from trainctl.runtime.client import JobRuntime  # noqa: E402
from trainctl.types import CreateResourceOptions, GpuSpec  # noqa: E402

DURATION = "6s"


def watch(released: Callable[[], bool], deadline: float, limit: float = 60.0) -> float:
    """Seconds from ``deadline`` to the first moment ``released()`` holds."""
    while not released():
        if time.time() > deadline + limit:
            raise SystemExit("the machine was not released within a minute of its deadline")
        time.sleep(0.02)
    return time.time() - deadline


def create(provider: str, provider_obj: Any, options: CreateResourceOptions) -> Any:
    options.guards = GuardRequest.parse(max_duration=DURATION)
    tc = Trainctl()
    tc._providers[provider] = provider_obj
    return tc.create(provider, options)


def bench_runpod(sshd: Any) -> float:
    from fake_runpod import ENV_FILE, FakeRunPod
    from trainctl.providers.runpod import RunPodProvider

    fresh_home()
    fake = FakeRunPod(machine_factory=lambda _id: sshd.new_machine(authorize_client_key=False))
    with fake:
        os.environ.update(
            RUNPOD_API_KEY=fake.api_key,
            TRAINCTL_RUNPOD_API_URL=fake.url,
            TRAINCTL_RUNPOD_GRAPHQL_URL=fake.graphql_url,
            TRAINCTL_RUNPOD_POD_ENV_FILES="~/" + ENV_FILE,
        )
        provider = RunPodProvider(ready_timeout=30, poll_interval=0.01)
        record = create("runpod", provider, CreateResourceOptions(gpu=GpuSpec("RTX4090"), name="b"))
        pod = fake.pods[record.id]
        return watch(lambda: pod.data["status"] == "EXITED", record.guards["deadline"])


def bench_lyceum(sshd: Any) -> float:
    from fake_lyceum import DEFAULT_KEY, DEFAULT_ORG, FakeLyceum, SshdMachines
    from trainctl.providers.lyceum import LyceumProvider

    fresh_home()
    with FakeLyceum(machines=SshdMachines(sshd)) as fake:
        os.environ.update(
            TRAINCTL_LYCEUM_API_URL=fake.url, LYCEUM_API_KEY=DEFAULT_KEY, LYCEUM_ORG=DEFAULT_ORG
        )
        provider = LyceumProvider(poll_interval=0.02, ready_timeout=10.0, backoff=0.01)
        record = create("lyceum", provider, CreateResourceOptions(gpu=GpuSpec("A100"), name="b"))
        return watch(lambda: not fake.live_vms(), record.guards["deadline"])


def bench_aws() -> float:
    import aws_support
    from trainctl.providers.aws import AwsProvider

    region = "us-east-2"
    fresh_home()
    aws_support.set_up(Env(), region)
    provider = AwsProvider(progress=lambda _line: None, poll_interval=0.05)
    record = create("aws", provider, CreateResourceOptions(gpu=GpuSpec("T4"), name="b"))
    instance_id = record.id.rsplit("/", 1)[-1]
    try:
        return watch(
            lambda: aws_support.instance(region, instance_id).state == "stopped",
            record.guards["deadline"],
        )
    finally:
        aws_support.agent().kill_all()


def idle_cpu(seconds: float, with_store: bool = False) -> float:
    """Percent of one core an idle guard used over ``seconds`` (with a store: while a
    job with 200 checkpoints that were uploaded already runs)."""
    root = Path(tempfile.mkdtemp(prefix="trainctl-bench-guard-"))
    rt = JobRuntime(LocalRemote(root), "bench")
    never = {"kind": "http", "method": "DELETE", "url": "http://127.0.0.1:9/", "body": None}
    policy: dict[str, Any] = {
        "idle_stop": 3600.0,
        "launched_at": time.time(),
        "release": {"action": "terminate", "request": never},
    }
    keys = None
    if with_store:
        from objstore_support import KEYS, endpoint, new_bucket

        bucket = new_bucket()
        policy["store"] = {"url": f"s3://{bucket}/b", "bucket": bucket, "prefix": "b"}
        policy["store"].update(endpoint=endpoint(), region="us-east-1", credentials="secret")
        keys = KEYS
        made = "import os\nd = os.environ['TRAINCTL_CHECKPOINT_DIR']\n"
        made += (
            "for i in range(200): open(os.path.join(d, 'c%d.pt' % i), 'wb').write(b'x' * 4096)\n"
        )
        made += "import time; time.sleep(100000)\n"
        job = rt.start(["python3", "-c", made])
    rt.guard_set(policy, secret="unused", store_secret=keys)
    pid = int((root / "guard" / "pid").read_text())
    if with_store:
        uploaded = root / "guard" / "uploaded.json"
        deadline = time.time() + 60
        while time.time() < deadline:
            done = json.loads(uploaded.read_text()) if uploaded.exists() else {}
            if len(done.get(job.job_id, {}).get("files", {})) == 200:
                break
            time.sleep(0.2)
        else:
            raise SystemExit("the guard did not upload the job's 200 checkpoints in a minute")
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    time.sleep(2)  # past its start-up
    before, began = cpu(), time.monotonic()
    time.sleep(seconds)
    used, elapsed = cpu() - before, time.monotonic() - began
    if with_store:
        rt.cancel(job.job_id, grace=1.0)
    rt.guard_stop()
    return 100 * used / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("providers", nargs="*", default=["runpod", "lyceum", "aws"])
    parser.add_argument("--cpu-seconds", type=float, default=60.0)
    args = parser.parse_args()
    sshd = None
    if {"runpod", "lyceum"} & set(args.providers):
        from sshd import SSHServer

        sshd = SSHServer().start()
    lines = [f"deadline ({DURATION} after launch) to release, default guard settings:"]
    try:
        for name in args.providers:
            took = bench_aws() if name == "aws" else globals()[f"bench_{name}"](sshd)
            lines.append(f"  {name:<8} {took:6.2f} s   (target < 10 s)")
    finally:
        if sshd is not None:
            sshd.stop()
    share = idle_cpu(args.cpu_seconds)
    lines.append(
        f"idle guard CPU over {args.cpu_seconds:g} s: {share:.4f} % of one core (target < 0.1 %)"
    )
    share = idle_cpu(args.cpu_seconds, with_store=True)
    lines.append(
        f"  with a store and a running job of 200 uploaded checkpoints: {share:.4f} % of one core"
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
