"""The Lyceum Cloud provider against the fake Lyceum API (control plane)."""

from __future__ import annotations

import json
import logging
import re

import pytest

from fake_lyceum import API, DEFAULT_KEY, DEFAULT_ORG, FakeLyceum
from trainctl import sshkeys
from trainctl.errors import (
    BadInput,
    CapabilityError,
    CredentialsError,
    NoCapacity,
    NotFound,
    OperationFailed,
    ResourceLeft,
)
from trainctl.providers.lyceum import client, settings
from trainctl.providers.lyceum.provider import LyceumProvider, split_address
from trainctl.providers.lyceum.settings import LyceumSettings
from trainctl.remote.ssh import SSHRemote
from trainctl.types import CreateResourceOptions, GpuSpec, ResourceState


@pytest.fixture
def lyceum_home(tmp_path):
    """The user's home (set by conftest), where Lyceum's client keeps its config."""
    return tmp_path / "user-home"


@pytest.fixture
def fake(monkeypatch):
    with FakeLyceum() as f:
        monkeypatch.setenv("TRAINCTL_LYCEUM_API_URL", f.url)
        monkeypatch.setenv("LYCEUM_API_KEY", DEFAULT_KEY)
        monkeypatch.setenv("LYCEUM_ORG", DEFAULT_ORG)
        yield f


def make_provider(**kw) -> LyceumProvider:
    kw = {"poll_interval": 0.02, "ready_timeout": 5.0, "backoff": 0.01, **kw}
    return LyceumProvider(**kw)


@pytest.fixture
def provider(fake):
    return make_provider()


def opts(gpu: str | None = "A100:1", **kw) -> CreateResourceOptions:
    return CreateResourceOptions(gpu=GpuSpec.parse(gpu) if gpu else None, **kw)


def create_bodies(fake: FakeLyceum) -> list[dict]:
    return [r.body for r in fake.creates()]


# -- create -------------------------------------------------------------------------


def test_create_sends_what_api_md_describes(fake, provider):
    lines: list[str] = []
    st = provider.create_resource(opts("A100:2", name="exp1"), progress=lines.append)
    assert create_bodies(fake) == [
        {
            "user_public_key": sshkeys.public_key(),
            "hardware_profile": "a100",
            "instance_type": "on-demand",
            "display_name": "trainctl-exp1",
            "instance_specs": {"gpu_count": 2},
        }
    ]
    create = fake.creates()[0]
    assert create.headers["authorization"] == f"Bearer {DEFAULT_KEY}"
    assert all(r.headers.get("x-org-slug") == DEFAULT_ORG for r in fake.requests)
    assert st.state is ResourceState.RUNNING and st.raw_state == "ready"
    assert (st.name, st.gpu, st.gpu_count, st.spot) == ("exp1", "A100", 2, False)
    assert st.cost_per_hour == pytest.approx(2 * 1.79)
    assert st.ssh_user == "lyceum" and st.ssh_host and st.ssh_port > 22
    assert st.tags["trainctl-managed"] == "true"
    assert "2 x a100 on-demand at $3.58/h" in lines[0]
    assert f"Lyceum VM {st.id}: ready at {st.ssh_host}:{st.ssh_port}" in lines[-1]
    assert len(lines) >= 3  # at least one state before ready


def test_spot(fake, provider):
    st = provider.create_resource(opts("A100:2", name="cheap", spot=True))
    assert create_bodies(fake)[0]["instance_type"] == "spot"
    assert st.spot is True
    assert st.cost_per_hour == pytest.approx(2 * 0.99)
    est = provider.estimate_cost(opts("A100:2", spot=True), hours=3)
    assert est.total == pytest.approx(3 * 2 * 0.99) and est.spot


def test_spot_count_not_offered_falls_back_only_when_asked(fake, provider):
    with pytest.raises(NoCapacity, match="spot a100 VM with 4 GPU"):
        provider.create_resource(opts("A100:4", spot=True))
    assert fake.creates() == []
    st = provider.create_resource(opts("A100:4", spot=True, spot_fallback=True, name="fb"))
    assert create_bodies(fake)[0]["instance_type"] == "on-demand" and st.spot is False


