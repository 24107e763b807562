"""Provider calls and remote commands of one `run` with two outputs, per provider.

One ``api.run`` (create, train with a synced work directory, follow the log,
download ``-o a -o b``, terminate) on each provider's test fake: RunPod and Lyceum
on their fake HTTP APIs with pods / VMs backed by the test SSH server, AWS on moto
with the SSM agent stand-in. Counted: the provider's HTTP requests by method and
path (boto3 API calls by operation on AWS), split into those the create makes and
those after it, and the commands the job runtime sends to the machine (runtime
sub-commands, its install, syncs and copies). Counts, not timings; on AWS the
``GetCommandInvocation`` count is polls of running SSM commands and varies with
the machine's load (56 to 115 in runs of the same code).

Needs root (the SSH test server makes a Unix user per machine)::

    .venv/bin/python bench/calls_per_run.py [runpod lyceum aws]

The figures before and after one connection serves a whole operation are in
``bench/calls_per_run.before.txt`` and ``bench/calls_per_run.after.txt``.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fake_env import Env, fresh_home  # noqa: E402 - also puts the tests' helpers on sys.path

from trainctl import api  # noqa: E402
from trainctl.remote.ssh import SSHRemote  # noqa: E402
from trainctl.runtime import client as runtime_client  # noqa: E402
from trainctl.store import Store  # noqa: E402
from trainctl.types import CreateResourceOptions, GpuSpec, TrainingJob  # noqa: E402

TRAIN = (
    "import os\n"
    "os.makedirs('a', exist_ok=True)\n"
    "open('a/weights', 'w').write('1')\n"
    "open('b', 'w').write('2')\n"
    "print('done', flush=True)\n"
)
#: a path segment that is an id (it has a digit and 8 characters or more)
_ID = re.compile(r"/(?=[0-9a-z-]*[0-9])[0-9a-z-]{8,}(?=/|$)")


class Tally:
    """Counts per label, split at the end of the create."""

    def __init__(self) -> None:
        self.phase = "create"
        self.counts: dict[str, Counter[str]] = {"create": Counter(), "after": Counter()}

    def add(self, label: str) -> None:
        self.counts[self.phase][label] += 1


def _label(argv: list[str]) -> str:
    """What a command sent to the machine is: a runtime sub-command, its install, ..."""
    if runtime_client._INSTALL in argv:
        return "runtime install"
    if "-c" in argv:
        return f"command {Path(argv[0]).name} -c (script)"
    for i, arg in enumerate(argv):
        if arg.endswith("/jobrunner.py") and i + 3 < len(argv):
            sub = argv[i + 3]
            extra = argv[i + 4] if sub == "status" and len(argv) > i + 4 else ""
            return f"runtime {sub}" + (f" {extra}" if extra.startswith("--") else "")
    return f"command {Path(argv[0]).name}"


@contextmanager
def counting_remotes(tally: Tally, classes: list[type]) -> Iterator[None]:
    """Count what each Remote class is asked to do (its methods wrapped in place)."""
    saved: list[tuple[type, str, Any]] = []

    def wrap(cls: type, name: str, label: Callable[..., str]) -> None:
        original = cls.__dict__[name]
        saved.append((cls, name, original))

        def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
            tally.add(label(*args))
            return original(self, *args, **kwargs)

        setattr(cls, name, counted)

    try:
        for cls in classes:
            wrap(cls, "run", lambda argv, *_: _label(list(argv)))
            wrap(cls, "put_tree", lambda *_: "sync (put_tree)")
            wrap(cls, "get", lambda *_: "copy back (get)")
            if "stream" in cls.__dict__:
                wrap(cls, "stream", lambda argv, *_: _label(list(argv)) + " (stream)")
        yield
    finally:
        for cls, name, original in saved:
            setattr(cls, name, original)


def one_run(
    provider_name: str,
    provider: Any,
    options: CreateResourceOptions,
    tally: Tally,
    at_created: Callable[[], None] = lambda: None,
) -> Any:
    home = Path(os.environ["TRAINCTL_HOME"])
    work = home / "project"
    work.mkdir(parents=True, exist_ok=True)
    (work / "train.py").write_text(TRAIN)
    tc = api.Trainctl(Store(home / "state.db"))
    tc._providers[provider_name] = provider

    def created(_record: Any) -> None:
        tally.phase = "after"
        at_created()

    result = api.run(
        tc,
        provider_name,
        options,
        TrainingJob(["python3", "train.py"], workdir=str(work)),
        outputs=["a", "b"],
        output_dir=home / "out",
        on_created=created,
    )
    assert result.exit_code == 0, result.to_dict()
    assert sorted(Path(p).name for p in result.downloads) == ["a", "b"], result.downloads
    return result


def bench_runpod(sshd: Any) -> Tally:
    from fake_runpod import FakeRunPod
    from trainctl.providers.runpod import RunPodProvider

    tally = Tally()
    fresh_home()
    fake = FakeRunPod(machine_factory=lambda _id: sshd.new_machine(authorize_client_key=False))
    with fake:
        os.environ["RUNPOD_API_KEY"] = fake.api_key
        os.environ["TRAINCTL_RUNPOD_API_URL"] = fake.url
        os.environ["TRAINCTL_RUNPOD_GRAPHQL_URL"] = fake.graphql_url
        provider = RunPodProvider(ready_timeout=30, poll_interval=0.01)
        options = CreateResourceOptions(gpu=GpuSpec.parse("RTX4090"), name="bench")
        fake.log.clear()
        cut: list[int] = []
        with counting_remotes(tally, [SSHRemote]):
            one_run("runpod", provider, options, tally, lambda: cut.append(len(fake.log)))
        for i, (method, path, _status) in enumerate(fake.log):
            phase = "create" if i < cut[0] else "after"
            tally.counts[phase][f"{method} {_ID.sub('/{id}', path)}"] += 1
    assert fake.violations == [], fake.violations
    return tally


def bench_lyceum(sshd: Any) -> Tally:
    from fake_lyceum import DEFAULT_KEY, DEFAULT_ORG, FakeLyceum, SshdMachines
    from trainctl.providers.lyceum import LyceumProvider

    tally = Tally()
    fresh_home()
    with FakeLyceum(machines=SshdMachines(sshd)) as fake:
        os.environ["TRAINCTL_LYCEUM_API_URL"] = fake.url
        os.environ["LYCEUM_API_KEY"] = DEFAULT_KEY
        os.environ["LYCEUM_ORG"] = DEFAULT_ORG
        provider = LyceumProvider(poll_interval=0.02, ready_timeout=10.0, backoff=0.01)
        options = CreateResourceOptions(gpu=GpuSpec("A100", 1), name="bench")
        cut: list[int] = []
        with counting_remotes(tally, [SSHRemote]):
            one_run("lyceum", provider, options, tally, lambda: cut.append(len(fake.requests)))
        for i, rec in enumerate(fake.requests):
            phase = "create" if i < cut[0] else "after"
            tally.counts[phase][f"{rec.method} {_ID.sub('/{id}', rec.path)}"] += 1
    return tally


def bench_aws() -> Tally:
    import aws_support
    from trainctl.providers.aws import AwsProvider
    from trainctl.providers.aws.session import client
    from trainctl.providers.aws.ssm import SSMRemote

    region = "us-east-2"
    tally = Tally()
    fresh_home()
    aws_support.set_up(Env(), region)
    provider = AwsProvider(progress=lambda _line: None, poll_interval=0.05)
    session = provider.session(region)[0]
    for service in ("ec2", "ssm", "s3", "sts", "iam"):
        client(session, service, region).meta.events.register(
            f"provide-client-params.{service}",
            lambda event_name, **_: tally.add("api " + event_name.split(".", 1)[1]),
        )
    options = CreateResourceOptions(gpu=GpuSpec("T4", 1), name="bench")
    with counting_remotes(tally, [SSMRemote]):
        one_run("aws", provider, options, tally)
    aws_support.agent().kill_all()
    return tally


def table(name: str, tally: Tally) -> list[str]:
    labels = sorted(set(tally.counts["create"]) | set(tally.counts["after"]))
    rows = [f"{name:<8} {'call / command':<52} {'create':>6} {'after':>6}"]
    for label in labels:
        rows.append(
            f"{'':<8} {label:<52} {tally.counts['create'][label] or '':>6} "
            f"{tally.counts['after'][label] or '':>6}"
        )
    return rows


def main() -> None:
    chosen = sys.argv[1:] or ["runpod", "lyceum", "aws"]
    runtime_client.POLL_SECONDS = 0.2
    sshd = None
    if {"runpod", "lyceum"} & set(chosen):
        from sshd import SSHServer

        sshd = SSHServer().start()
    lines = []
    try:
        for name in chosen:
            tally = bench_aws() if name == "aws" else globals()[f"bench_{name}"](sshd)
            lines += [*table(name, tally), ""]
    finally:
        if sshd is not None:
            sshd.stop()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
