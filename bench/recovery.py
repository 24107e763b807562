"""Seconds from a preemption to the job running again on a new machine, under
`run --spot --recover`, on each provider's fake (root: the machines are sshd users,
as in the tests; AWS is moto with the SSM agent and IMDS stand-ins).

The job is tests/jobs/resumable.py (8 checkpoints of a hash chain, a pause of 3 s
after each); the machine is reclaimed once epoch-2.pt is at home: RunPod's pod moves
to EXITED with nothing running on it, Lyceum's VM is terminated, AWS serves the spot
interruption notice to the guard (and reclaims the instance 30 s on, if trainctl has
not released it by then). Each phase ends at a line `run` prints:

  detect   the preemption -> "was preempted" (RunPod, Lyceum: the SSH connection
           drops and the provider says the machine stopped or went; AWS: the guard
           reads the notice at its next look and ends the job, the client sees the
           job end, and the checkpoints' last pass runs)
  rent     -> "rented ..." (the old machine released, a new one rented and guarded)
  restore  -> the checkpoints at home sent to the new machine
  sync     -> the code synced, the job started ("attempt 2: job ... running")

    sudo .venv/bin/python bench/recovery.py [PROVIDER ...] [--repeat N]

Guard interval 0.5 s, provider polls 0.01-0.1 s: what is measured is trainctl's own
work and its waits, not a real cloud's provisioning time (minutes on a real one).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from fake_env import Env, fresh_home  # noqa: E402 - also puts the tests' helpers on sys.path

from polling import wait_for  # noqa: E402
from recovery_support import JOB, project  # noqa: E402
from sshd import SSHServer  # noqa: E402
from trainctl import api  # noqa: E402
from trainctl.api import Trainctl  # noqa: E402
from trainctl.recovery import Recovery  # noqa: E402
from trainctl.remote.base import TransferEvent  # noqa: E402
from trainctl.types import CreateResourceOptions, GpuSpec, TrainingJob  # noqa: E402

PHASES = ("detect", "rent", "restore", "sync")


def runpod(server: SSHServer):
    from fake_runpod import ENV_FILE, FakeRunPod

    fake = FakeRunPod(machine_factory=lambda _id: server.new_machine(authorize_client_key=False))
    fake.start()
    os.environ.update(
        RUNPOD_API_KEY=fake.api_key,
        TRAINCTL_RUNPOD_API_URL=fake.url,
        TRAINCTL_RUNPOD_GRAPHQL_URL=fake.graphql_url,
        TRAINCTL_RUNPOD_POD_ENV_FILES="~/" + ENV_FILE,
    )
    options = CreateResourceOptions(gpu=GpuSpec("RTX4090", 1), spot=True)
    config = "[providers.runpod]\npoll_interval = 0.01\n"
    return fake, options, lambda record: fake.preempt(record.id), config


def lyceum(server: SSHServer):
    from fake_lyceum import DEFAULT_KEY, DEFAULT_ORG, FakeLyceum, SshdMachines

    fake = FakeLyceum(machines=SshdMachines(server))
    fake.start()
    os.environ.update(
        TRAINCTL_LYCEUM_API_URL=fake.url, LYCEUM_API_KEY=DEFAULT_KEY, LYCEUM_ORG=DEFAULT_ORG
    )
    options = CreateResourceOptions(gpu=GpuSpec("A100", 1), spot=True)
    config = "[providers.lyceum]\npoll_interval = 0.02\n"
    return fake, options, lambda record: fake.preempt(record.id), config


def aws(_server: SSHServer):
    import boto3

    from aws_support import imds, instance, set_up

    region = "sa-east-1"
    set_up(Env(), region)

    def reclaim(record) -> None:
        instance_id = record.id.rsplit("/", 1)[-1]
        imds().notice(instance_id)
        deadline = time.time() + 30
        while time.time() < deadline and instance(region, instance_id).state == "running":
            time.sleep(0.1)
        if instance(region, instance_id).state == "running":
            boto3.client("ec2", region_name=region).terminate_instances(InstanceIds=[instance_id])

    options = CreateResourceOptions(gpu=GpuSpec("T4", 1), spot=True)
    return None, options, reclaim, ""


def once(provider: str, server: SSHServer) -> dict[str, float]:
    home = fresh_home()
    fake, options, reclaim, config = {"runpod": runpod, "lyceum": lyceum, "aws": aws}[provider](
        server
    )
    (home / "trainctl").mkdir()
    (home / "trainctl" / "config.toml").write_text(config + "[guard]\ninterval = 0.5\n")
    out = Path(tempfile.mkdtemp(prefix="trainctl-bench-out-"))
    marks: dict[str, float] = {}
    created: list[object] = []

    def progress(message: str) -> None:
        now = time.monotonic()
        if "was preempted" in message or "was lost" in message:
            marks.setdefault("detect", now)
        elif message.startswith("rented "):
            marks.setdefault("rent", now)
        elif isinstance(message, TransferEvent) and not message.finished:
            return
        elif message.startswith("sync:") and "rent" in marks and "restore" not in marks:
            marks["restore"] = now
        elif message.startswith("attempt 2: job"):
            marks["sync"] = now

    def on_created(record) -> None:
        created.append(record)
        if len(created) == 1:

            def later() -> None:
                wait_for(lambda: (out / "checkpoints" / "epoch-2.pt").exists(), timeout=120)
                marks["preempted"] = time.monotonic()
                reclaim(record)

            threading.Thread(target=later, daemon=True).start()

    job = TrainingJob(
        ["python3", JOB.name, "--epochs", "4", "--pause", "3"],
        workdir=str(project(Path(tempfile.mkdtemp(prefix="trainctl-bench-")))),
    )
    tc = Trainctl()
    if provider == "aws":
        from trainctl.providers.aws import AwsProvider

        tc._providers["aws"] = AwsProvider(progress=lambda _line: None, poll_interval=0.1)
    result = api.run(
        tc, provider, options, job, outputs=[], output_dir=out, checkpoint_sync=0.3,
        recover=Recovery(2), on_created=on_created, progress=progress,
    )  # fmt: skip
    if fake is not None:
        fake.stop()
    if result.exit_code != 0 or len(result.attempts) != 2:
        raise SystemExit(f"{provider}: the run did not recover: {result.to_dict()}")
    begin, took = marks["preempted"], {}
    for phase in PHASES:
        took[phase] = marks[phase] - begin
        begin = marks[phase]
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("providers", nargs="*", default=["runpod", "lyceum", "aws"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = SSHServer().start()
    try:
        print(f"{'provider':8} " + " ".join(f"{p:>8}" for p in (*PHASES, "total")) + "  (median s)")
        for provider in args.providers:
            runs = [once(provider, server) for _ in range(args.repeat)]
            medians = [statistics.median(r[p] for r in runs) for p in PHASES]
            total = statistics.median(sum(r.values()) for r in runs)
            print(f"{provider:8} " + " ".join(f"{m:8.2f}" for m in (*medians, total)))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
