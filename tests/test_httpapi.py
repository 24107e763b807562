"""The shared JSON client: retries, errors, and the key kept out of sight."""

from __future__ import annotations

import logging
import random

import httpx
import pytest

from trainctl.errors import CredentialsError, OperationFailed, ResourceLeft
from trainctl.httpapi import ApiError, JsonApi, error_detail

KEY = "rpa_SECRET_KEY_123"


class Script:
    """A MockTransport handler answering from a list of steps, recording requests."""

    def __init__(self, *steps):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        return step


def api(script: Script, sleeps: list[float] | None = None, **kw) -> JsonApi:
    return JsonApi(
        "http://api.test/",
        KEY,
        service="Test",
        credentials_hint="set TEST_KEY",
        transport=httpx.MockTransport(script),
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
        rng=random.Random(1),
        **kw,
    )


def ok(body=None, status=200, **kw):
    return httpx.Response(status, json=body, **kw) if body is not None else httpx.Response(status)


def problem(status, detail, **kw):
    body = {"title": "Error", "status": status, "detail": detail}
    return httpx.Response(status, json=body, **kw)


def test_json_round_trip_with_bearer_key():
    s = Script(ok({"a": 1}))
    assert api(s).post("/v2/things", {"x": [1, 2]}) == {"a": 1}
    req = s.requests[0]
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.url == "http://api.test/v2/things"
    assert req.read() == b'{"x":[1,2]}'


def test_204_is_none():
    assert api(Script(ok(status=204))).delete("/v2/x") is None


def test_429_honours_retry_after_then_succeeds():
    sleeps: list[float] = []
    s = Script(
        problem(429, "slow down", headers={"Retry-After": "3"}),
        problem(429, "slow down", headers={"Retry-After": "2"}),
        ok({"done": True}),
    )
    assert api(s, sleeps).post("/v2/create", {}) == {"done": True}
    assert len(s.requests) == 3  # 429 is safe to repeat even for a POST
    assert 3 <= sleeps[0] < 3.5 and 2 <= sleeps[1] < 2.5


def test_429_beyond_the_patience_bound_gives_up_with_the_wait():
    s = Script(problem(429, "quota", headers={"Retry-After": "3600"}))
    with pytest.raises(ApiError) as e:
        api(s).get("/v2/x")
    assert e.value.status == 429
    assert "3600 s" in str(e.value)
    assert len(s.requests) == 1


def test_5xx_backoff_is_exponential_bounded_and_jittered():
    sleeps: list[float] = []
    s = Script(problem(503, "busy"))
    with pytest.raises(ApiError) as e:
        api(s, sleeps, max_attempts=5, backoff=1.0, max_backoff=3.0).get("/v2/x")
    assert e.value.status == 503
    assert "gave up after 5 attempts" in str(e.value)
    assert len(s.requests) == 5 and len(sleeps) == 4
    caps = [1.0, 2.0, 3.0, 3.0]
    assert all(0 <= d <= c for d, c in zip(sleeps, caps, strict=True))
    assert len(set(sleeps)) == 4  # jittered, not fixed


def test_get_timeouts_are_retried():
    s = Script(httpx.ReadTimeout("slow"), httpx.ReadTimeout("slow"), ok({"fine": 1}))
    assert api(s).get("/v2/x") == {"fine": 1}
    assert len(s.requests) == 3


def test_connect_errors_are_retried_even_for_post():
    s = Script(httpx.ConnectError("refused"), ok({"id": "p1"}))
    assert api(s).post("/v2/pods", {}) == {"id": "p1"}


def test_unsafe_post_failure_is_not_repeated_without_recover():
    s = Script(problem(502, "bad gateway"), ok({"id": "p1"}))
    with pytest.raises(OperationFailed, match="not repeated"):
        api(s).post("/v2/pods", {})
    assert len(s.requests) == 1


def test_unsafe_post_uses_what_recover_finds():
    s = Script(httpx.RemoteProtocolError("dropped"), ok({"id": "dup"}))
    got = api(s).post("/v2/pods", {}, recover=lambda: {"id": "found"})
    assert got == {"id": "found"}
    assert len(s.requests) == 1


def test_unsafe_post_is_repeated_when_recover_finds_nothing():
    looked = []
    s = Script(problem(500, "oops"), ok({"id": "p1"}))
    got = api(s).post("/v2/pods", {}, recover=lambda: looked.append(1))
    assert got == {"id": "p1"} and looked == [1] and len(s.requests) == 2


def test_unsafe_post_asks_recover_on_the_last_attempt_too():
    """The server may act on the last attempt as on any other: the lookup decides."""
    looked = []

    def recover():
        looked.append(1)
        return {"id": "p"} if len(looked) == 3 else None

    s = Script(problem(502, "bad gateway"))
    got = api(s, max_attempts=3).post("/v2/pods", {}, recover=recover)
    assert got == {"id": "p"} and len(looked) == 3 and len(s.requests) == 3


