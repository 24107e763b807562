"""Lyceum credentials: API keys, and the session tokens ``lyceum auth login`` stores.

``~/.lyceum/config.json`` holds ``api_key`` and ``refresh_token`` (among other keys
that belong to Lyceum's own client). An ``api_key`` starting ``lk_`` is an API key:
it never expires and is sent as it is. Anything else is a session token, a JWT that
expires; like lyceum-cli (see ``reference/lyceum/api.md``), trainctl reads its
``exp`` claim without verifying the signature and, when 300 s or less remain (or the
claim cannot be read), trades the refresh token for a new pair at
``POST /api/v2/external/auth/refresh`` (no Authorization header, 15 s timeout). The
new tokens are written back to the file atomically (a temporary file moved into
place, mode 0600, every other key kept), under a lock on the file's directory, so
two trainctl processes do not both spend a refresh token that works only once.
Neither token ever appears in a message or a log line.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ...errors import CredentialsError, OperationFailed, TrainctlError

API_KEY_PREFIX = "lk_"
#: lyceum-cli refreshes a session token with this many seconds or fewer left
REFRESH_MARGIN = 300.0
REFRESH_PATH = "/api/v2/external/auth/refresh"
REFRESH_TIMEOUT = 15.0
CREDENTIALS_HINT = (
    "set LYCEUM_API_KEY to an API key (lk_...) from the Lyceum dashboard, "
    "or run `lyceum auth login` to refresh ~/.lyceum/config.json"
)
LOGIN_HINT = "run `lyceum auth login` to log in again, or set LYCEUM_API_KEY to an API key (lk_...)"


def config_file() -> Path:
    """The file Lyceum's own client writes (``lyceum auth login``)."""
    return Path.home() / ".lyceum" / "config.json"


def read_config_file() -> dict[str, Any]:
    path = config_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise CredentialsError(
            f"cannot read {path}: {type(e).__name__}", hint=CREDENTIALS_HINT
        ) from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{path} does not hold a JSON object", hint=CREDENTIALS_HINT)
    return data


def is_api_key(token: str) -> bool:
    return token.startswith(API_KEY_PREFIX)


def expires_at(token: str) -> float | None:
    """The ``exp`` claim of a JWT, read without verifying it; ``None`` when the token
    is not a JWT with a numeric ``exp``."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def needs_refresh(token: str, now: float | None = None) -> bool:
    """True for a session token with 300 s or less left, or whose expiry is unreadable
    (lyceum-cli counts such a token as expired)."""
    if is_api_key(token):
        return False
    exp = expires_at(token)
    return exp is None or exp - (time.time() if now is None else now) <= REFRESH_MARGIN


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on ``directory`` (the config file itself is replaced, so its
    inode cannot carry the lock)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_config(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file (0600) in the same
    directory, flushed to disk, then moved over the old one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp makes the file 0600
            json.dump(data, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


Post = Callable[[dict[str, Any]], Any]


def refresh_session(path: Path, stale_token: str, post: Post) -> str:
    """A new session token in place of ``stale_token`` (about to expire, or refused
    by the server), stored in ``path``. ``post(body)`` sends the refresh request and
    returns the decoded answer. When another process refreshed since ``stale_token``
    was read (the file holds another token, not about to expire), that one is taken."""
    try:
        with _locked(path.parent):
            cfg = read_config_file()
            current = str(cfg.get("api_key") or "")
            refresh_token = cfg.get("refresh_token")
            if current and current != stale_token and not needs_refresh(current):
                return current
            if not isinstance(refresh_token, str) or not refresh_token:
                raise CredentialsError(
                    f"the Lyceum session token in {path} has expired and there is no "
                    "refresh_token to renew it",
                    hint=LOGIN_HINT,
                )
            try:
                answer = post({"refresh_token": refresh_token})
            except CredentialsError as e:
                raise _refused(path, e.message, refresh_token) from None
            except TrainctlError as e:
                if getattr(e, "status", 500) < 500:
                    raise _refused(path, e.message, refresh_token) from None
                raise OperationFailed(
                    f"could not refresh the Lyceum session token: "
                    f"{_mask(e.message, refresh_token)}",
                    hint="try again in a moment",
                ) from None
            access = answer.get("access_token") if isinstance(answer, dict) else None
            if not isinstance(access, str) or not access:
                raise CredentialsError(
                    "Lyceum answered the token refresh without an access_token",
                    hint=LOGIN_HINT,
                )
            new_refresh = answer.get("refresh_token")
            if not isinstance(new_refresh, str) or not new_refresh:
                new_refresh = None
            cfg["api_key"] = access
            if new_refresh:
                cfg["refresh_token"] = new_refresh
            write_config(path, cfg)
            return access
    except OSError as e:
        raise CredentialsError(
            f"cannot store the refreshed Lyceum session token in {path}: {e.strerror}",
            hint=LOGIN_HINT,
        ) from None


def _refused(path: Path, message: str, refresh_token: str) -> CredentialsError:
    return CredentialsError(
        f"Lyceum refused to refresh the session token of {path}: {_mask(message, refresh_token)}",
        hint=LOGIN_HINT,
    )


def _mask(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text
