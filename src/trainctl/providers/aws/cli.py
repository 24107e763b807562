"""`trainctl aws setup`: what the aws provider needs in an AWS account."""

from __future__ import annotations

import click

from ...cli.common import json_option
from ...cli.main import LazyGroup
from ...cli.output import Output
from .instance import AwsProvider

AWS_COMMANDS: dict[str, tuple[str, str]] = {
    "setup": (
        "trainctl.providers.aws.cli:setup",
        "Create the instance role, instance profile and staging bucket.",
    ),
}


@click.group(cls=LazyGroup, lazy=AWS_COMMANDS)
def aws() -> None:
    """AWS commands."""


@click.command()
@click.option("--region", help="Region of the staging bucket (default: the AWS default).")
@json_option
def setup(region: str | None, json_mode: bool) -> None:
    """Create what trainctl needs to run machines in this AWS account (idempotent).

    An IAM role and instance profile for the machines, allowed what the SSM agent needs
    to take commands and each machine's own prefix of trainctl's staging buckets,
    nothing else, and the region's staging bucket (private; objects expire after a
    day). Says what it created, removed and what was already there.
    """
    out = Output(json_mode)
    provider = AwsProvider(region=region)
    report = provider.setup()
    if json_mode:
        out.emit({"account": provider.identity["account"], **report.to_dict()})
        return
    out.info(f"AWS account {provider.identity['account']}, region {report.region}")
    for item in report.created:
        out.info(f"  created  {item}")
    for item in report.removed:
        out.info(f"  removed  {item}")
    for item in report.present:
        out.info(f"  present  {item}")
    if not report.created and not report.removed:
        out.info("nothing to do: trainctl is set up here")
