"""A container image for the tests of --image, built here (nothing is pulled).

The ``image`` fixture needs a Docker daemon this user can reach and a static busybox
(Debian: busybox-static) to build the image FROM scratch; without them the test is
skipped, and the reason is printed in pytest's summary (``-ra``)."""

from __future__ import annotations

import grp
import os
import shutil
import subprocess

import pytest

from sshd import run_admin

IMAGE = "trainctl-test:busybox"
BUSYBOX = "/bin/busybox"


def _docker_ready() -> str | None:
    """Why the container tests cannot run here, or None."""
    if not shutil.which("docker"):
        return "docker is not installed"
    try:
        r = subprocess.run(["docker", "info"], capture_output=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker daemon did not answer"
    if r.returncode != 0:
        return "no Docker daemon: " + r.stderr.decode(errors="replace").strip().splitlines()[-1]
    if not os.path.exists(BUSYBOX):
        return f"no {BUSYBOX} to build the test image from (Debian: busybox-static)"
    return None


@pytest.fixture(scope="session")
def image(tmp_path_factory) -> str:
    why = _docker_ready()
    if why:
        pytest.skip(f"container tests need Docker: {why}")
    ctx = tmp_path_factory.mktemp("image")
    shutil.copy(BUSYBOX, ctx / "busybox")
    (ctx / "Dockerfile").write_text(
        "FROM scratch\nCOPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    )
    r = subprocess.run(["docker", "build", "-q", "-t", IMAGE, str(ctx)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build the test image: {r.stderr.decode(errors='replace')[-300:]}")
    return IMAGE


def may_use_docker(user: str) -> None:
    """Let a test machine's Unix user reach the Docker daemon (its next login)."""
    try:
        grp.getgrnam("docker")
    except KeyError:
        pytest.skip("no docker group on this machine")
    run_admin(["usermod", "--append", "--groups", "docker", user])


def containers(name: str) -> list[str]:
    """The ids of the containers called ``name``, running or not."""
    r = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"name=^{name}$", "--format", "{{.ID}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return r.stdout.split()
