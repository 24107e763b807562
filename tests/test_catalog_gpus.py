"""GPU naming: provider spellings, memory figures and user queries."""

from __future__ import annotations

import pytest

from trainctl.catalog import gpus


@pytest.mark.parametrize(
    ("raw", "memory", "expected"),
    [
        ("NVIDIA A100", 40, "A100-40GB"),
        ("NVIDIA A100", 80, "A100-80GB"),
        ("NVIDIA A100", None, "A100"),
        ("NVIDIA A100-SXM4-80GB", None, "A100-80GB"),
        ("NVIDIA A100 80GB PCIe", None, "A100-80GB"),
        ("NVIDIA H100 80GB HBM3", 80, "H100"),
        ("NVIDIA H100 PCIe", 80, "H100"),
        ("NVIDIA H100 NVL", 94, "H100-NVL"),
        ("NVIDIA H200", 141, "H200"),
        ("NVIDIA L40S", None, "L40S"),
        ("NVIDIA L40", None, "L40"),
        ("NVIDIA L4", None, "L4"),
        ("NVIDIA A10G", None, "A10G"),
        ("NVIDIA T4", None, "T4"),
        ("NVIDIA V100", 32, "V100"),
        ("NVIDIA GeForce RTX 4090", 24, "RTX4090"),
        ("NVIDIA RTX PRO 6000 Blackwell", None, "RTXPRO6000"),
        ("NVIDIA RTX 6000 Ada Generation", None, "RTX6000-ADA"),
        ("NVIDIA RTX A6000", None, "A6000"),
        ("NVIDIA B200 Blackwell", None, "B200"),
        ("AMD Instinct MI300X OAM", None, "MI300X"),
        ("a100", None, "A100"),  # Lyceum hardware profiles
        ("h100", None, "H100"),
        ("gpu.l40s", None, "L40S"),
        ("cpu", None, None),
        ("AMD Radeon Pro V520", None, None),
    ],
)
def test_canonical_names(raw, memory, expected):
    assert gpus.canonical(raw, memory) == expected


def test_unlisted_models_get_a_stable_derived_name():
    assert gpus.derived_name("NVIDIA RTX 2000 Ada Generation") == "RTX2000ADAGENERATION"
    assert gpus.derived_name("RTX 2000 Ada") == "RTX2000ADA"


@pytest.mark.parametrize(
    ("name", "reported", "count", "per_gpu"),
    [
        ("A100", 320, 8, 40),  # p4d: the figure is for the whole instance
        ("A100", 640, 8, 80),  # p4de
        ("H100", 640, 8, 80),
        ("H200", 1128, 8, 141),
        ("A10G", 24, 4, 24),  # g5.12xlarge: the figure is per GPU
        ("V100", 32, 8, 32),  # p3dn has the 32 GB V100
        ("V100", 16, 8, 16),
        ("B200", 1432, 8, 179),  # within the tolerance of the published 180
        ("L4", None, 1, 24),  # unknown figure, a model with one size
        ("A100", None, 8, None),  # unknown figure, two sizes: stays unknown
        ("T4", 16, 1, 16),
    ],
)
def test_per_gpu_memory(name, reported, count, per_gpu):
    assert gpus.per_gpu_memory(name, reported, count) == per_gpu


def test_memory_that_fits_no_reading_fails_loudly():
    with pytest.raises(ValueError, match="fits no known size"):
        gpus.per_gpu_memory("A100", 100, 8)


KNOWN = {"A100-40GB", "A100-80GB", "A100", "H100", "H100-NVL", "L4", "L40S", "L40", "RTX4090"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("A100", {"A100-40GB", "A100-80GB", "A100"}),
        ("a100", {"A100-40GB", "A100-80GB", "A100"}),
        ("A100-80GB", {"A100-80GB"}),
        ("a100_80gb", {"A100-80GB"}),
        ("A100-80", {"A100-80GB"}),
        ("H100", {"H100", "H100-NVL"}),
        ("H100-NVL", {"H100-NVL"}),
        ("L4", {"L4"}),
        ("L40", {"L40"}),
        ("rtx 4090", {"RTX4090"}),
        ("NVIDIA GeForce RTX 4090", {"RTX4090"}),
        ("NVIDIA A100-SXM4-80GB", {"A100-80GB"}),
        ("T4", {"T4"}),  # a known model with no offers among KNOWN still resolves
        ("Z9", set()),
        ("--", set()),
    ],
)
def test_query_matching(query, expected):
    assert gpus.matching(query, KNOWN) == expected
