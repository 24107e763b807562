"""Getting into a machine: ssh (a shell or a command there), forward (its ports
here), and the ``--port`` option of train and run."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from .. import interrupts
from ..api import Trainctl
from ..errors import BadInput
from ..interrupts import Interrupted, signals_interrupt
from ..remote.ports import PortForward, check_free, parse_ports
from ..remote.sessions import run_session
from .common import JobCommand, json_option
from .output import Output


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


@click.command()
@click.argument("resource")
@click.argument("ports", nargs=-1, required=True, metavar="PORT[:LOCAL]...")
@json_option
def forward(resource: str, ports: tuple[str, ...], json_mode: bool) -> None:
    """Forward RESOURCE's PORT to localhost:LOCAL (default: the same port) until
    Ctrl-C (exit 130), over the machine's SSH connection or through SSM.

    With --json, one document says what is forwarded once it is.
    """
    specs = parse_ports(ports)
    check_free(specs)
    out = Output(json_mode)
    tc = Trainctl()
    try:
        with signals_interrupt():
            record, remote = tc.remote(resource)
            with remote.forward(specs) as forwarded:
                if json_mode:
                    out.emit(
                        {
                            "resource": record.name,
                            "forwards": [{"port": p.remote, "local": p.local} for p in specs],
                        }
                    )
                for p in specs:
                    out.info(f"forwarding localhost:{p.local} -> {record.name}:{p.remote}")
                forwarded.wait()
    except KeyboardInterrupt as e:
        raise Interrupted(f"{interrupts.name(e)}: stopped forwarding") from None


def port_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--port",
        "ports",
        multiple=True,
        metavar="PORT[:LOCAL]",
        help="Forward the machine's PORT to localhost:LOCAL (default: the same) while "
        "the job is followed (repeatable), e.g. --port 6006 for TensorBoard.",
    )(f)


def job_ports(values: tuple[str, ...], *, detach: bool = False) -> list[PortForward]:
    """The ``--port`` values of train or run, checked before anything starts."""
    specs = parse_ports(values)
    if specs and detach:
        raise BadInput(
            "--port forwards while the job is followed, not with --detach",
            hint="use `trainctl forward RES PORT` for a detached job",
        )
    check_free(specs)
    return specs
