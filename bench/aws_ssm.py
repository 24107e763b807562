"""Figures of the aws provider against moto and the SSM agent stand-in of the tests.

Prints, for one machine: API calls per `list` (DescribeInstances per page), the SSM
commands and S3 requests each data-plane step makes, the log read size under SSM's
24,000-character stdout limit, and what an incremental sync sends. Counts, not
timings: moto answers in microseconds where AWS takes tens of milliseconds, and an
SSM command takes about a second on AWS.

    .venv/bin/python bench/aws_ssm.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
for _path in (TESTS, *(TESTS / "providers" / p for p in ("aws", "runpod", "lyceum"))):
    sys.path.insert(0, str(_path))

from aws_support import agent, set_up  # noqa: E402
from trainctl.providers.aws import AwsProvider  # noqa: E402
from trainctl.providers.aws import instance as aws_instance  # noqa: E402
from trainctl.providers.aws.session import client  # noqa: E402
from trainctl.providers.aws.ssm import READ_LIMIT, STDOUT_LIMIT  # noqa: E402
from trainctl.runtime import client as runtime_client  # noqa: E402
from trainctl.types import CreateResourceOptions, GpuSpec, TrainingJob  # noqa: E402

REGION = "us-east-2"


class Env:
    """monkeypatch's setenv/delenv for a script."""

    def setenv(self, key: str, value: str) -> None:
        os.environ[key] = value

    def delenv(self, key: str, raising: bool = True) -> None:
        os.environ.pop(key, None)


def count_calls(provider: AwsProvider) -> Counter:
    """Every API call (retries not counted twice) the provider's clients make."""
    calls: Counter = Counter()
    session = provider.session()[0]
    for service in ("ec2", "ssm", "s3", "sts", "iam"):
        c = client(session, service, REGION)
        c.meta.events.register(
            f"provide-client-params.{service}",
            lambda event_name, calls=calls, **_: calls.update([event_name.split(".", 1)[1]]),
        )
    return calls


def main() -> None:
    home = tempfile.mkdtemp(prefix="trainctl-bench-")
    os.environ["TRAINCTL_HOME"] = home
    set_up(Env(), REGION)
    runtime_client.POLL_SECONDS = 0.2
    provider = AwsProvider(progress=lambda _line: None, poll_interval=0.05)
    calls = count_calls(provider)

    rid = provider.create_resource(CreateResourceOptions(gpu=GpuSpec("T4", 1))).id
    print(f"create: {sum(calls.values())} API calls {dict(calls)}")
    for _ in range(40):
        provider.create_resource(CreateResourceOptions(gpu=GpuSpec("T4", 1)))

    for page_size in (aws_instance.PAGE_SIZE, 10):
        aws_instance.PAGE_SIZE = page_size
        calls.clear()
        listed = provider.list_resources()
        print(
            f"list of {len(listed)} machines, page size {page_size}: "
            f"{calls['ec2.DescribeInstances']} DescribeInstances, "
            f"{sum(calls.values())} calls in all"
        )

    work = Path(home) / "project"
    (work / "pkg").mkdir(parents=True)
    for i in range(200):
        (work / "pkg" / f"m{i}.py").write_text(f"X = {i}\n" * 50)
    (work / "train.py").write_text(
        "import sys\nfor i in range(4000):\n    print('step', i, 'loss', 1 / (i + 1), flush=True)\n"
    )
    steps = []

    def step(label: str, action) -> object:
        first, calls_before = len(agent().history), Counter(calls)
        result = action()
        delta = calls - calls_before
        ssm_cmds = len(agent().history) - first
        s3 = sum(v for k, v in delta.items() if k.startswith("s3."))
        steps.append((label, ssm_cmds, s3, sum(delta.values())))
        return result

    job = step(
        "train, first (install, sync 201 files)",
        lambda: provider.train(rid, TrainingJob(["python3", "train.py"], workdir=str(work))),
    )
    out = bytearray()
    step(
        "monitor --follow to the end",
        lambda: provider.monitor(rid, job.job_id, follow=True, sink=out.extend),
    )
    (work / "pkg" / "m7.py").write_text("X = 'changed'\n")
    step(
        "train again, one file changed",
        lambda: provider.train(rid, TrainingJob(["python3", "train.py"], workdir=str(work))),
    )
    step("jobs", lambda: provider.jobs(rid))
    dest = Path(home) / "dl"
    step("download pkg/ (200 files)", lambda: provider.download(rid, "pkg", dest))

    print(f"\nlog of {len(out)} bytes read in chunks of {READ_LIMIT} bytes")
    print(
        f"  (base64: {4 * -(-READ_LIMIT // 3) + 1} characters with the newline, "
        f"SSM limit {STDOUT_LIMIT}); read commands: "
        f"{sum(1 for i in agent().history if ' read ' in i.script)}"
    )
    print(f"\n{'step':<42} {'SSM cmds':>8} {'S3 reqs':>8} {'API calls':>9}")
    for label, ssm_cmds, s3, total in steps:
        print(f"{label:<42} {ssm_cmds:>8} {s3:>8} {total:>9}")
    sync = provider.connect(rid).put_tree(work, provider.runtime(rid).workdir)
    print(
        f"\nsync of an unchanged tree: {sync.files_sent} files, {sync.bytes_sent} bytes sent "
        f"(tree of {sync.total_bytes} bytes)"
    )
    for status in provider.list_resources():
        provider.terminate(status.id)
    agent().kill_all()


if __name__ == "__main__":
    main()
