"""The vendored reference documents (tests/reference) are what the shared reference holds."""

from __future__ import annotations

from pathlib import Path

import pytest

VENDORED = Path(__file__).resolve().parent / "reference"
REPO = VENDORED.parent.parent


def shared_reference() -> Path | None:
    """``shared/reference`` beside the repository root or beside one of its parents
    (a worktree sits one level deeper than the main checkout); None on a lone clone."""
    for parent in REPO.parents:
        candidate = parent / "shared" / "reference"
        if candidate.is_dir():
            return candidate
    return None


VENDORED_FILES = sorted(
    p.relative_to(VENDORED).as_posix()
    for p in VENDORED.rglob("*")
    if p.is_file() and p.name != "README.md"
)


def test_every_vendored_file_is_in_the_readme():
    readme = (VENDORED / "README.md").read_text()
    assert VENDORED_FILES, "nothing vendored"
    for name in VENDORED_FILES:
        assert f"`{name}`" in readme, f"tests/reference/README.md does not describe {name}"


@pytest.mark.parametrize("name", VENDORED_FILES)
def test_vendored_copy_matches_the_shared_reference(name):
    shared = shared_reference()
    if shared is None:
        pytest.skip("no shared/reference beside the repository to compare with")
    original = shared / name
    assert original.is_file(), f"{name} is vendored but no longer in {shared}"
    assert (VENDORED / name).read_bytes() == original.read_bytes(), (
        f"tests/reference/{name} differs from {original}: copy it again"
    )