def test_unknown_hardware_profile_lists_the_offers(fake, provider):
    with pytest.raises(BadInput) as e:
        provider.create_resource(opts("B200:1"))
    assert "no hardware profile 'B200'" in e.value.message
    assert "a100 on-demand (1/2/4/8 GPUs, $1.79/GPU-h)" in e.value.hint
    assert "h100" in e.value.hint and "cpu on-demand (no GPU, $0.12/h)" in e.value.hint
    assert fake.creates() == []


def test_other_spellings_of_a_model(fake, provider):
    st = provider.create_resource(opts("H100 SXM:1", name="sxm"))
    assert create_bodies(fake)[0]["hardware_profile"] == "h100" and st.gpu == "H100"


def test_known_profile_without_capacity(fake, provider):
    fake.variants = [v for v in fake.variants if v["hardware_profile"] != "h100"]
    with pytest.raises(NoCapacity, match="no h100 VM available right now"):
        provider.create_resource(opts("H100:1"))
    assert fake.creates() == []


def test_no_gpu_given(fake, provider):
    with pytest.raises(BadInput, match="--gpu"):
        provider.create_resource(opts(None))


def test_cpu_profile_by_instance_type_sends_no_gpu_count(fake, provider):
    st = provider.create_resource(opts(None, instance_type="cpu", name="c"))
    assert "instance_specs" not in create_bodies(fake)[0]
    assert st.gpu is None and st.gpu_count == 0


def test_max_price(fake, provider):
    with pytest.raises(NoCapacity, match=r"2 x a100 on Lyceum costs \$1.98/h spot, above"):
        provider.create_resource(opts("A100:2", spot=True, max_price=1.5))
    with pytest.raises(NoCapacity, match=r"1 x a100 on Lyceum costs \$1.79/h on-demand, above"):
        provider.create_resource(opts("A100:1", max_price=1.5))
    assert fake.creates() == []
    assert provider.create_resource(opts("A100:1", spot=True, max_price=1.5, name="ok")).spot


def test_spot_above_max_price_falls_back_to_on_demand_within_it(fake, provider):
    spot = next(v for v in fake.variants if v["instance_type"] == "spot")
    spot["price_per_hour"] = 2.5  # dearer than on-demand ($1.79) for once
    st = provider.create_resource(opts("A100:1", spot=True, spot_fallback=True, max_price=2.0))
    assert create_bodies(fake)[0]["instance_type"] == "on-demand" and not st.spot


@pytest.mark.parametrize(
    ("gpu", "first"),
    [
        ("A100:1", r"1 x a100 on Lyceum costs \$0.99/h spot, above --max-price \$0.50/h"),
        ("A100:4", r"Lyceum Cloud offers no spot a100 VM with 4 GPU\(s\) right now"),
    ],
)
def test_on_demand_fallback_above_max_price_is_refused(fake, provider, gpu, first):
    with pytest.raises(NoCapacity) as e:
        provider.create_resource(opts(gpu, spot=True, spot_fallback=True, max_price=0.5))
    n = int(gpu.split(":")[1])
    assert re.fullmatch(
        rf"spot: {first}; the on-demand fallback: {n} x a100 on Lyceum "
        rf"costs \${n * 1.79:.2f}/h on-demand, above --max-price \$0.50/h",
        e.value.message,
    )
    assert f"--max-price {n * 1.79:.2f} or more" in e.value.hint
    assert fake.creates() == []


def test_duplicate_name_is_refused(fake, provider):
    provider.create_resource(opts(name="twin"))
    with pytest.raises(BadInput, match="trainctl-twin already exists"):
        provider.create_resource(opts(name="twin"))
    assert len(fake.creates()) == 1


