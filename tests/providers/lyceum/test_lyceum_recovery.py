"""`run --spot --recover` on Lyceum (sshd machines behind the fake): a spot VM taken
back mid-run (terminated, its machine gone) is replaced, and the job resumes from the
checkpoint that came home."""

from __future__ import annotations

import json

import pytest

from recovery_support import chain, log_of, run
from trainctl.api import Trainctl
from trainctl.recovery import Recovery
from trainctl.types import CreateResourceOptions, GpuSpec


@pytest.fixture
def fake(lyceum_sshd):
    return lyceum_sshd


def test_a_spot_vm_taken_back_is_replaced_and_the_job_resumes(fake, tmp_path):
    tc = Trainctl()
    result, home = run(
        tc,
        "lyceum",
        CreateResourceOptions(gpu=GpuSpec("A100", 1), spot=True),
        tmp_path,
        recover=Recovery(2),
        preempt=lambda record: fake.preempt(record.id),
        at_epochs=[3],
    )
    assert result.exit_code == 0, result
    first, second = result.attempts
    assert first.how == "preempted" and second.status == "completed"
    assert "resumed from epoch-3.pt (epoch 3)" in log_of(second.id)
    assert json.loads((home / "epoch-8.pt").read_text())["state"] == chain(8)
    assert len(fake.creates()) == 2 and fake.live_vms() == []
    assert tc.store.resources() == []
