"""Sealed SSM command input (providers/aws/sealbox.py): RFC 7748's X25519 vectors, sealing
and opening, and the machine side run as SSM runs it (``python3 -c``, isolated)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from trainctl.providers.aws import sealbox
from trainctl.providers.aws.ssm import sealbox_source


def test_x25519_matches_rfc_7748():
    scalar = bytes.fromhex("a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4")
    u = bytes.fromhex("e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c")
    assert sealbox.x25519(scalar, u).hex() == (
        "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"
    )
    alice = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    assert sealbox.public_key(alice).hex() == (
        "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    )
    shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    assert sealbox.x25519(alice, sealbox.public_key(bob)).hex() == shared
    assert sealbox.x25519(bob, sealbox.public_key(alice)).hex() == shared


def test_seal_opens_only_with_its_key_and_untouched():
    key, other = os.urandom(32), os.urandom(32)
    data = b"API_KEY=s3cr3t\n" * 100_000  # spans more than one key-stream block
    blob = sealbox.seal(sealbox.public_key(key), data)
    assert b"s3cr3t" not in blob and sealbox.unseal(key, blob) == data
    assert sealbox.seal(sealbox.public_key(key), data) != blob  # a new ephemeral key each time
    with pytest.raises(ValueError, match="another key"):
        sealbox.unseal(other, blob)
    flipped = bytearray(blob)
    flipped[100] ^= 1
    with pytest.raises(ValueError):
        sealbox.unseal(key, bytes(flipped))
    with pytest.raises(ValueError, match="not a sealed input"):
        sealbox.unseal(key, data)
    assert sealbox.unseal(key, sealbox.seal(sealbox.public_key(key), b"")) == b""


def test_machine_side_runs_on_the_standard_library_alone(tmp_path):
    key = tmp_path / ".trainctl" / "input.key"

    def machine(*args: str, input: bytes = b"") -> subprocess.CompletedProcess:
        # -I: no user site, no environment: what the script imports is the stdlib's
        return subprocess.run(
            [sys.executable, "-I", "-c", sealbox_source(), *args, str(key)],
            input=input,
            capture_output=True,
        )

    assert machine("open").returncode == 4  # no key yet
    made = machine("keygen")
    assert made.returncode == 0, made.stderr
    public = bytes.fromhex(made.stdout.decode().strip())
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert machine("keygen").stdout == made.stdout  # made once, kept
    opened = machine("open", input=sealbox.seal(public, b"spec\0\xff"))
    assert opened.returncode == 0 and opened.stdout == b"spec\0\xff"
    assert (
        machine("open", input=sealbox.seal(sealbox.public_key(os.urandom(32)), b"x")).returncode
        == 3
    )
