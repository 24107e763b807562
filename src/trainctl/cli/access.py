"""Getting into a machine: ssh (a shell or a command there)."""

from __future__ import annotations

import sys

import click

from ..api import Trainctl
from ..remote.sessions import run_session
from .common import JobCommand


@click.command(cls=JobCommand, leading=1)
@click.argument("resource")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(resource: str, command: tuple[str, ...]) -> int:
    """A shell on RESOURCE, or COMMAND run there; exits with its exit code.

    It starts in the job's work directory (the synced code) with the latest job's
    TRAINCTL_* variables set. SSH machines are reached with trainctl's own key and
    known_hosts, AWS machines through SSM Session Manager (the AWS CLI and its
    session-manager-plugin must be installed), local ones here.
    """
    _, remote = Trainctl().remote(resource)
    return run_session(remote.session(list(command), tty=sys.stdin.isatty()))
