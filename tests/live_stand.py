"""Stand-ins for the live suite: the same checks, with every endpoint pointed at the
test fakes on 127.0.0.1 instead of the clouds (nothing is rented, nothing reaches the
internet).

``Stand`` runs, in this process, moto's server with the SSM agent and IMDS stand-ins
(AWS), the RunPod fake and the Lyceum fake, whose machines are users of a real sshd
on loopback; ``env`` is what a ``pytest tests/live --live-fake`` child needs to reach
them, and ``leftovers`` is what they still hold of the suite's (machines, guard keys,
requests that broke the providers' documents) after it ended: the proof that its
sweep left nothing behind.

Run as a script (``make live-fake``), it starts the stand, runs the suite against it
in a child process and says what was left: Ctrl-C there reaches the suite, which
sweeps, while the stand stays up to be asked.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
for _path in (TESTS, *(TESTS / "providers" / p for p in ("aws", "runpod", "lyceum"))):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import pytest  # noqa: E402

from fake_lyceum import DEFAULT_KEY, DEFAULT_ORG, FakeLyceum, SshdMachines  # noqa: E402
from fake_runpod import ENV_FILE, FakeRunPod  # noqa: E402

#: the AWS region of the stand's machines (no other test module uses it)
REGION = "eu-west-3"
#: short polls and a guard that looks often: stand-ins answer at once
CONFIG = f"""\
[providers.runpod]
poll_interval = 0.05
ready_timeout = 30
direct_ssh_grace = 2

[providers.lyceum]
poll_interval = 0.05
ready_timeout = 15

[providers.aws]
region = "{REGION}"

[guard]
interval = 0.2
grace = 2
"""


class Stand:
    """The stand-ins for ``providers``; ``sshd`` is a running ``tests/sshd.py``
    server, ``monkeypatch`` what sets this process's environment for moto."""

    def __init__(
        self, providers: list[str], sshd: Any, directory: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        self.providers = providers
        self.sshd = sshd
        self.directory = directory
        self.monkeypatch = monkeypatch
        self.runpod: FakeRunPod | None = None
        self.lyceum: FakeLyceum | None = None
        self.aws_url: str | None = None
        self.env: dict[str, str] = {}
        #: the (region, name) of the DLAMI parameters the stand published, taken back
        #: at the end: other tests of this process count on regions without one
        self._published: list[tuple[str, str]] = []

    def __enter__(self) -> Stand:
        home = self.directory / "stand-home"
        home.mkdir(parents=True, exist_ok=True)
        (home / "config.toml").write_text(CONFIG)
        self.env["TRAINCTL_HOME"] = str(home)
        if "runpod" in self.providers:
            self.runpod = FakeRunPod(
                machine_factory=lambda _pod: self.sshd.new_machine(authorize_client_key=False)
            ).start()
            self.env.update(
                RUNPOD_API_KEY=self.runpod.api_key,
                TRAINCTL_RUNPOD_API_URL=self.runpod.url,
                TRAINCTL_RUNPOD_GRAPHQL_URL=self.runpod.graphql_url,
                TRAINCTL_RUNPOD_POD_ENV_FILES="~/" + ENV_FILE,
            )
        if "lyceum" in self.providers:
            self.lyceum = FakeLyceum(machines=SshdMachines(self.sshd)).start()
            self.env.update(
                TRAINCTL_LYCEUM_API_URL=self.lyceum.url,
                LYCEUM_API_KEY=DEFAULT_KEY,
                LYCEUM_ORG=DEFAULT_ORG,
            )
        if "aws" in self.providers:
            self._start_aws()
        return self

    def _start_aws(self) -> None:
        import boto3

        from aws_support import publish_dlami, set_up
        from trainctl.providers.aws.images import DLAMI_PARAMETER

        self.aws_url = set_up(self.monkeypatch, REGION)
        regions = boto3.client("ec2", region_name=REGION).describe_regions()["Regions"]
        for region in (r["RegionName"] for r in regions):
            for arch in ("x86_64", "arm64"):
                name = DLAMI_PARAMETER.format(arch=arch)
                if not _parameters(region).get(name):
                    self._published.append((region, name))
                publish_dlami(region, arch)
        self.env.update(
            AWS_ENDPOINT_URL=self.aws_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
            AWS_CONFIG_FILE=os.devnull,
            AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        )

    def __exit__(self, *_exc: object) -> None:
        for fake in (self.runpod, self.lyceum):
            if fake is not None:
                fake.stop()
        for region, name in self._published:
            _parameters(region).pop(name, None)

    def suite(self, providers: list[str], *pytest_args: str, run_dir: Path) -> list[str]:
        """The argv of the live suite against this stand."""
        return [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
            "--confcutdir", str(TESTS / "live"), str(TESTS / "live"),
            "--live", " ".join(providers), "--live-fake", "--live-dir", str(run_dir),
            "-o", "timeout=120", "-o", "timeout_func_only=true", *pytest_args,
        ]  # fmt: skip

    def child_env(self) -> dict[str, str]:
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                          env.get("PYTHONPATH")]))  # fmt: skip
        return env

    def leftovers(self) -> list[str]:
        """What the stand-ins still hold of the suite's, or broke."""
        left: list[str] = []
        if self.runpod is not None:
            left += [f"runpod pod {p['id']} {p.get('name')} {p.get('status')}"
                     for p in self.runpod.live_pods()]  # fmt: skip
            left += [f"runpod document broken: {v}" for v in self.runpod.violations]
        if self.lyceum is not None:
            left += [f"lyceum VM {vm.vm_id} {vm.display_name} {vm.status}"
                     for vm in self.lyceum.live_vms()]  # fmt: skip
            left += [f"lyceum API key {k.key_name} still usable"
                     for k in self.lyceum.issued if k.usable()]  # fmt: skip
        if self.aws_url is not None:
            import boto3

            ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=self.aws_url)
            for reservation in ec2.describe_instances(
                Filters=[{"Name": "tag:trainctl-managed", "Values": ["true"]}]
            )["Reservations"]:
                left += [f"aws instance {i['InstanceId']} {i['State']['Name']}"
                         for i in reservation["Instances"]
                         if i["State"]["Name"] != "terminated"]  # fmt: skip
        return left


