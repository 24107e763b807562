"""Lyceum session tokens (``lyceum auth login``): refreshed as lyceum-cli refreshes
them, stored back in ``~/.lyceum/config.json``, never shown."""

from __future__ import annotations

import json
import logging
import stat
import time

import pytest

from cli_helpers import trainctl
from fake_lyceum import API, DEFAULT_ORG, FakeLyceum
from trainctl.errors import CredentialsError
from trainctl.providers.lyceum import LyceumProvider
from trainctl.providers.lyceum.auth import expires_at, needs_refresh


@pytest.fixture
def fake(monkeypatch, trainctl_home):
    with FakeLyceum() as f:
        monkeypatch.setenv("TRAINCTL_LYCEUM_API_URL", f.url)
        trainctl_home.mkdir(parents=True, exist_ok=True)
        # its VMs reach no machine: no guard could be set up there
        (trainctl_home / "config.toml").write_text(
            "[providers.lyceum]\npoll_interval = 0.05\nready_timeout = 20\n"
            '[guard]\nidle_stop = "never"\n'
        )
        yield f


@pytest.fixture
def config(tmp_path):
    """``~/.lyceum/config.json`` of the user (HOME is set by conftest)."""
    return tmp_path / "user-home" / ".lyceum" / "config.json"


def log_in(fake: FakeLyceum, config, ttl: float) -> tuple[str, str]:
    """What `lyceum auth login` leaves behind, with a token that expires in ``ttl``."""
    token, refresh = fake.issue_session(ttl, org=None)
    config.parent.mkdir(exist_ok=True)
    config.write_text(
        json.dumps(
            {
                "api_key": token,
                "base_url": fake.url,
                "refresh_token": refresh,
                "dashboard_url": "https://dashboard.lyceum.technology",
                "active_org_slug": DEFAULT_ORG,
                "code_model": "kept-as-is",
            }
        )
    )
    config.chmod(0o644)  # as lyceum-cli leaves it; trainctl's rewrite is 0600
    return token, refresh


def api_calls(fake: FakeLyceum) -> list[tuple[str, int, str]]:
    """(path, status, token sent) of every request but the refreshes."""
    return [
        (r.path.removeprefix(API), r.status, r.headers.get("authorization", ""))
        for r in fake.requests
        if not r.path.endswith("/auth/refresh")
    ]


def test_exp_is_read_without_verifying(fake):
    token, _ = fake.issue_session(200)
    assert expires_at(token) == pytest.approx(time.time() + 200, abs=2)
    assert needs_refresh(token)  # 200 s left: within lyceum-cli's 300 s
    assert not needs_refresh(fake.issue_session(3600)[0])
    assert not needs_refresh("lk_anything")  # API keys never expire
    assert needs_refresh("not.a-jwt")  # unreadable: counted as expired, as lyceum-cli does


def test_token_with_200_s_left_is_refreshed_before_use(fake, config):
    old, old_refresh = log_in(fake, config, ttl=200)
    provider = LyceumProvider(backoff=0.01)
    assert provider.list_resources() == []
    (refresh,) = fake.refreshes()
    assert refresh.body == {"refresh_token": old_refresh}
    assert "authorization" not in refresh.headers
    stored = json.loads(config.read_text())
    assert stored["api_key"] != old and not needs_refresh(stored["api_key"])
    assert stored["refresh_token"] not in (old_refresh, None)
    # the old token was never sent: the refreshed one went out first time
    assert api_calls(fake) == [("/vms/list", 200, f"Bearer {stored['api_key']}")]
    # other keys kept, the file private, nothing left beside it
    assert {k: stored[k] for k in ("base_url", "dashboard_url", "active_org_slug")} == {
        "base_url": fake.url,
        "dashboard_url": "https://dashboard.lyceum.technology",
        "active_org_slug": DEFAULT_ORG,
    }
    assert stored["code_model"] == "kept-as-is"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert [p.name for p in config.parent.iterdir()] == ["config.json"]
    # a second provider (the next command) takes the stored token as it is
    LyceumProvider(backoff=0.01).list_resources()
    assert len(fake.refreshes()) == 1


def test_refused_token_gets_one_refresh_and_the_request_again(fake, config):
    old, _ = log_in(fake, config, ttl=3600)
    fake.sessions[old].exp = time.time() - 1  # expired on the server, whatever exp says
    provider = LyceumProvider(backoff=0.01)
    assert provider.list_resources() == []
    new = json.loads(config.read_text())["api_key"]
    assert api_calls(fake) == [
        ("/vms/list", 401, f"Bearer {old}"),
        ("/vms/list", 200, f"Bearer {new}"),
    ]
    assert len(fake.refreshes()) == 1


