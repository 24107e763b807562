from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainctl import registry
from trainctl.errors import BadInput
from trainctl.registry import state_of as normalize_state
from trainctl.types import (
    CostEstimate,
    ExecutionStatus,
    GpuSpec,
    ResourceState,
    TrainingJob,
)

DESIGN_STATES = {
    "aws": ["pending", "running", "stopping", "stopped", "shutting-down", "terminated"],
    "runpod": ["PROVISIONING", "STARTING", "RUNNING", "EXITED", "ERROR", "TERMINATED"],
    "lyceum": [
        "pending",
        "provisioning",
        "running",
        "ready",
        "failed",
        "error",
        "terminated",
        "stopped",
    ],
    "local": ["running", "terminated"],
    "ssh": ["reachable", "unreachable", "forgotten"],
}

#: each built-in provider's own table, from its class
STATE_TABLES = {name: registry.get_class(name).states for name in DESIGN_STATES}


@pytest.mark.parametrize(
    ("provider", "raw"), [(p, raw) for p, raws in DESIGN_STATES.items() for raw in raws]
)
def test_every_documented_raw_state_is_in_its_table(provider, raw):
    assert raw.lower() in STATE_TABLES[provider]


@pytest.mark.parametrize(
    ("provider", "raw", "expected"),
    [(p, raw, state) for p, table in STATE_TABLES.items() for raw, state in table.items()],
)
def test_every_table_entry_maps_case_insensitively(provider, raw, expected):
    assert normalize_state(provider, raw) is expected
    assert normalize_state(provider, raw.upper()) is expected
    assert normalize_state(provider, f"  {raw.title()} ") is expected


def test_key_mappings():
    assert normalize_state("aws", "shutting-down") is ResourceState.TERMINATING
    assert normalize_state("runpod", "EXITED") is ResourceState.STOPPED
    assert normalize_state("runpod", "ERROR") is ResourceState.ERROR
    assert normalize_state("lyceum", "ready") is ResourceState.RUNNING
    assert normalize_state("lyceum", "running") is ResourceState.RUNNING
    assert normalize_state("lyceum", "failed") is ResourceState.ERROR


@given(st.text(), st.one_of(st.text(), st.none(), st.integers()))
def test_normalize_state_never_raises(provider, raw):
    assert isinstance(normalize_state(provider, raw), ResourceState)


def test_unknown_strings_are_unknown():
    assert normalize_state("aws", "hibernating") is ResourceState.UNKNOWN
    assert normalize_state("nope", "running") is ResourceState.UNKNOWN


@pytest.mark.parametrize(
    ("text", "name", "count"),
    [
        ("A100", "A100", 1),
        ("A100:2", "A100", 2),
        ("A100-80GB:8", "A100-80GB", 8),
        (" h100 : 4 ", "h100", 4),
    ],
)
def test_gpu_spec_parse(text, name, count):
    assert GpuSpec.parse(text) == GpuSpec(name, count)


@pytest.mark.parametrize("text", ["", ":2", "A100:0", "A100:x", "A100:2:3"])
def test_gpu_spec_rejects_bad_input(text):
    with pytest.raises(BadInput):
        GpuSpec.parse(text)


def test_empty_command_is_bad_input():
    with pytest.raises(BadInput):
        TrainingJob(command=[])


def test_states_flags():
    assert ResourceState.RUNNING.is_billing and not ResourceState.STOPPED.is_billing
    assert ExecutionStatus.LOST.is_final and not ExecutionStatus.RUNNING.is_final


def test_cost_estimate_total():
    assert CostEstimate("x", 1.25, 3, "test").total == 3.75
    assert CostEstimate("x", None, 3, "test").total is None