def test_unsupported_options_refused_before_any_request(fake, provider):
    with pytest.raises(BadInput, match="--host"):
        provider.create_resource(opts(extra={"host": "me@box"}))
    with pytest.raises(BadInput, match="region"):
        provider.create_resource(opts(region="eu-west"))
    assert fake.requests == []


def test_tags_are_refused_before_any_request(fake, provider):
    with pytest.raises(CapabilityError, match=r"cannot tag machines \(--tag\)"):
        provider.create_resource(opts(name="tagged", tags={"team": "ml"}))
    assert fake.requests == []


def test_ssh_tidying_that_fails_is_a_warning_of_the_status(fake, provider, monkeypatch, caplog):
    def refuse(self):
        raise OperationFailed("known_hosts is read-only")

    monkeypatch.setattr(SSHRemote, "forget_host_key", refuse)
    with caplog.at_level(logging.WARNING):
        st = provider.create_resource(opts(name="tidy"))
        gone = provider.terminate(st.id)
    for status in (st, gone):
        assert status.warnings == [
            f"Lyceum VM {st.id}: could not tidy up SSH state: known_hosts is read-only"
        ]
    assert gone.state is ResourceState.TERMINATED and fake.live_vms() == []
    assert caplog.records == []


@pytest.mark.parametrize("outcome", ["failed", "error"])
def test_vm_that_fails_to_provision_is_deleted(fake, provider, outcome):
    fake.provision_outcome = outcome
    lines: list[str] = []
    with pytest.raises(OperationFailed) as e:
        provider.create_resource(opts(name="doomed"), progress=lines.append)
    vm_id = next(iter(fake.vms))
    assert f"Lyceum VM {vm_id} failed: Lyceum reports the VM as {outcome}" in str(e.value)
    assert "was terminated" in str(e.value)
    assert fake.live_vms() == []
    assert any(r.method == "DELETE" and r.path == f"{API}/vms/{vm_id}" for r in fake.requests)


def test_vm_never_ready_times_out_and_is_deleted(fake):
    fake.provision_outcome = "stuck"
    provider = make_provider(ready_timeout=0.3)
    with pytest.raises(OperationFailed, match=r"not ready after 0.3 s \(still provisioning\)"):
        provider.create_resource(opts(name="slow"))
    assert fake.live_vms() == [] and len(fake.vms) == 1


# -- errors and retries ----------------------------------------------------------------


def test_401_is_a_credentials_error_with_the_fix(fake, monkeypatch):
    monkeypatch.setenv("LYCEUM_API_KEY", "lk_revoked_secret_value")
    with pytest.raises(CredentialsError) as e:
        make_provider().create_resource(opts(name="x"))
    assert e.value.exit_code == 4
    assert "LYCEUM_API_KEY" in e.value.hint and "lyceum auth login" in e.value.hint
    assert "lk_revoked_secret_value" not in str(e.value)
    assert fake.vms == {}


def test_402_says_there_is_no_credit(fake, provider):
    fake.credit = False
    with pytest.raises(OperationFailed) as e:
        provider.create_resource(opts(name="broke"))
    assert "not enough credit" in e.value.message
    assert "add credit" in e.value.hint
    assert fake.vms == {}


def test_429_burst_on_create_makes_exactly_one_vm(fake, provider):
    fake.fail_next(429, 3, path_contains="/vms/create", retry_after="0")
    provider.create_resource(opts(name="busy"))
    assert len(fake.creates()) == 4
    assert len(fake.vms) == 1


def test_a_long_mixed_burst_is_ridden_out(fake, provider):
    fake.fail_next(503, 3, path_contains="/vms/create")
    fake.fail_next(429, 3, path_contains="/vms/create", retry_after="0")
    provider.create_resource(opts(name="stormy"))
    assert [r.status for r in fake.creates()] == [503] * 3 + [429] * 3 + [200]
    assert len(fake.vms) == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_burst_everywhere_makes_exactly_one_vm(fake, provider, status):
    fake.fail_next(status, 2, path_contains="/vms/create")
    fake.fail_next(status, 2, path_contains="/status")
    fake.fail_next(status, 1, path_contains="/availability")
    st = provider.create_resource(opts(name="flaky"))
    assert st.state is ResourceState.RUNNING
    assert len(fake.vms) == 1


