"""Getting into a machine: ssh (a shell or a command there), forward (its ports
here), the ``--port`` option of train and run, and ssh-config (Host entries for the
user's own ssh)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from .. import interrupts, sshconfig
from ..api import Trainctl
from ..errors import BadInput, CapabilityError, TrainctlError
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


#: machines in these states may be reached; the rest are skipped without a look
_LIVE = {"running", "starting"}


@click.command("ssh-config")
@json_option
def ssh_config(json_mode: bool) -> None:
    """Write a Host entry per live machine reached over SSH to trainctl's ssh_config
    include file, so that `ssh NAME`, scp and editors reach it by name.

    The file is replaced each time (mode 0600). Include it from ~/.ssh/config with the
    line printed, before any Host line there. AWS machines (SSM) and local ones are
    skipped: `trainctl ssh NAME` gets into them.
    """
    out = Output(json_mode)
    tc = Trainctl()
    entries: dict[str, dict[str, str]] = {}
    skipped: list[tuple[str, str]] = []
    for record in tc.store.resources():
        if record.state not in _LIVE:
            skipped.append((record.name, record.state))
            continue
        try:
            _, remote = tc.remote(record.id)
            entries[record.name] = remote.ssh_host_options()
        except CapabilityError as e:
            skipped.append((record.name, f"{e.message}; `trainctl ssh {record.name}` gets in"))
        except TrainctlError as e:
            skipped.append((record.name, f"cannot reach it: {e.message}"))
    path = sshconfig.write(entries)
    included = sshconfig.included()
    if json_mode:
        out.emit(
            {
                "path": str(path),
                "hosts": [{"name": n, **o} for n, o in entries.items()],
                "skipped": [{"name": n, "reason": r} for n, r in skipped],
                "include": sshconfig.include_line(),
                "included": included,
            }
        )
        return
    for name, options in entries.items():
        user = f"{options['User']}@" if "User" in options else ""
        port = f":{options['Port']}" if "Port" in options else ""
        out.info(f"{name}: {user}{options['HostName']}{port}")
    for name, reason in skipped:
        out.info(f"skipped {name}: {reason}")
    out.info(f"wrote {len(entries)} host(s) to {path}")
    if not included:
        out.info(
            f"add this line to ~/.ssh/config, before any Host line: {sshconfig.include_line()}"
        )
