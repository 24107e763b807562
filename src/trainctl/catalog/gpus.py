"""One GPU naming across providers.

Every provider spells its GPUs its own way (``NVIDIA A100-SXM4-80GB``, ``NVIDIA A100``
with 320 GB for eight, ``a100``). The catalog stores one canonical name per model:
``A100-40GB``, ``A100-80GB``, ``H100``, ``H100-NVL``, ``H200``, ``L40S``, ``L4``,
``A10G``, ``T4``, ``V100``, ``RTX4090``, ... A user's query names a model or a family:
``A100`` matches ``A100-40GB``, ``A100-80GB`` and a plain ``A100`` (an A100 whose
memory the provider does not state).
"""

from __future__ import annotations

import re

#: canonical name -> the per-GPU memory sizes (GB) the model ships with
MEMORY_GB: dict[str, tuple[float, ...]] = {
    "A100": (40, 80),
    "A100-40GB": (40,),
    "A100-80GB": (80,),
    "H100": (80,),
    "H100-NVL": (94,),
    "H200": (141,),
    "B200": (180,),
    "B300": (288,),
    "GB200": (186,),
    "L40S": (48,),
    "L40": (48,),
    "L4": (24,),
    "A10G": (24,),
    "A10": (24,),
    "A30": (24,),
    "A40": (48,),
    "T4": (16,),
    "V100": (16, 32),
    "P100": (16,),
    "K80": (12,),
    "M60": (8,),
    "RTXPRO6000": (96,),
    "RTX6000-ADA": (48,),
    "A6000": (48,),
    "A5000": (24,),
    "A4500": (20,),
    "A4000": (16,),
    "RTX3090": (24,),
    "RTX4090": (24,),
    "RTX5090": (32,),
    "MI300X": (192,),
}

#: how a provider's spelling maps to a canonical name, tried in order (the text is
#: upper-cased, with vendor words and punctuation turned into spaces first)
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), name)
    for p, name in [
        (r"\bA100\b", "A100"),
        (r"\bH100\b.*\bNVL\b", "H100-NVL"),
        (r"\bH100\b", "H100"),
        (r"\bH200\b", "H200"),
        (r"\bGB200\b", "GB200"),
        (r"\bB200\b", "B200"),
        (r"\bB300\b", "B300"),
        (r"\bL40S\b", "L40S"),
        (r"\bL40\b", "L40"),
        (r"\bL4\b", "L4"),
        (r"\bA10G\b", "A10G"),
        (r"\bA10\b", "A10"),
        (r"\bA30\b", "A30"),
        (r"\bA40\b", "A40"),
        (r"\bT4\b", "T4"),
        (r"\bV100\b", "V100"),
        (r"\bP100\b", "P100"),
        (r"\bK80\b", "K80"),
        (r"\bM60\b", "M60"),
        (r"\bRTX ?PRO ?6000\b", "RTXPRO6000"),
        (r"\bRTX ?6000 ?ADA\b", "RTX6000-ADA"),
        (r"\bA6000\b", "A6000"),
        (r"\bA5000\b", "A5000"),
        (r"\bA4500\b", "A4500"),
        (r"\bA4000\b", "A4000"),
        (r"\bRTX ?3090\b", "RTX3090"),
        (r"\bRTX ?4090\b", "RTX4090"),
        (r"\bRTX ?5090\b", "RTX5090"),
        (r"\bMI300X\b", "MI300X"),
    ]
]

_VENDOR_WORDS = re.compile(r"\b(NVIDIA|GEFORCE|TESLA|AMD|INSTINCT|GPU)\b")
_MEMORY_IN_NAME = re.compile(r"\b(\d+) ?GB\b")

#: memory sizes agree when within this fraction (published figures round differently)
_TOLERANCE = 0.05


def _clean(raw: str) -> str:
    text = re.sub(r"[^A-Z0-9]+", " ", raw.upper())
    return " ".join(_VENDOR_WORDS.sub(" ", text).split())


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _TOLERANCE * b


def _split_by_memory(family: str, memory_gb: float | None) -> str:
    """``A100`` with a known memory size becomes ``A100-40GB`` or ``A100-80GB``."""
    if family != "A100" or memory_gb is None:
        return family
    for size in MEMORY_GB[family]:
        if _close(memory_gb, size):
            return f"{family}-{size:g}GB"
    return family


def canonical(raw: str, memory_gb: float | None = None) -> str | None:
    """The canonical name of a provider's GPU name, or None for a model not known here.

    ``memory_gb`` (per GPU) decides between memory variants when the name does not."""
    text = _clean(raw)
    for pattern, name in _PATTERNS:
        if pattern.search(text):
            in_name = _MEMORY_IN_NAME.search(text)
            return _split_by_memory(name, float(in_name.group(1)) if in_name else memory_gb)
    return None


def derived_name(raw: str) -> str:
    """A stable name for a model not in the table, so live offers are never dropped:
    ``RTX 2000 Ada`` becomes ``RTX2000ADA``."""
    return re.sub(r"[^A-Z0-9]", "", _clean(raw)) or raw.upper()


def per_gpu_memory(name: str, reported_gb: float | None, count: int) -> float | None:
    """Per-GPU memory from a figure that may be per GPU or for the whole instance.

    Price lists mix both (eight A100s listed as ``320 GB``, four A10Gs as ``24 GB``).
    A figure matching a known size of the model is per GPU; one that matches after
    dividing by the count is a total. Without a figure, a model with a single size
    has that size. Raises ValueError when neither reading fits, so bad data is seen."""
    sizes = MEMORY_GB.get(name, ())
    if reported_gb is None:
        return sizes[0] if len(sizes) == 1 else None
    if count <= 1 or not sizes or any(_close(reported_gb, s) for s in sizes):
        return reported_gb
    if any(_close(reported_gb / count, s) for s in sizes):
        return round(reported_gb / count, 1)
    raise ValueError(f"{reported_gb:g} GB for {count}x {name} fits no known size {sizes}")


def _compact(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def family(name: str) -> str:
    """``A100-80GB`` -> ``A100``; ``H100-NVL`` -> ``H100``."""
    return name.split("-", 1)[0]


def _direct(query: str, known: set[str]) -> set[str]:
    q = _compact(query)
    by_family = {n for n in known if _compact(family(n)) == q}
    if by_family:
        return by_family
    return {n for n in known if q in (_compact(n), _compact(n).removesuffix("GB"))}


def matching(query: str, known: set[str]) -> set[str]:
    """Canonical names among ``known`` that a user's GPU query selects.

    The query may be a family (``A100`` selects ``A100-40GB``, ``A100-80GB`` and
    ``A100``; ``H100`` selects ``H100-NVL`` too), a canonical name in any case or
    punctuation (``a100_80gb``), or a provider's spelling (``NVIDIA GeForce RTX 4090``).
    An empty set means the query names no known model."""
    if not _compact(query):
        return set()
    found = _direct(query, known)
    if found:
        return found
    name = canonical(query)
    if name is None:
        return set()
    return _direct(name, known) or {name}
