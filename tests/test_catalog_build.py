"""The bundled catalog is exactly what scripts/build_catalog.py makes of the references."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from trainctl.catalog import sources

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "build_catalog.py"


@pytest.fixture(scope="module")
def builder():
    spec = importlib.util.spec_from_file_location("build_catalog", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_catalog"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["build_catalog"]


@pytest.fixture(scope="module")
def reference(builder):
    """The repository's own copies: the build needs nothing beside the clone."""
    return builder.VENDORED


def test_bundled_files_match_the_generator(builder, reference):
    files, _ = builder.build(reference)
    assert sorted(files) == sorted(p for p in sources.providers() if sources.bundled_path(p))
    for provider, text in files.items():
        assert sources.bundled_path(provider).read_text() == text, (
            f"{provider}'s bundled offers are stale: run python scripts/build_catalog.py"
        )


def test_generator_says_what_it_left_out_and_why(builder, reference):
    _, skipped = builder.build(reference)
    reasons = "\n".join(skipped)
    assert "aws inf2.xlarge (AWS Inferentia2): not an NVIDIA GPU" in reasons
    assert "aws g6f.large (NVIDIA L40): fractional GPU" in reasons
    assert "aws p5e.48xlarge (NVIDIA H200): no on-demand price" in reasons
    assert "aws g2.2xlarge (NVIDIA GRID K520): previous generation" in reasons


def test_runpod_takes_the_newest_dated_price(builder, tmp_path):
    (tmp_path / "runpod").mkdir()
    (tmp_path / "runpod" / "prices-thirdparty.csv").write_text(
        "gpu,runpod_gpu_type_id,vram_gb,secure_usd_hr,community_usd_hr,source\n"
        "H100 SXM,NVIDIA H100 80GB HBM3,80,2.99,2.69,a (undated)\n"
        "H100 SXM,NVIDIA H100 80GB HBM3,80,3.99,,b (read 2026-11-09)\n"
        "H100 SXM,NVIDIA H100 80GB HBM3,80,3.49,2.50,c (checked 2026-09-25)\n"
    )
    offers = {o.cloud: o for o in builder.build_runpod(tmp_path, [])}
    assert (offers["secure"].on_demand, offers["secure"].on_demand_as_of) == (3.99, "2026-11-09")
    assert (offers["community"].on_demand, offers["community"].on_demand_source) == (
        2.50,
        "c (checked 2026-09-25)",
    )
    assert offers["secure"].gpu == "H100" and offers["secure"].per_gpu


def test_aws_memory_and_naming(builder, reference):
    by_type = {o.offer_id: o for o in builder.build_aws(reference, [])}
    p4d, p4de, g5 = by_type["p4d.24xlarge"], by_type["p4de.24xlarge"], by_type["g5.12xlarge"]
    assert (p4d.gpu, p4d.gpu_count, p4d.gpu_memory_gb) == ("A100-40GB", 8, 40)
    assert (p4de.gpu, p4de.gpu_memory_gb) == ("A100-80GB", 80)
    assert (g5.gpu, g5.gpu_count, g5.gpu_memory_gb, g5.vcpus, g5.ram_gb) == ("A10G", 4, 24, 48, 192)
    assert p4d.on_demand_as_of == "2026-01-21" and "vantage" in p4d.on_demand_source
