"""A stand-in for the SSM agent, for tests against moto's server.

moto records SSM commands but runs nothing. With this hook installed (moto's server
runs in the test process), each ``AWS-RunShellScript`` sent to an instance is run for
real, with ``sh`` as the agent does, in a sandbox directory that stands for that
instance (its HOME); GetCommandInvocation then reports the true stdout, stderr and
exit code, cut as the agent and SSM cut them, and with the line the agent adds to the
stderr of a failed command (see ``agent_output``). Like the real agent,
it waits until the command's output streams close, so a background process that
keeps them open hangs the invocation. The sandbox's ``aws`` commands reach the same
moto server, and, given an ``imds.IMDS``, the instance's metadata through
``AWS_EC2_METADATA_SERVICE_ENDPOINT``. DescribeInstanceInformation, which moto lacks,
reports each running instance Online unless the test says otherwise.

What is patched, and nothing else:
- ``SimpleSystemManagerBackend.send_command``: refuses instances whose agent is not
  online (InvalidInstanceId, as SSM does); after moto records the command, its
  invocations are marked InProgress and run in a thread.
- with ``hold``, the commands it picks wait (InProgress) until ``released`` is set,
  so that a test can act while the client waits for one.
- ``SimpleSystemManagerBackend.get_command_invocation``: with ``lag``, the first
  call for each command fails with InvocationDoesNotExist, as SSM sometimes does.
- ``SimpleSystemManagerResponse.describe_instance_information``: added.
- ``InstanceBackend.stop_instances`` and ``terminate_instances`` (EC2): once moto has
  stopped or terminated the instances, every process in their sandboxes is killed
  (SIGKILL, before the call returns: a stopped machine runs nothing, and the command
  that made the call is one of them), and the call is recorded in ``halts`` with the
  access key that signed it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from flask import has_request_context, request
from moto.core.exceptions import JsonRESTError
from moto.core.responses import ActionResult
from moto.ec2.models import ec2_backends
from moto.ec2.models.instances import InstanceBackend
from moto.ssm.models import SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse

from imds import IMDS

#: amazon-ssm-agent, agent/framework/processor/executer/iohandler: MaxStdoutLength,
#: MaxStderrLength and OutputTruncatedSuffix of DefaultOutputConfig
STDOUT_LIMIT = 24_000
STDERR_LIMIT = 8_000
TRUNCATED = b"--output truncated--"


def string_prefix(data: bytes, limit: int) -> bytes:
    """The agent's ``pluginutil.StringPrefix`` (Go strings are bytes): anything of
    ``limit`` bytes or more is cut to ``limit`` bytes, the last 20 of them the suffix."""
    if len(data) < limit:
        return data
    return data[: limit - len(TRUNCATED)] + TRUNCATED


def agent_output(stdout: bytes, stderr: bytes, error: str | None) -> tuple[str, str]:
    """What GetCommandInvocation reports. ``error`` is Go's exec error of a failed
    command (``exit status 3``): plugins/runscript marks the output failed with
    ``failed to run commands: <error>``, which ``AppendError`` adds to stderr on a line
    of its own; runpluginutil then applies ``StringPrefix`` with MaxStdoutLength to
    both streams, and the service keeps the first 8,000 characters of stderr."""
    if error is not None:
        message = f"failed to run commands: {error}".encode()
        stderr = stderr + b"\n" + message if stderr else message
    out = string_prefix(stdout, STDOUT_LIMIT)
    err = string_prefix(stderr, STDOUT_LIMIT)[:STDERR_LIMIT]
    return out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


@dataclass
class Invocation:
    instance_id: str
    script: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    reported_stderr: str  # what GetCommandInvocation gives


@dataclass(frozen=True)
class Halt:
    """A StopInstances or TerminateInstances that moto carried out."""

    action: str  # "stop" or "terminate"
    region: str
    instance_ids: list[str]
    #: the access key id in the request's SigV4 Authorization header (None: the call
    #: did not come through moto's server, or was not signed so)
    access_key: str | None


class SSMAgent:
    def __init__(self, root: Path, env: dict[str, str], imds: IMDS | None = None) -> None:
        self.root = root
        self.env = env
        self.imds = imds
        self.offline: set[str] = set()  # instances whose agent never comes online
        self.all_offline = False  # no agent comes online
        self.lag = False
        #: commands whose script it matches wait for ``released`` before running
        self.hold: Callable[[str], bool] | None = None
        self.released = threading.Event()
        self.holding = threading.Event()  # set once a command is held
        self.history: list[Invocation] = []
        self.halts: list[Halt] = []
        self._seen: set[str] = set()
        self._saved: list[tuple[type, str, object]] = []

    def home(self, instance_id: str) -> Path:
        """The sandbox standing for ``instance_id``: its root user's home."""
        path = self.root / instance_id / "home"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def machine_env(self, instance_id: str) -> dict[str, str]:
        """The environment of commands on ``instance_id``."""
        env = {**self.env, "HOME": str(self.home(instance_id))}
        if self.imds is not None:
            env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = self.imds.endpoint(instance_id)
        return env

    def online(self, account: str, region: str, instance_id: str) -> bool:
        if self.all_offline or instance_id in self.offline:
            return False
        try:
            instance = ec2_backends[account][region].get_instance(instance_id)
        except Exception:
            return False
        return instance.state == "running"

    # --- the hook ------------------------------------------------------------------

    def install(self) -> SSMAgent:
        agent = self
        send, get = (
            SimpleSystemManagerBackend.send_command,
            SimpleSystemManagerBackend.get_command_invocation,
        )
        self._saved = [
            (SimpleSystemManagerBackend, "send_command", send),
            (SimpleSystemManagerBackend, "get_command_invocation", get),
            (InstanceBackend, "stop_instances", InstanceBackend.stop_instances),
            (InstanceBackend, "terminate_instances", InstanceBackend.terminate_instances),
        ]

        def send_command(backend, **kwargs):
            named = list(kwargs.get("instance_ids") or [])
            for instance_id in named:
                if not agent.online(backend.account_id, backend.region_name, instance_id):
                    raise JsonRESTError(
                        "InvalidInstanceId", f"Instances [[{instance_id}]] not in a valid state"
                    )
            command = send(backend, **kwargs)
            if command.document_name == "AWS-RunShellScript":
                # moto also adds every instance of the region when no Targets are given:
                # only the instances named run the command
                for invocation in [i for i in command.invocations if i["InstanceId"] in named]:
                    invocation.update(
                        Status="InProgress",
                        StatusDetails="InProgress",
                        ResponseCode=-1,
                        StandardOutputContent="",
                        StandardErrorContent="",
                    )
                    threading.Thread(
                        target=agent._execute, args=(command, invocation), daemon=True
                    ).start()
            return command

        def get_command_invocation(backend, command_id, instance_id, plugin_name):
            if agent.lag and command_id not in agent._seen:
                agent._seen.add(command_id)
                raise JsonRESTError("InvocationDoesNotExist", "")
            return get(backend, command_id, instance_id, plugin_name)

        def describe_instance_information(response):
            filters = response._get_param("Filters") or []
            wanted = [v for f in filters if f.get("Key") == "InstanceIds" for v in f["Values"]]
            backend = ec2_backends[response.current_account][response.region]
            found = []
            for instance_id in wanted:
                try:
                    instance = backend.get_instance(instance_id)
                except Exception:
                    continue
                if instance.state != "running":
                    continue
                ping = (
                    "Online"
                    if agent.online(response.current_account, response.region, instance_id)
                    else "ConnectionLost"
                )
                found.append(
                    {
                        "InstanceId": instance_id,
                        "PingStatus": ping,
                        "LastPingDateTime": datetime.now(timezone.utc),
                        "AgentVersion": "3.3.0.0",
                        "PlatformType": "Linux",
                        "ResourceType": "EC2Instance",
                    }
                )
            return ActionResult({"InstanceInformationList": found})

        def halting(action: str, original):
            def halt(backend, instance_ids):
                done = original(backend, instance_ids)
                ids = [instance.id for instance, _previous in done]
                agent.halts.append(Halt(action, backend.region_name, ids, _access_key()))
                for instance_id in ids:
                    agent.kill(instance_id)
                return done

            return halt

        InstanceBackend.stop_instances = halting("stop", InstanceBackend.stop_instances)
        InstanceBackend.terminate_instances = halting(
            "terminate", InstanceBackend.terminate_instances
        )
        SimpleSystemManagerBackend.send_command = send_command
        SimpleSystemManagerBackend.get_command_invocation = get_command_invocation
        SimpleSystemManagerResponse.describe_instance_information = describe_instance_information
        return self

    def uninstall(self) -> None:
        for cls, name, original in self._saved:
            setattr(cls, name, original)
        del SimpleSystemManagerResponse.describe_instance_information
        self.kill_all()

    # --- running a command ---------------------------------------------------------

    def _execute(self, command, invocation: dict) -> None:
        instance_id = invocation["InstanceId"]
        workdir = self.root / instance_id / "orchestration" / command.command_id
        workdir.mkdir(parents=True)
        script = "\n".join(command.parameters.get("commands", []))
        (workdir / "_script.sh").write_text(script)
        if self.hold is not None and self.hold(script):
            self.holding.set()
            self.released.wait(60)
        timeout = float(command.parameters.get("executionTimeout", ["3600"])[0])
        started = time.monotonic()
        proc = subprocess.Popen(
            ["sh", str(workdir / "_script.sh")],
            cwd=workdir,
            env=self.machine_env(instance_id),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
            code = proc.returncode
            status = "Success" if code == 0 else "Failed"
            error = None if code == 0 else _exec_error(code)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=5)
            code, status, error = -1, "TimedOut", None
        stdout, stderr = agent_output(out, err, error)
        self.history.append(  # what the command wrote, uncut
            Invocation(
                instance_id,
                script,
                code,
                out.decode("utf-8", "replace"),
                err.decode("utf-8", "replace"),
                time.monotonic() - started,
                stderr,
            )
        )
        invocation.update(
            Status=status,
            StatusDetails=status,
            ResponseCode=code,
            StandardOutputContent=stdout,
            StandardErrorContent=stderr,
        )

    def kill_all(self) -> None:
        """Kill every process still running in a sandbox (detached jobs included)."""
        marker = f"HOME={self.root}/".encode()
        self._kill(lambda v: v.startswith(marker))

    def kill(self, instance_id: str) -> None:
        """Kill every process running in ``instance_id``'s sandbox, and only those."""
        marker = f"HOME={self.root / instance_id / 'home'}".encode()
        self._kill(lambda v: v == marker)

    @staticmethod
    def _kill(matches: Callable[[bytes], bool]) -> None:
        """SIGKILL each process with an environment entry that ``matches``; again while
        a pass finds any, for the children they started meanwhile."""
        for _ in range(5):
            found = False
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    environ = Path(f"/proc/{pid}/environ").read_bytes()
                except OSError:
                    continue
                if any(matches(v) for v in environ.split(b"\0")):
                    found = True
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
            if not found:
                return


def _access_key() -> str | None:
    """The access key id that signed the request moto's server is answering: moto's
    server is a Flask app, and the backend runs inside its request context."""
    if not has_request_context():
        return None
    found = re.search(r"Credential=([^/,\s]+)/", request.headers.get("Authorization", ""))
    return found.group(1) if found else None


def _exec_error(returncode: int) -> str:
    """Go's ``exec.ExitError`` text for a child's ``returncode`` (negative: a signal)."""
    if returncode < 0:
        return f"signal: {signal.strsignal(-returncode).lower()}"
    return f"exit status {returncode}"
