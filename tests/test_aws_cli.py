"""The aws provider through the real entry point: create, list, status, terminate."""

from __future__ import annotations

from aws_support import instance, set_up
from cli_helpers import trainctl

REGION = "eu-central-1"


def test_create_list_status_terminate(monkeypatch):
    set_up(monkeypatch, REGION)
    made = trainctl(
        "create",
        "--provider",
        "aws",
        "--gpu",
        "T4",
        "--name",
        "cli-box",
        "--tag",
        "team=ml",
        "--json",
    )
    assert made.code == 0, made.err
    record = made.json()
    rid = record["id"]
    assert rid.startswith("i-") and record["provider"] == "aws"
    assert "launched " + rid in made.err  # progress on stderr, the document on stdout

    listed = trainctl("list", "--refresh", "--provider", "aws", "--json").json()
    (row,) = [r for r in listed["resources"] if r["id"] == rid]
    assert row["state"] == "running"

    status = trainctl("status", "cli-box", "--json").json()
    assert status["instance_type"] == "g4dn.xlarge" and status["tags"]["team"] == "ml"

    gone = trainctl("terminate", "cli-box", "-y", "--json")
    assert gone.code == 0 and gone.json()["state"] in ("terminating", "terminated")
    assert instance(REGION, rid).state in ("shutting-down", "terminated")


def test_check_reports_identity_and_region(monkeypatch):
    set_up(monkeypatch, REGION)
    r = trainctl("check", "--provider", "aws", "--json")
    (aws,) = r.json()["providers"]
    assert aws["usable"] and "account 123456789012" in aws["detail"] and REGION in aws["detail"]
