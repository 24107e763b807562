"""Build the bundled price catalog from the reference files.

    python scripts/build_catalog.py [REFERENCE_DIR]   # default: tests/reference

writes the providers' bundled offers
(``src/trainctl/providers/{aws,runpod}/offers.csv``). What is left out, and why:

- AWS: rows without a us-east-1 on-demand price (preview types), previous-generation
  types, accelerators that are not NVIDIA GPUs (Inferentia, Trainium, Qualcomm,
  AMD Radeon Pro graphics cards, ARM Mali; trainctl runs CUDA training jobs), and
  fractional-GPU types (``g6f``/``gr6f`` slices of one L40).
- RunPod: several third parties transcribe the same GPU; for each GPU type and cloud
  the newest dated price wins, an undated one only when nothing dated exists.
- Lyceum publishes no price list; its offers come from ``trainctl catalog refresh``.

AWS lists memory per GPU for some types and for the whole instance for others;
``gpus.per_gpu_memory`` tells them apart and fails on a figure that fits neither.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

from trainctl.catalog import gpus
from trainctl.catalog.offer import Offer
from trainctl.catalog.sources import bundled_path, to_csv

REPO = Path(__file__).resolve().parent.parent
#: the copies the repository carries (their README gives each one's source and date)
VENDORED = REPO / "tests" / "reference"

AWS_FILE = "aws/gpu-instances-us-east-1.csv"
RUNPOD_FILE = "runpod/prices-thirdparty.csv"


def _number(text: str) -> float | None:
    m = re.match(r"\s*([\d.]+)", text or "")
    return float(m.group(1)) if m else None


def aws_date(reference: Path) -> str:
    """The publication date the reference README gives for the AWS file."""
    readme = (reference / "README.md").read_text()
    for line in readme.splitlines():
        if AWS_FILE in line:
            m = re.search(r"published (\d{4}-\d{2}-\d{2})", line)
            if m:
                return m.group(1)
    raise SystemExit(f"README.md names no publication date for {AWS_FILE}")


def _aws_exclusion(row: dict, price: float | None, count: float, family: str | None) -> str:
    """Why an AWS row stays out of the catalog, or "" when it goes in."""
    if price is None:
        return "no on-demand price"
    if row["generation"] == "previous":
        return "previous generation"
    if not row["gpu"].startswith("NVIDIA"):
        return "not an NVIDIA GPU"
    if count != int(count):
        return "fractional GPU"
    if family is None:
        return "GPU model not in the naming table"
    return ""


def build_aws(reference: Path, skipped: list[str]) -> list[Offer]:
    as_of = aws_date(reference)
    source = f"instances.vantage.sh us-east-1 Linux on-demand (published {as_of})"
    offers = []
    with (reference / AWS_FILE).open(newline="") as f:
        for row in csv.DictReader(f):
            itype, raw_gpu = row["instance_type"], row["gpu"]
            price = _number(row["us_east_1_on_demand_usd_hr"])
            count = float(row["gpu_count"])
            family = gpus.canonical(raw_gpu)
            why = _aws_exclusion(row, price, count, family)
            if why or family is None:
                skipped.append(f"aws {itype} ({raw_gpu}): {why}")
                continue
            memory = gpus.per_gpu_memory(family, _number(row["gpu_memory"]), int(count))
            offers.append(
                Offer(
                    provider="aws",
                    offer_id=itype,
                    gpu=gpus.canonical(raw_gpu, memory) or family,
                    gpu_count=int(count),
                    gpu_memory_gb=memory,
                    vcpus=int(row["vcpu"]),
                    ram_gb=_number(row["memory"]),
                    region="us-east-1",
                    on_demand=price,
                    on_demand_source=source,
                    on_demand_as_of=as_of,
                )
            )
    return sorted(offers, key=lambda o: (o.gpu, o.gpu_count, o.on_demand or 0, o.offer_id))


def _source_date(source: str) -> str:
    m = re.search(r"\((?:read|checked|published) (\d{4}-\d{2}-\d{2})\)", source)
    return m.group(1) if m else ""


def build_runpod(reference: Path, skipped: list[str]) -> list[Offer]:
    # (gpu type id, cloud) -> (as_of, source, price, memory)
    best: dict[tuple[str, str], tuple[str, str, float, float]] = {}
    with (reference / RUNPOD_FILE).open(newline="") as f:
        for row in csv.DictReader(f):
            as_of = _source_date(row["source"])
            for cloud in ("secure", "community"):
                price = _number(row[f"{cloud}_usd_hr"])
                if price is None:
                    continue
                key = (row["runpod_gpu_type_id"], cloud)
                held = best.get(key)
                if held is None or as_of > held[0]:
                    best[key] = (as_of, row["source"], price, float(row["vram_gb"]))
    offers = []
    for (type_id, cloud), (as_of, source, price, memory) in best.items():
        name = gpus.canonical(type_id, memory)
        if name is None:
            skipped.append(f"runpod {type_id}: GPU model not in the naming table")
            continue
        offers.append(
            Offer(
                provider="runpod",
                offer_id=type_id,
                gpu=name,
                gpu_count=1,
                gpu_memory_gb=memory,
                cloud=cloud,
                per_gpu=True,
                on_demand=price,
                on_demand_source=source,
                on_demand_as_of=as_of,
            )
        )
    return sorted(offers, key=lambda o: (o.gpu, o.offer_id, o.cloud))


def build(reference: Path) -> tuple[dict[str, str], list[str]]:
    """The bundled files' contents (provider -> CSV text) and what was left out."""
    skipped: list[str] = []
    files = {
        "aws": to_csv(build_aws(reference, skipped)),
        "runpod": to_csv(build_runpod(reference, skipped)),
    }
    return files, skipped


def main(argv: list[str]) -> int:
    reference = Path(argv[0]) if argv else VENDORED
    files, skipped = build(reference)
    for provider, text in files.items():
        path = bundled_path(provider)
        assert path is not None, f"{provider} names no bundled offers file"
        path.write_text(text)
        print(f"{path}: {text.count(chr(10)) - 1} offers")
    for line in skipped:
        print(f"left out: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