@pytest.mark.parametrize("mode", ["drop", "delay"])
def test_lost_create_response_is_found_by_name_not_repeated(fake, mode):
    fake.lose_next_create(mode)
    fake.lost_delay = 1.0
    provider = make_provider(create_timeout=0.3)
    st = provider.create_resource(opts(name="lost"))
    assert len(fake.creates()) == 1
    assert [vm.vm_id for vm in fake.vms.values()] == [st.id]
    assert st.state is ResourceState.RUNNING


@pytest.mark.parametrize("acting", ["every", "last"])
def test_create_that_acts_then_answers_5xx_is_found_by_name(fake, provider, acting):
    """The server makes the VM, then answers 503: on every attempt, or only on the
    last one (the others refused with no VM made); the VM is found by its name."""
    attempts = client.MAX_ATTEMPTS
    if acting == "last":
        fake.fail_next(503, attempts - 1, path_contains="/vms/create")
    fake.fail_next(503, attempts, path_contains="/vms/create", acted=True)
    st = provider.create_resource(opts(name="acted"))
    assert [vm.vm_id for vm in fake.vms.values()] == [st.id]
    assert st.state is ResourceState.RUNNING and st.name == "acted"
    assert [r.status for r in fake.creates()] == [503] * (1 if acting == "every" else attempts)


@pytest.mark.parametrize("failure", ["lost-and-lookup-fails", "5xx-every-time"])
def test_create_that_cannot_be_settled_says_a_vm_may_exist(fake, provider, failure):
    if failure == "lost-and-lookup-fails":
        fake.lose_next_create("drop")
        fake.fail_next(503, 100, path_contains="/vms/list", after=1)  # after the name check
    else:
        fake.fail_next(503, 100, path_contains="/vms/create")
    with pytest.raises(ResourceLeft) as e:
        provider.create_resource(opts(name="unsure"))
    assert "could not create Lyceum VM trainctl-unsure" in e.value.message
    assert "may exist anyway" in e.value.hint
    assert len(fake.vms) == (1 if failure == "lost-and-lookup-fails" else 0)


def test_persistent_5xx_gives_up_with_a_clear_error(fake, provider):
    fake.fail_next(503, 100, path_contains="/vms/list")
    with pytest.raises(OperationFailed, match="503"):
        provider.list_resources()


# -- list, status, terminate ------------------------------------------------------------


def foreign_vm(fake: FakeLyceum) -> str:
    """A VM made outside trainctl (no trainctl- prefix)."""
    import httpx

    r = httpx.post(
        f"{fake.url}{API}/vms/create",
        headers={"Authorization": f"Bearer {DEFAULT_KEY}", "X-Org-Slug": DEFAULT_ORG},
        json={"user_public_key": sshkeys.public_key(), "display_name": "notebook"},
    )
    return r.json()["vm_id"]


def test_list_and_status_show_only_trainctl_vms_with_billing(fake, provider):
    mine = provider.create_resource(opts(name="mine"))
    other = foreign_vm(fake)
    listed = provider.list_resources()
    assert [r.id for r in listed] == [mine.id]
    st = provider.get_resource_status(mine.id)
    assert st.details["billed_usd"] >= 0 and st.details["uptime_seconds"] >= 0
    assert st.details["display_name"] == "trainctl-mine"
    assert st.launch_time is not None
    assert other in {vm.vm_id for vm in fake.live_vms()}


def test_a_vm_trainctl_did_not_make_is_not_found(fake, provider):
    other = foreign_vm(fake)
    for call in (provider.get_resource_status, provider.terminate, provider.connect):
        with pytest.raises(NotFound, match=rf"{other} \(notebook\) was not created by trainctl"):
            call(other)
    assert [vm.vm_id for vm in fake.live_vms()] == [other]
    assert not [r for r in fake.requests if r.method == "DELETE"]


