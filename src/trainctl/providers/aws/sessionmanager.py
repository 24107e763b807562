"""Session Manager sessions to an instance: the AWS CLI's ``aws ssm start-session``
with its session-manager-plugin, for `trainctl ssh` and `trainctl forward` (one
``AWS-StartPortForwardingSession`` per port).

What the design rests on:

- A session runs as ``ssm-user`` (which the agent gives passwordless sudo), while
  the job runtime lives in root's home: the session command runs under ``sudo -H``.
- ``--parameters`` goes as JSON (``{"command": [...]}``): the CLI's shorthand syntax
  would split a command at its commas.
- The plugin does not pass the command's exit code through (it exits 0:
  aws/session-manager-plugin issue #59), so the session script prints it after a
  marker (``remote.sessions``).
- The CLI gets trainctl's own credentials (those of its boto3 session, a profile's
  included) through its environment, never on its command line, and the endpoint
  the environment sets for SSM (moto in tests) as ``--endpoint-url``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from ...errors import CredentialsError, OperationFailed, RemoteError
from ...remote.ports import LOCALHOST, Forwarding, PortForward
from .session import CREDENTIALS_HINT, ssm_endpoint

PLUGIN_INSTALL = (
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/"
    "session-manager-working-with-install-plugin.html"
)
CLI_INSTALL = "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html"

INTERACTIVE = "AWS-StartInteractiveCommand"
PORT_FORWARDING = "AWS-StartPortForwardingSession"


def require_cli() -> str:
    """The AWS CLI's path, once both it and the Session Manager plugin are installed."""
    aws = shutil.which("aws")
    if not aws:
        raise OperationFailed(
            "the AWS CLI is not installed: sessions on AWS machines go through "
            "`aws ssm start-session`",
            hint=f"install the AWS CLI ({CLI_INSTALL}) and its Session Manager plugin "
            f"({PLUGIN_INSTALL})",
        )
    if not shutil.which("session-manager-plugin"):
        raise OperationFailed(
            "the Session Manager plugin for the AWS CLI (session-manager-plugin) is not installed",
            hint=f"install it as {PLUGIN_INSTALL} says",
        )
    return aws


def start_session(
    instance_id: str,
    region: str,
    document: str,
    parameters: dict[str, Sequence[str]],
) -> list[str]:
    """``aws ssm start-session`` for ``document`` with ``parameters`` (each a list of
    strings, as Session Manager documents take them)."""
    argv = [require_cli(), "ssm", "start-session", "--target", instance_id, "--region", region]
    endpoint = ssm_endpoint()
    if endpoint:
        argv += ["--endpoint-url", endpoint]
    params = {name: list(values) for name, values in parameters.items()}
    return [*argv, "--document-name", document, "--parameters", json.dumps(params)]


def cli_environment(session: Any) -> dict[str, str]:
    """This environment with the boto3 session's credentials in the variables the
    AWS CLI reads first."""
    credentials = session.get_credentials()
    if credentials is None:
        raise CredentialsError("no usable AWS credentials found", hint=CREDENTIALS_HINT)
    frozen = credentials.get_frozen_credentials()
    env = dict(os.environ)
    env["AWS_ACCESS_KEY_ID"] = frozen.access_key
    env["AWS_SECRET_ACCESS_KEY"] = frozen.secret_key
    if frozen.token:
        env["AWS_SESSION_TOKEN"] = frozen.token
    else:
        env.pop("AWS_SESSION_TOKEN", None)
    return env


#: seconds a port forwarding session may take to listen here
LISTEN_TIMEOUT = 60.0


class PortSessions(Forwarding):
    """One ``AWS-StartPortForwardingSession`` session per port; up once the plugin
    listens on each local port (seen as the port being taken here)."""

    def __init__(
        self,
        instance_id: str,
        region: str,
        env: dict[str, str],
        ports: Sequence[PortForward],
        description: str,
    ) -> None:
        self.description = description
        self._procs: list[subprocess.Popen[bytes]] = []
        try:
            for port in ports:
                argv = start_session(
                    instance_id,
                    region,
                    PORT_FORWARDING,
                    {"portNumber": [str(port.remote)], "localPortNumber": [str(port.local)]},
                )
                proc = subprocess.Popen(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
                )
                self._procs.append(proc)
                self._listening(proc, port)
        except BaseException:
            self.close()
            raise

    def _listening(self, proc: subprocess.Popen[bytes], port: PortForward) -> None:
        deadline = time.monotonic() + LISTEN_TIMEOUT
        while proc.poll() is None:
            with socket.socket() as s:
                # with SO_REUSEADDR (which the plugin's listener sets too) this bind
                # never takes the port from under the plugin, and fails once it listens
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((LOCALHOST, port.local))
                except OSError:
                    return  # the plugin listens there
            if time.monotonic() > deadline:
                raise RemoteError(
                    f"the session forwarding port {port.remote} of {self.description} did "
                    f"not listen on localhost:{port.local} within {LISTEN_TIMEOUT:.0f} s"
                )
            time.sleep(0.1)
        raise RemoteError(
            f"the session forwarding port {port.remote} of {self.description} ended "
            f"(exit {proc.returncode})"
        )

    def wait(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while deadline is None or time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise RemoteError(f"a port forwarding session to {self.description} ended")
            time.sleep(0.2)

    def close(self) -> None:
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
