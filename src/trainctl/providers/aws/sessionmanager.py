"""Session Manager sessions to an instance: the AWS CLI's ``aws ssm start-session``
with its session-manager-plugin, for `trainctl ssh` and `trainctl forward`.

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
from collections.abc import Sequence
from typing import Any

from ...errors import CredentialsError, OperationFailed
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