@pytest.mark.parametrize("id_field", ["vm_id", "id"])
def test_list_entries_with_either_id_field(fake, provider, id_field):
    fake.list_id_field = id_field
    mine = provider.create_resource(opts(name="either"))
    assert [r.id for r in provider.list_resources()] == [mine.id]
    with pytest.raises(BadInput, match=rf"trainctl-either already exists \({mine.id}\)"):
        provider.create_resource(opts(name="either"))
    fake.lose_next_create("drop")
    found = provider.create_resource(opts(name="lost"))
    assert len(fake.creates()) == 2 and len(fake.vms) == 2
    assert found.id in fake.vms and found.name == "lost"


def test_list_entry_without_an_id_is_an_error_not_dropped(fake, provider):
    provider.create_resource(opts(name="anon"))
    fake.list_id_field = None
    with pytest.raises(OperationFailed, match="listed a VM without an id") as e:
        provider.list_resources()
    assert "trainctl-anon" in e.value.message
    with pytest.raises(OperationFailed, match="without an id"):
        provider.create_resource(opts(name="anon"))
    assert len(fake.creates()) == 1


def test_unknown_vm(fake, provider):
    with pytest.raises(NotFound):
        provider.get_resource_status("vm-000000000000")
    with pytest.raises(NotFound):
        provider.get_resource_status("../list")


def test_terminate_twice(fake, provider):
    st = provider.create_resource(opts(name="once"))
    first = provider.terminate(st.id)
    second = provider.terminate(st.id)
    assert first.state is second.state is ResourceState.TERMINATED
    deletes = [r for r in fake.requests if r.method == "DELETE"]
    assert len(deletes) == 1
    assert provider.terminate("vm-000000000000").state is ResourceState.TERMINATED
    assert provider.list_resources() == []


def test_volume_outliving_the_vm_is_warned_about(fake, provider):
    lines: list[str] = []
    st = provider.create_resource(opts(name="data", extra={"volume_gb": 50}), progress=lines.append)
    assert create_bodies(fake)[0]["new_volume"] == {"size_gb": 50}
    assert any("billed separately" in ln for ln in lines)
    gone = provider.terminate(st.id)
    vol = next(iter(fake.volumes))
    assert "keep billing" in gone.reason and vol in gone.reason and "50 GB" in gone.reason
    assert gone.details["detached_volumes"][0]["volume_id"] == vol
    assert [w for w in gone.warnings if "keep billing" in w and vol in w] == gone.warnings
    assert len(gone.warnings) == 1
    assert fake.volumes[vol]["attached_vm_id"] is None


@pytest.mark.parametrize("outcome", ["failed", "stuck"])
def test_failed_create_deletes_the_volume_it_made(fake, outcome):
    fake.provision_outcome = outcome
    provider = make_provider(ready_timeout=0.3)
    with pytest.raises(OperationFailed) as e:
        provider.create_resource(opts(name="gone", extra={"volume_gb": 20}))
    assert "was terminated" in e.value.message
    assert fake.live_vms() == [] and fake.volumes == {}
    deletes = [r for r in fake.requests if r.method == "DELETE" and "/storage/block/" in r.path]
    assert len(deletes) == 1


def test_failed_create_names_the_volume_it_could_not_delete(fake, provider):
    fake.provision_outcome = "error"
    fake.fail_next(500, 100, path_contains="/storage/block/")
    with pytest.raises(ResourceLeft) as e:
        provider.create_resource(opts(name="stuck-vol", extra={"volume_gb": 20}))
    vol = next(iter(fake.volumes))
    assert e.value.resource_id == next(iter(fake.vms))
    assert f"not its volume(s) {vol} (20 GB), which keep billing" in e.value.message
    assert "delete them in the Lyceum dashboard" in e.value.message
    assert fake.live_vms() == [] and fake.volumes[vol]["attached_vm_id"] is None


