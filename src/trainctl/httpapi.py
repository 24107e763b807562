"""A small JSON-over-HTTP client shared by the providers that speak HTTP APIs.

``JsonApi`` sends JSON to one base URL with a Bearer key and returns the decoded
reply. It retries what is safe to retry and turns every failure into one clear
``TrainctlError``:

- 429 is retried after ``Retry-After`` (or an exponential, jittered backoff); the
  server refused the request, so this is safe even for a create.
- 5xx answers, timeouts and dropped connections are retried with exponential
  backoff and full jitter when the request is idempotent (GET, PUT, DELETE, or
  ``idempotent=True``). For a request that is not (a POST that creates
  something) the server may have acted on it, so it is never repeated blindly:
  ``recover`` is asked first (e.g. "look the pod up by its name") and its
  answer is used when it finds what the request made; only when it finds
  nothing is the request sent again. Without ``recover`` such a failure is
  raised as an ``OperationFailed`` saying the outcome is unknown.
- A connection that could not be opened at all is always retried: nothing
  reached the server.
- 401 and 403 raise ``CredentialsError`` (exit 4) with the fix as its hint, unless
  the caller names 403 in ``not_credentials`` (RunPod's createPod answers 403 when
  the account cannot use a GPU pool: the key is fine).
- A success whose body is not JSON (an HTML page from a proxy, a cut-off body) is
  an error; for a request that may have acted (not idempotent) it is an unknown
  outcome, settled like a 5xx: ``recover`` is asked, and without an answer from it
  ``ResourceLeft`` says the request may have taken effect.
- Every other error status raises ``ApiError`` (with ``status`` and the body's
  message in one line); callers map the statuses that mean something to them
  (404 -> ``NotFound``, 400 on create -> ``NoCapacity``, ...).

The key is only ever placed in the ``Authorization`` header: it is never part of
a message, a log line or the client's ``repr``, and any echo of it in an error
body is masked. httpx is imported when the first client is made.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import sdk
from .errors import CredentialsError, OperationFailed, ResourceLeft, TrainctlError

log = logging.getLogger(__name__)

Sleep = Callable[[float], None]

#: statuses worth retrying besides 429
RETRY_STATUSES = frozenset({500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class ApiError(OperationFailed):
    """The API answered with an error status (other than 401/403)."""

    kind = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        detail: str = "",
        body: Any = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.detail = detail  # the server's own explanation, one line
        self.body = body  # the decoded error body (dict, list, str or None)


class JsonApi:
    """JSON requests to one API.

    ``service`` names the API in messages ("RunPod"); ``credentials_hint`` tells
    the user how to fix a rejected key. ``sleep`` and ``rng`` are injectable so
    that tests of retries run instantly and deterministically; ``transport`` is
    passed to httpx (tests use ``httpx.MockTransport``).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        service: str,
        credentials_hint: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_retry_after: float = 120.0,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        transport: Any = None,
    ) -> None:
        httpx = sdk.require("httpx", "runpod,lyceum")

        self.base_url = base_url.rstrip("/")
        self.service = service
        self.credentials_hint = credentials_hint
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._secret = api_key or ""
        all_headers = {"Accept": "application/json", "User-Agent": "trainctl"}
        all_headers.update(headers or {})
        if api_key:
            all_headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(
            base_url=self.base_url, headers=all_headers, timeout=timeout, transport=transport
        )

    def __repr__(self) -> str:
        return f"JsonApi({self.service} at {self.base_url})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> JsonApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests -------------------------------------------------------------

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json=body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PUT", path, json=body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Any:
        return self.request("PATCH", path, json=body, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        recover: Callable[[], Any] | None = None,
        timeout: float | None = None,
        not_credentials: frozenset[int] = frozenset(),
    ) -> Any:
        """Send one request (retrying as the module says) and return the decoded
        JSON reply, or ``None`` for an empty one (204)."""
        import httpx

        method = method.upper()
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS
        what = f"{self.service} {method} {path}"
        kw: dict[str, Any] = {"params": params}
        if json is not None:
            kw["json"] = json
        if timeout is not None:
            kw["timeout"] = timeout
        attempt = 0
        while True:
            attempt += 1
            last = attempt >= self.max_attempts
            try:
                resp = self._client.request(method, path, **kw)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                # nothing reached the server: always safe to try again
                if last:
                    raise OperationFailed(
                        f"{what}: could not connect to {self.base_url} "
                        f"after {attempt} attempts ({self._mask(type(e).__name__)})"
                    ) from None
                self._pause(attempt, None, what, "could not connect")
                continue
            except httpx.TransportError as e:
                outcome = self._uncertain(what, type(e).__name__, idempotent, recover, last)
                if outcome is not _RETRY:
                    return outcome
                self._pause(attempt, None, what, type(e).__name__)
                continue

            status = resp.status_code
            if status < 400:
                try:
                    return self._decode(resp, what)
                except OperationFailed as e:
                    if idempotent:
                        raise
                    return self._unreadable(what, e.message, recover)
            if status in (401, 403) and status not in not_credentials:
                raise self._credentials_error(resp)
            if status == 429:
                retry_after = _retry_after(resp.headers.get("Retry-After"))
                if last or (retry_after or 0) > self.max_retry_after:
                    wait = f"; try again in {retry_after:.0f} s" if retry_after else ""
                    raise self._api_error(resp, what, hint=f"rate limited{wait}")
                self._pause(attempt, retry_after, what, "429 rate limited")
                continue
            if status in RETRY_STATUSES:
                if last and idempotent:
                    raise self._api_error(resp, what, hint=f"gave up after {attempt} attempts")
                outcome = self._uncertain(what, f"HTTP {status}", idempotent, recover, last)
                if outcome is not _RETRY:
                    return outcome
                self._pause(attempt, None, what, f"HTTP {status}")
                continue
            raise self._api_error(resp, what)

    # --- helpers --------------------------------------------------------------

    def _uncertain(
        self,
        what: str,
        why: str,
        idempotent: bool,
        recover: Callable[[], Any] | None,
        last: bool,
    ) -> Any:
        """The request may or may not have been acted on. Return ``_RETRY`` to
        send it again, or the value to hand back instead."""
        if idempotent:
            if last:
                raise OperationFailed(f"{what}: {why}, gave up after {self.max_attempts} attempts")
            return _RETRY
        if recover is None:
            raise ResourceLeft(
                f"{what}: {why}; the request may or may not have taken effect, "
                "so it was not repeated"
            )
        found = _look_up(recover, f"{what}: {why}")
        if found is not None:
            log.info("%s: %s, but the result was found; not repeating it", what, why)
            return found
        if last:
            raise ResourceLeft(
                f"{what}: {why}, gave up after {self.max_attempts} attempts; "
                "it may have taken effect"
            )
        return _RETRY

    def _unreadable(self, what: str, why: str, recover: Callable[[], Any] | None) -> Any:
        """A request that may have acted answered with something unreadable."""
        found = _look_up(recover, why) if recover is not None else None
        if found is not None:
            log.info("%s: %s, but the result was found", what, why)
            return found
        raise ResourceLeft(f"{why}; the request may have taken effect, so it was not repeated")

    def _pause(self, attempt: int, retry_after: float | None, what: str, why: str) -> None:
        if retry_after is not None:
            # honour the server's wait, plus a little jitter so clients spread out
            delay = retry_after + self._rng.uniform(0, self.backoff)
        else:
            delay = self._rng.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
        log.info("%s: %s; retrying in %.1f s (attempt %d)", what, why, delay, attempt + 1)
        self._sleep(delay)

    def _decode(self, resp: Any, what: str) -> Any:
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise OperationFailed(
                f"{what}: the reply is not JSON ({self._mask(resp.text[:120])!r})"
            ) from None

    def _credentials_error(self, resp: Any) -> CredentialsError:
        detail = self._mask(error_detail(resp))
        verb = "rejected the API key" if resp.status_code == 401 else "refused access with this key"
        err = CredentialsError(
            f"{self.service} {verb} ({resp.status_code}{': ' + detail if detail else ''})",
            hint=self.credentials_hint,
        )
        err.status = resp.status_code
        return err

    def _api_error(self, resp: Any, what: str, hint: str | None = None) -> ApiError:
        detail = self._mask(error_detail(resp))
        body = _body(resp)
        return ApiError(
            f"{what} failed: {resp.status_code}{' ' + detail if detail else ''}",
            status=resp.status_code,
            detail=detail,
            body=body,
            hint=hint,
        )

    def _mask(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text


_RETRY = object()


def _body(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text or None


def error_detail(resp: Any) -> str:
    """The server's explanation of an error status, on one line.

    Understands RFC 9457 problem documents (``title``, ``detail``, ``errors``),
    FastAPI (``detail`` as a string or a list of ``{loc, msg}``), ``error`` and
    ``message`` fields, GraphQL ``errors`` lists, and falls back to the text."""
    body = _body(resp)
    if isinstance(body, dict):
        parts: list[str] = []
        detail = body.get("detail")
        if isinstance(detail, list):
            parts.extend(_item_text(d) for d in detail)
        elif detail:
            parts.append(str(detail))
        for key in ("error", "message"):
            if not parts and isinstance(body.get(key), str | dict):
                parts.append(_item_text(body[key]))
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            parts.append("; ".join(_item_text(e) for e in errors[:5]))
        if not parts and body.get("title"):
            parts.append(str(body["title"]))
        text = ": ".join(p for p in parts if p)
    elif isinstance(body, list):
        text = "; ".join(_item_text(e) for e in body[:5])
    else:
        text = str(body or "")
    return " ".join(text.split())[:400]


def _item_text(item: Any) -> str:
    if isinstance(item, dict):
        msg = item.get("msg") or item.get("message") or item.get("detail")
        loc = item.get("loc") or item.get("path")
        if msg and loc:
            return f"{'.'.join(str(p) for p in loc)}: {msg}"
        if msg:
            return str(msg)
        return json.dumps(item, sort_keys=True)
    return str(item)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: an integer, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _look_up(recover: Callable[[], Any], said: str) -> Any:
    """``recover()``: the result of a request that may have acted, or None; a failed
    look-up is ``ResourceLeft``, since the request may have taken effect."""
    try:
        return recover()
    except TrainctlError as e:
        raise ResourceLeft(
            f"{said}; looking for its result failed too ({e.message}), and the request "
            "may have taken effect"
        ) from None