def test_unsafe_post_outcome_unknown_on_the_last_attempt_is_resource_left():
    s = Script(problem(502, "bad gateway"))
    with pytest.raises(ResourceLeft, match="may have taken effect"):
        api(s, max_attempts=2).post("/v2/pods", {}, recover=lambda: None)


def test_idempotent_flag_allows_repeating_a_post():
    s = Script(problem(500, "oops"), ok({"ok": 1}))
    assert api(s).post("/v2/pods/p/action", {}, idempotent=True) == {"ok": 1}


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_is_a_credentials_error_without_the_key(status):
    s = Script(problem(status, f"bad token {KEY}"))
    with pytest.raises(CredentialsError) as e:
        api(s).get("/v2/pods")
    assert e.value.exit_code == 4
    assert e.value.hint == "set TEST_KEY"
    assert KEY not in str(e.value) and "***" in str(e.value)
    assert len(s.requests) == 1


def test_other_errors_are_one_line_with_status():
    body = {
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "Request validation failed.",
        "errors": ["$: additional properties 'bogus' not allowed", "$.disk: must be >= 1"],
    }
    s = Script(httpx.Response(422, json=body))
    with pytest.raises(ApiError) as e:
        api(s).post("/v2/pods", {"bogus": 1})
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("Test POST /v2/pods failed: 422 Request validation failed.")
    assert "bogus" in msg and "disk" in msg
    assert e.value.status == 422 and e.value.body == body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"detail": "Not Found"}, "Not Found"),
        (
            {"detail": [{"loc": ["body", "gpu"], "msg": "field required"}]},
            "body.gpu: field required",
        ),
        ({"error": "no credits"}, "no credits"),
        ({"errors": [{"message": "bid too low", "path": ["podRentInterruptable"]}]}, "bid too low"),
        ("plain\n  text", "plain text"),
    ],
)
def test_error_detail_shapes(body, expected):
    resp = (
        httpx.Response(400, json=body)
        if not isinstance(body, str)
        else httpx.Response(400, text=body)
    )
    assert expected in error_detail(resp)


def test_the_key_never_shows(caplog):
    caplog.set_level(logging.DEBUG)
    s = Script(problem(503, "x"), problem(500, f"echo {KEY}"))
    client = api(s, max_attempts=2)
    with pytest.raises(ApiError) as e:
        client.get("/v2/pods")
    assert KEY not in repr(client)
    assert KEY not in str(e.value) and KEY not in repr(e.value)
    assert KEY not in caplog.text
    assert "retrying" in caplog.text


def test_http_date_retry_after():
    from trainctl.httpapi import _retry_after

    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _retry_after("5") == 5.0
    assert _retry_after("soon") is None


HTML_PAGE = "<html><body><h1>502 Bad Gateway</h1>\n<p>cloudflare</p></body></html>"


@pytest.mark.parametrize(
    "reply",
    [
        httpx.Response(200, text=HTML_PAGE, headers={"Content-Type": "text/html"}),
        httpx.Response(
            201, content=b'{"id": "p1", "na', headers={"Content-Type": "application/json"}
        ),
    ],
    ids=["html", "cut-json"],
)
def test_an_unreadable_answer_to_a_create_is_an_unknown_outcome(reply):
    """The server may have acted: the lookup decides, and without a find the caller
    learns that something may be left (``ResourceLeft``), never "it failed"."""
    s = Script(reply)
    assert api(s).post("/v2/pods", {}, recover=lambda: {"id": "found"}) == {"id": "found"}
    with pytest.raises(ResourceLeft, match="not JSON.*may have taken effect"):
        api(Script(reply)).post("/v2/pods", {}, recover=lambda: None)
    with pytest.raises(ResourceLeft, match="may have taken effect"):
        api(Script(reply)).post("/v2/pods", {})

    def broken_lookup():
        raise OperationFailed("the list is down")

    with pytest.raises(ResourceLeft, match="looking for its result failed too"):
        api(Script(reply)).post("/v2/pods", {}, recover=broken_lookup)
    assert len(s.requests) == 1


def test_an_unreadable_answer_to_a_read_is_one_line():
    s = Script(httpx.Response(200, text=HTML_PAGE, headers={"Content-Type": "text/html"}))
    with pytest.raises(OperationFailed) as e:
        api(s).get("/v2/pods")
    assert not isinstance(e.value, ResourceLeft)
    assert "not JSON" in e.value.message and "\n" not in e.value.message


def test_a_403_the_caller_names_is_an_api_error_not_a_bad_key():
    s = Script(problem(403, "access denied"))
    with pytest.raises(ApiError) as e:
        api(s).post("/v2/pods", {}, not_credentials=frozenset({403}))
    assert e.value.status == 403 and e.value.detail == "access denied"
    assert not isinstance(e.value, CredentialsError)


def test_a_5xx_create_whose_lookup_fails_is_resource_left():
    def broken_lookup():
        raise OperationFailed("the list is down")

    s = Script(problem(502, "bad gateway"))
    with pytest.raises(ResourceLeft, match="looking for its result failed too"):
        api(s).post("/v2/pods", {}, recover=broken_lookup)
    assert len(s.requests) == 1