def test_bad_volume_size(fake, provider):
    with pytest.raises(BadInput, match="--volume-gb must be at least 1"):
        provider.create_resource(opts(extra={"volume_gb": 0}))


def test_ip_address_without_port(fake, provider):
    fake.ip_with_port = False
    st = provider.create_resource(opts(name="plain"))
    assert st.ssh_port == 22 and ":" not in st.ssh_host


@pytest.mark.parametrize(
    "text, expected",
    [
        ("203.0.113.7", ("203.0.113.7", 22)),
        ("203.0.113.7:2222", ("203.0.113.7", 2222)),
        ("vm1.lyceum.example:40022", ("vm1.lyceum.example", 40022)),
        ("[2001:db8::1]:2200", ("2001:db8::1", 2200)),
        ("2001:db8::1", ("2001:db8::1", 22)),
    ],
)
def test_split_address(text, expected):
    assert split_address(text) == expected


def test_unreadable_address():
    with pytest.raises(OperationFailed):
        split_address("host:ssh")


# -- credentials -----------------------------------------------------------------------


def write_lyceum_config(home, **values) -> None:
    d = home / ".lyceum"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps(values))


def test_credentials_from_lyceums_config_file(fake, monkeypatch, lyceum_home):
    for var in ("LYCEUM_API_KEY", "LYCEUM_ORG", "TRAINCTL_LYCEUM_API_URL"):
        monkeypatch.delenv(var)
    assert not LyceumProvider.credentials_present()
    write_lyceum_config(
        lyceum_home,
        api_key=DEFAULT_KEY,
        base_url=fake.url,
        refresh_token="rt_secret",
        dashboard_url="https://dashboard.example",
        active_org_slug=DEFAULT_ORG,
    )
    assert LyceumProvider.credentials_present()
    provider = make_provider()
    check = provider.check()
    assert check.usable and f"org {DEFAULT_ORG}" in check.detail
    assert "config.json" in check.detail and DEFAULT_KEY not in check.detail
    provider.create_resource(opts(name="cfg"))
    assert fake.creates()[0].headers["x-org-slug"] == DEFAULT_ORG


def test_environment_wins_over_the_config_file(fake, monkeypatch, lyceum_home):
    write_lyceum_config(
        lyceum_home, api_key="lk_stale", base_url="http://127.0.0.1:9", active_org_slug="other"
    )
    monkeypatch.setenv("LYCEUM_ORG", "personal")
    check = make_provider().check()
    assert check.usable and "org personal" in check.detail and "LYCEUM_API_KEY" in check.detail
    assert all(r.headers.get("x-org-slug") == "personal" for r in fake.requests)


def test_no_org_sends_no_org_header(fake, monkeypatch):
    monkeypatch.delenv("LYCEUM_ORG")
    assert make_provider().check().usable
    assert all("x-org-slug" not in r.headers for r in fake.requests)


def test_org_without_access_is_a_credentials_error(fake, monkeypatch):
    monkeypatch.setenv("LYCEUM_ORG", "not-mine")
    with pytest.raises(CredentialsError):
        make_provider().list_resources()


def test_no_credentials(monkeypatch):
    monkeypatch.delenv("LYCEUM_API_KEY", raising=False)
    assert not LyceumProvider.credentials_present()
    with pytest.raises(CredentialsError) as e:
        make_provider().list_resources()
    assert e.value.exit_code == 4 and "LYCEUM_API_KEY" in e.value.hint
    assert not make_provider().check().usable


def test_broken_config_file(lyceum_home, monkeypatch):
    (lyceum_home / ".lyceum").mkdir()
    (lyceum_home / ".lyceum" / "config.json").write_text("{not json")
    assert not LyceumProvider.credentials_present()
    with pytest.raises(CredentialsError, match="config.json"):
        make_provider().list_resources()