def _parameters(region: str) -> Any:
    """moto's SSM parameters of the region (the AWS tests' account)."""
    from moto.ssm.models import ssm_backends

    from aws_support import ACCOUNT

    return ssm_backends[ACCOUNT][region]._parameters


def main(argv: list[str]) -> int:
    """``live_stand.py [PROVIDER ...] [-- PYTEST ARGS]``: the live suite against the
    stand-ins, then what they still hold."""
    from sshd import SSHServer, require_root

    own, _, extra = " ".join(argv).partition("--")
    providers = own.split() or ["aws", "runpod", "lyceum"]
    try:
        require_root()
    except pytest.skip.Exception as e:
        print(f"live-fake: {e.msg}", file=sys.stderr)
        return 2
    directory = Path(tempfile.mkdtemp(prefix="trainctl-live-fake-"))
    sshd = SSHServer().start()
    try:
        with pytest.MonkeyPatch.context() as mp, Stand(providers, sshd, directory, mp) as stand:
            child = subprocess.Popen(
                stand.suite(providers, *extra.split(), run_dir=directory / "run"),
                cwd=REPO,
                env=stand.child_env(),
            )
            # Ctrl-C reaches the suite too (same terminal): it sweeps, the stand waits
            before = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                code = child.wait()
            finally:
                signal.signal(signal.SIGINT, before)
            left = stand.leftovers()
    finally:
        sshd.stop()
        # the homes served machines that are gone with the stand-ins; the report stays
        for spent in (directory / "stand-home", directory / "run" / "home"):
            shutil.rmtree(spent, ignore_errors=True)
    for line in left:
        print(f"live-fake: LEFT ON THE STAND-INS: {line}")
    if not left:
        print(f"live-fake: the stand-ins hold nothing of the suite's ({' '.join(providers)})")
    return code or (1 if left else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
