"""RunPod's GPU catalog (``GET /v2/catalog/gpus``), cached, and ``--gpu`` name resolution.

Users write friendly names (``A100-80GB``, ``H100``, ``RTX4090``); pods are created
with RunPod's ids (``NVIDIA A100 80GB PCIe``). A name first matches a RunPod id or
display name exactly (ignoring case, spaces, dashes and vendor words: ``H100 SXM``,
``NVIDIA A100-SXM4-80GB``), else it goes through trainctl's one GPU naming
(``trainctl.catalog.gpus``): ``A100-80GB`` selects both 80 GB A100s, ``H100`` every
H100. Of the matches, the cheapest offered on the chosen cloud with enough GPUs per
pod wins, so ``H100`` means "the cheapest H100".
"""

from __future__ import annotations

import difflib
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...catalog import gpus as naming
from ...errors import BadInput, OperationFailed
from ...home import home, write_private
from ...types import GpuSpec

CACHE_TTL = 6 * 3600
_NOISE = {"nvidia", "geforce", "amd", "radeon"}


def _tokens(text: str) -> list[str]:
    return [t for t in re.findall(r"[a-z]+|\d+", text.lower()) if t not in _NOISE]


def _key(text: str) -> str:
    return "".join(_tokens(text))


def _canonical(gpu: dict[str, Any]) -> str:
    return naming.canonical(gpu["id"], gpu.get("memory")) or naming.derived_name(gpu["name"])


def cache_path() -> Path:
    return home() / "cache" / "runpod-gpus.json"


def load_catalog(
    fetch: Callable[[], list[dict[str, Any]]],
    source: str,
    *,
    ttl: float = CACHE_TTL,
    clock: Callable[[], float] = time.time,
) -> list[dict[str, Any]]:
    """The GPU types, from the cache under the trainctl home when it is younger than
    ``ttl``, was read from the same ``source`` (API URL) and holds a usable catalog,
    else from ``fetch()`` (which must return a ``checked`` catalog)."""
    try:
        cached = json.loads(cache_path().read_text())
        if cached["source"] == source and clock() - cached["fetched_at"] < ttl:
            return checked({"gpus": cached["gpus"]})
    except (OSError, ValueError, KeyError, TypeError, OperationFailed):
        pass
    gpus = fetch()
    store_catalog(gpus, source, clock=clock)
    return gpus


def store_catalog(
    gpus: list[dict[str, Any]], source: str, *, clock: Callable[[], float] = time.time
) -> None:
    """Replace the cache (``trainctl catalog refresh`` does, so a fresh read wins)."""
    write_private(cache_path(), json.dumps({"source": source, "fetched_at": clock(), "gpus": gpus}))


def checked(body: Any) -> list[dict[str, Any]]:
    """The GPU types of a ``GET /v2/catalog/gpus`` answer, or ``OperationFailed``
    when it holds none or entries of the wrong shape: such an answer is never
    cached, or every create would fail on "unknown RunPod GPU" for hours."""
    gpus = body.get("gpus") if isinstance(body, dict) else None
    if not isinstance(gpus, list) or not gpus:
        raise OperationFailed(
            "RunPod's GPU catalog (GET /v2/catalog/gpus) came back "
            + ("empty" if isinstance(gpus, list) else "unreadable")
            + "; nothing was cached",
            hint="try again in a moment",
        )
    for gpu in gpus:
        if not (
            isinstance(gpu, dict)
            and isinstance(gpu.get("id"), str)
            and isinstance(gpu.get("name"), str)
            and isinstance(gpu.get("price"), dict)
            and all(_number(v) for v in gpu["price"].values())
            and isinstance(gpu.get("maxCount") or {}, dict)
            and all(_number(v) for v in (gpu.get("maxCount") or {}).values())
            and (gpu.get("memory") is None or _number(gpu["memory"]))
        ):
            raise OperationFailed(
                "RunPod's GPU catalog (GET /v2/catalog/gpus) holds an entry trainctl "
                f"cannot read ({ascii(gpu)[:80]}); nothing was cached"
            )
    return gpus


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def resolve(catalog: list[dict[str, Any]], spec: GpuSpec, cloud: str) -> dict[str, Any]:
    """The catalog entry ``spec`` names, offered on ``cloud`` (secure|community) with
    at least ``spec.count`` GPUs per pod; ``BadInput`` listing close names if none."""
    want = _key(spec.name)
    matches = [g for g in catalog if want in (_key(g["id"]), _key(g["name"]))]
    if not matches:
        names = naming.matching(spec.name, {_canonical(g) for g in catalog})
        matches = [g for g in catalog if _canonical(g) in names]
    if not matches:
        raise BadInput(f"unknown RunPod GPU {spec.name!r}: {_suggest(catalog, spec.name)}")
    usable = [
        g
        for g in matches
        if g.get(cloud)
        and _number(g["price"].get(cloud))  # offered there, yet without a price: not rentable
        and (g.get("maxCount") or {}).get(cloud, 0) >= spec.count
    ]
    if not usable:
        offers = ", ".join(
            f"{g['name']} (up to {(g.get('maxCount') or {}).get(cloud, 0)})" for g in matches
        )
        other = "community" if cloud == "secure" else "secure"
        raise BadInput(
            f"no {spec.name} offer on RunPod's {cloud} cloud with {spec.count} GPU(s) per pod: "
            f"{offers}",
            hint=f"ask for fewer GPUs or try --cloud {other}",
        )
    return min(usable, key=lambda g: (g["price"][cloud], g["id"]))


def _suggest(catalog: list[dict[str, Any]], name: str) -> str:
    by_key = {_key(g["name"]): g["name"] for g in catalog}
    by_key.update({_key(g["id"]): g["name"] for g in catalog})
    close = difflib.get_close_matches(_key(name), list(by_key), n=6, cutoff=0.5)
    names = list(dict.fromkeys(by_key[k] for k in close))
    if names:
        return "close matches: " + ", ".join(names)
    known = sorted({g["name"] for g in catalog})
    more = f", ... ({len(known)} in all)" if len(known) > 12 else ""
    return "known GPUs: " + ", ".join(known[:12]) + more