def test_the_key_never_shows(fake, monkeypatch, caplog):
    secret = "lk_live_do_not_print_0123456789"
    fake.api_keys[secret] = None
    monkeypatch.setenv("LYCEUM_API_KEY", secret)
    provider = make_provider()
    seen: list[str] = [repr(provider), repr(provider.credentials)]
    with caplog.at_level(logging.DEBUG):
        fake.fail_next(503, 1)
        st = provider.create_resource(opts(name="quiet", extra={"volume_gb": 5}))
        seen.append(json.dumps(st.to_dict()))
        seen.append(json.dumps(provider.terminate(st.id).to_dict()))
        seen.append(provider.check().detail)
        fake.credit = False
        for failing in (
            lambda: provider.create_resource(opts(name="q2")),
            lambda: provider.create_resource(opts("TPU:1")),
        ):
            with pytest.raises(Exception) as e:
                failing()
            seen.append(str(e.value))
    del fake.api_keys[secret]
    with pytest.raises(CredentialsError) as e:
        make_provider().list_resources()
    seen += [str(e.value), caplog.text]
    assert not [s for s in seen if secret in s]


# -- live prices -----------------------------------------------------------------------


def test_catalog_refresh_takes_lyceums_offers(fake):
    from trainctl import catalog
    from trainctl.catalog import refresh

    (result,) = refresh.refresh(["lyceum"])
    assert result.status == refresh.REFRESHED, result.detail
    a100 = catalog.offers(provider="lyceum", gpu="A100:2")
    assert [(o.offer_id, o.on_demand, o.spot) for o in a100] == [("a100", 3.58, 1.98)]
    assert not catalog.offers(provider="lyceum", gpu="A100:8", spot=True)


def test_catalog_refresh_with_a_rejected_key_fails_cleanly(fake, monkeypatch):
    from trainctl.catalog import refresh

    monkeypatch.setenv("LYCEUM_API_KEY", "lk_rejected_key_123")
    (result,) = refresh.refresh(["lyceum"])
    assert result.status == refresh.FAILED and "rejected the API key" in result.detail
    assert "lk_rejected_key_123" not in result.detail


# -- settings --------------------------------------------------------------------------


def write_settings(trainctl_home, text: str) -> None:
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text("[providers.lyceum]\n" + text)


def test_settings_defaults_config_table_and_environment(trainctl_home, monkeypatch):
    assert settings.load() == LyceumSettings(10.0, 900.0, None)
    write_settings(trainctl_home, 'poll_interval = 2\nready_timeout = 60.5\napi_url = "http://x"\n')
    assert settings.load() == LyceumSettings(2.0, 60.5, "http://x")
    monkeypatch.setenv("TRAINCTL_LYCEUM_API_URL", "http://127.0.0.1:8080/")
    assert settings.load().api_url == "http://127.0.0.1:8080"
    provider = LyceumProvider(ready_timeout=3.0)
    assert (provider.settings.poll_interval, provider.settings.ready_timeout) == (2.0, 3.0)


@pytest.mark.parametrize(
    "table, url, message",
    [
        ('poll_interval = "10"', "", r"\[providers.lyceum\] poll_interval must be a number"),
        ("ready_timeout = -1", "", r"\[providers.lyceum\] ready_timeout cannot be negative"),
        ("ready_timeout = true", "", r"ready_timeout must be a number, not True"),
        ("", "127.0.0.1:8080", r"must be an http:// or https:// URL, not '127.0.0.1:8080'"),
        ('api_url = "ftp://x"', "", r"\[providers.lyceum\] api_url\) must be an http"),
    ],
)
def test_bad_settings_are_bad_input(trainctl_home, monkeypatch, table, url, message):
    write_settings(trainctl_home, table + "\n")
    monkeypatch.setenv("TRAINCTL_LYCEUM_API_URL", url)
    with pytest.raises(BadInput, match=message):
        LyceumProvider()


def test_an_unknown_setting_is_a_warning_and_ignored(trainctl_home, caplog):
    write_settings(trainctl_home, "poll_intervall = 5\n")
    with caplog.at_level(logging.WARNING):
        assert LyceumProvider().settings == LyceumSettings()
    assert "[providers.lyceum] has no setting 'poll_intervall'" in caplog.text