def test_a_server_that_keeps_refusing_is_asked_once_more_only(fake, config):
    old, _ = log_in(fake, config, ttl=3600)
    fake.fail_next(401, 5, path_contains="/vms/list")
    with pytest.raises(CredentialsError) as e:
        LyceumProvider(backoff=0.01).list_resources()
    assert "lyceum auth login" in e.value.hint
    assert [status for _, status, _ in api_calls(fake)] == [401, 401]
    assert len(fake.refreshes()) == 1


def test_a_403_is_not_taken_for_an_expired_token(fake, config):
    """A 403 refuses rights, not the token: no refresh spends the refresh token."""
    old, _ = log_in(fake, config, ttl=3600)
    fake.fail_next(403, 1, path_contains="/vms/list")
    with pytest.raises(CredentialsError):
        LyceumProvider(backoff=0.01).list_resources()
    assert [status for _, status, _ in api_calls(fake)] == [403]
    assert fake.refreshes() == []
    assert json.loads(config.read_text())["api_key"] == old


def test_refresh_answer_without_a_new_refresh_token_keeps_the_old_one(fake, config):
    _, old_refresh = log_in(fake, config, ttl=10)
    fake.refresh_answers_token = False
    LyceumProvider(backoff=0.01).list_resources()
    assert json.loads(config.read_text())["refresh_token"] == old_refresh


def test_api_keys_are_sent_as_they_are(fake, config):
    config.parent.mkdir()
    config.write_text(json.dumps({"api_key": "lk_fake_0123456789abcdef", "base_url": fake.url}))
    before = config.read_text()
    LyceumProvider(backoff=0.01).list_resources()
    assert fake.refreshes() == [] and config.read_text() == before


def test_failed_refresh_exits_4_with_the_login_hint(fake, config):
    old, refresh = log_in(fake, config, ttl=100)
    del fake.refresh_tokens[refresh]  # revoked, or spent elsewhere
    before = config.read_text()
    r = trainctl("create", "--provider", "lyceum", "--gpu", "A100:1", "-n", "late")
    assert r.code == 4, r.err
    assert fake.creates() == [] and trainctl("list", "--json").json()["resources"] == []
    assert "refresh" in r.err and "lyceum auth login" in r.err
    assert "Traceback" not in r.err and len(r.err.strip().splitlines()) <= 2
    assert config.read_text() == before  # nothing stored on a refused refresh
    assert old not in r.out + r.err and refresh not in r.out + r.err


def test_no_token_in_output_or_logs(fake, config, caplog):
    old, old_refresh = log_in(fake, config, ttl=200)
    with caplog.at_level(logging.DEBUG):
        provider = LyceumProvider(backoff=0.01, poll_interval=0.02)
        check = provider.check()
        fake.sessions[json.loads(config.read_text())["api_key"]].exp = 0  # force a 401
        listed = provider.list_resources()
    stored = json.loads(config.read_text())
    secrets = {old, old_refresh, stored["api_key"], stored["refresh_token"]}
    assert check.usable and listed == []
    created = trainctl("--debug", "create", "-p", "lyceum", "--gpu", "A100:1", "-n", "tok")
    assert created.code == 0, created.err
    gone = trainctl("--debug", "terminate", "tok", "-y")
    assert gone.code == 0, gone.err
    stored = json.loads(config.read_text())
    secrets |= {stored["api_key"], stored["refresh_token"]}
    seen = [repr(provider), repr(provider.credentials), check.detail, caplog.text]
    seen += [created.out, created.err, gone.out, gone.err]
    assert not [s for s in seen for secret in secrets if secret in s]


def test_a_token_another_process_refreshed_is_taken_not_refreshed_again(fake, config):
    log_in(fake, config, ttl=100)
    first, second = LyceumProvider(backoff=0.01), LyceumProvider(backoff=0.01)
    assert first.credentials.api_key == second.credentials.api_key  # both read the old one
    first.list_resources()
    second.list_resources()  # its refresh token was spent by the first: it reads the file
    assert len(fake.refreshes()) == 1
    stored = json.loads(config.read_text())["api_key"]
    assert second.credentials.api_key == first.credentials.api_key == stored
