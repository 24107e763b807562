"""``trainctl autostop``: show or change the guards of a live machine."""

from __future__ import annotations

import click

from ..api import Trainctl
from ..guards import GuardRequest, Guards
from .common import guard_options, json_option
from .output import Output


@click.command()
@click.argument("resource")
@guard_options
@json_option
def autostop(
    resource: str,
    idle_stop: str | None,
    max_duration: str | None,
    max_spend: str | None,
    release: str | None,
    json_mode: bool,
) -> None:
    """Show or change the guards of RESOURCE, enforced on the machine itself.

    With no option, asks the machine's guard how far each limit is. --idle-stop,
    --max-duration (counted from launch) and --max-spend replace a limit; `never`
    switches one off; the others stay as they are.
    """
    request = GuardRequest.parse(idle_stop, max_duration, max_spend, release)
    record, guards, report = Trainctl().autostop(resource, request)
    out = Output(json_mode)
    if json_mode:
        out.emit(
            {
                "name": record.name,
                "id": record.id,
                "guards": guards.to_dict() if guards else None,
                "report": report,
            }
        )
        return
    out.info(f"{record.name}: {describe(guards, report)}")
    if report and report.get("last_error"):
        click.echo(
            f"warning: the guard's last release attempt failed: {report['last_error']}", err=True
        )


def describe(guards: Guards | None, report: dict | None) -> str:
    if guards is None or not guards.any:
        return "no guards"
    text = guards.summary(report)
    if report is not None and report.get("armed") and not report.get("running"):
        text += " (the guard is not running; the next trainctl command there starts it)"
    return text
