"""Sealed command input for SSM: readable only by the machine it is meant for.

A command's input (a job spec carries the user's environment, secrets included)
travels through the staging bucket. If trainctl dies between uploading it and
deleting it (``kill -9``), the object stays until the bucket's lifecycle rule
removes it, a day later. So the input is sealed to a key pair that the machine made
for itself: the private key never leaves the machine (``~/.trainctl/input.key``,
mode 0600, gone with the machine's disk), the client only ever sees the public key,
and a leftover object is useless to anyone who can read the bucket, and to the
account's other machines. Nothing secret goes through SSM's command history either:
the public key comes back as command output, the input never does.

The construction uses only standard primitives, since this file also runs on the
machine with nothing but Python 3.8's standard library (``python3 -c SOURCE``):
X25519 (RFC 7748) between an ephemeral key and the machine's key; SHA-512 of the
shared secret and both public keys gives an encryption key and a MAC key; SHAKE-256
in counter mode is the key stream; HMAC-SHA256 over the ephemeral key and the
ciphertext authenticates it (encrypt-then-MAC). The X25519 here is not constant
time, which matters for a long-lived key only against an attacker timing the
machine's own decryptions, which never answer anyone.

On the machine: ``keygen PATH`` makes the key pair once and prints the public key
(hex); ``open PATH`` reads a sealed blob on stdin and writes the input to stdout
(exit 3 when the blob was sealed to another key, 4 when there is no key).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sys

MAGIC = b"TCSB1"
_P = 2**255 - 19
_A24 = 121665
_BLOCK = 1 << 20


def x25519(scalar: bytes, u: bytes) -> bytes:
    """RFC 7748's X25519 function (Montgomery ladder)."""
    k = bytearray(scalar)
    k[0] &= 248
    k[31] &= 127
    k[31] |= 64
    n = int.from_bytes(bytes(k), "little")
    x1 = int.from_bytes(u, "little") & ((1 << 255) - 1)
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in range(254, -1, -1):
        bit = (n >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % _P, (x2 - z2) % _P
        aa, bb = a * a % _P, b * b % _P
        e = (aa - bb) % _P
        c, d = (x3 + z3) % _P, (x3 - z3) % _P
        da, cb = d * a % _P, c * b % _P
        x3 = (da + cb) ** 2 % _P
        z3 = x1 * (da - cb) ** 2 % _P
        x2 = aa * bb % _P
        z2 = e * (aa + _A24 * e) % _P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, _P - 2, _P) % _P).to_bytes(32, "little")


def public_key(private: bytes) -> bytes:
    return x25519(private, (9).to_bytes(32, "little"))


def _keys(shared: bytes, ephemeral: bytes, recipient: bytes) -> tuple[bytes, bytes]:
    if shared == bytes(32):
        raise ValueError("the public key is not a usable X25519 key")
    material = hashlib.sha512(b"trainctl-sealbox-v1" + shared + ephemeral + recipient).digest()
    return material[:32], material[32:]


def _stream(key: bytes, data: bytes) -> bytes:
    """``data`` XOR the SHAKE-256 key stream of ``key`` (its own inverse)."""
    out = bytearray()
    for i in range(0, len(data), _BLOCK):
        chunk = data[i : i + _BLOCK]
        pad = hashlib.shake_256(key + (i // _BLOCK).to_bytes(8, "big")).digest(len(chunk))
        mixed = int.from_bytes(chunk, "big") ^ int.from_bytes(pad, "big")
        out += mixed.to_bytes(len(chunk), "big")
    return bytes(out)


def seal(recipient: bytes, data: bytes) -> bytes:
    """``data`` sealed to the holder of ``recipient``'s private key."""
    secret = os.urandom(32)
    ephemeral = public_key(secret)
    enc, mac = _keys(x25519(secret, recipient), ephemeral, recipient)
    body = _stream(enc, data)
    tag = hmac.new(mac, ephemeral + body, hashlib.sha256).digest()
    return MAGIC + ephemeral + body + tag


def unseal(private: bytes, blob: bytes) -> bytes:
    """What ``seal`` sealed to this key; ValueError for anything else."""
    if len(blob) < len(MAGIC) + 64 or not blob.startswith(MAGIC):
        raise ValueError("not a sealed input")
    ephemeral, body, tag = blob[5:37], blob[37:-32], blob[-32:]
    enc, mac = _keys(x25519(private, ephemeral), ephemeral, public_key(private))
    if not hmac.compare_digest(hmac.new(mac, ephemeral + body, hashlib.sha256).digest(), tag):
        raise ValueError("sealed to another key")
    return _stream(enc, body)


def _keygen(path: str) -> None:
    """Make the key pair once (mode 0600); print the public key."""
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(os.urandom(32).hex())
    with open(path) as f:
        print(public_key(bytes.fromhex(f.read().strip())).hex())


def _open(path: str) -> int:
    try:
        with open(path) as f:
            private = bytes.fromhex(f.read().strip())
    except (OSError, ValueError):
        sys.stderr.write("sealbox: this machine has no input key\n")
        return 4
    try:
        data = unseal(private, sys.stdin.buffer.read())
    except ValueError as e:
        sys.stderr.write(f"sealbox: {e}\n")
        return 3
    sys.stdout.buffer.write(data)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["keygen"]:
        _keygen(sys.argv[2])
    elif sys.argv[1:2] == ["open"]:
        sys.exit(_open(sys.argv[2]))
    else:
        sys.exit("usage: sealbox keygen|open PATH")
