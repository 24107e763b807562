"""The RunPod provider's control plane against the fake RunPod API."""

from __future__ import annotations

import contextlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import ProviderConformance
from fake_runpod import GPUS, NO_CAPACITY, FakeRunPod
from trainctl import sshkeys
from trainctl.errors import (
    BadInput,
    CredentialsError,
    NoCapacity,
    NotFound,
    OperationFailed,
    ResourceLeft,
)
from trainctl.providers.runpod import gpus as runpod_gpus
from trainctl.providers.runpod.provider import DEFAULT_IMAGE, RunPodProvider, find_api_key
from trainctl.types import CreateResourceOptions, GpuSpec, ResourceState

USER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZXJzLW93bi1rZXktbm90LXJlYWwtYXQtYWxs me@laptop"


@pytest.fixture
def fake(fake_runpod):
    return fake_runpod


class Sleeps(list):
    """Records every requested pause and sleeps a token amount of it."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        time.sleep(min(seconds, 0.005))


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def provider(fake, sleeps):
    return RunPodProvider(
        ready_timeout=20, poll_interval=0.01, sleep=sleeps, http_options={"backoff": 0.01}
    )


def opts(gpu="RTX4090", **kw) -> CreateResourceOptions:
    kw.setdefault("name", "t1")
    return CreateResourceOptions(gpu=GpuSpec.parse(gpu), **kw)


def only_pod(fake: FakeRunPod) -> dict:
    assert len(fake.pods) == 1, fake.live_pods()
    return next(iter(fake.pods.values())).data


class TestRunPodConformance(ProviderConformance):
    """train / monitor / download / cancel for real, on pods backed by the SSH server."""

    @pytest.fixture
    def create_options(self):
        return opts("RTX4090", name="conformance")

    @pytest.fixture
    def foreign_id(self, fake):
        return fake.add_foreign_pod()


# --- create --------------------------------------------------------------------------


def test_create_waits_for_running_and_reports_the_ssh_endpoint(provider, fake):
    fake.ssh_keys = [USER_KEY]
    lines: list[str] = []
    st = provider.create_resource(opts("A100-80GB:2", name="exp1"), progress=lines.append)
    pod = only_pod(fake)
    assert st.id == pod["id"] and st.state is ResourceState.RUNNING
    assert pod["name"] == "trainctl-exp1" and st.name == "exp1"
    assert pod["gpu"] == {"id": "NVIDIA A100 80GB PCIe", "count": 2}
    assert pod["image"] == DEFAULT_IMAGE and pod["cloud"] == "SECURE"
    assert pod["ports"] == ["22/tcp"]
    assert pod["env"]["PUBLIC_KEY"].splitlines() == [sshkeys.public_key(), USER_KEY]
    direct = pod["ssh"]["direct"]
    assert (st.ssh_host, st.ssh_port, st.ssh_user) == (
        direct["host"],
        direct["port"],
        direct["username"],
    )
    assert st.gpu == "NVIDIA A100 80GB PCIe" and st.gpu_count == 2
    assert st.cost_per_hour == pytest.approx(2 * 1.64)
    assert st.spot is False
    text = "\n".join(lines)
    for state in ("PROVISIONING", "STARTING", "RUNNING"):
        assert f": {state} (" in text
    assert "ready: ssh" in lines[-1]


def test_options_reach_the_pod(provider, fake):
    provider.create_resource(
        opts(
            "RTX 3090",
            disk_gb=80,
            region="EU-RO-1",
            image="my/image:1",
            extra={"cloud": "community", "volume_gb": 20, "env": {"WANDB_MODE": "off"}},
        )
    )
    pod = only_pod(fake)
    assert pod["cloud"] == "COMMUNITY" and pod["disk"] == 80 and pod["image"] == "my/image:1"
    assert pod["dataCenterId"] == "EU-RO-1"
    assert pod["mounts"] == {"persistent": {"size": 20, "path": "/workspace"}}
    assert pod["env"]["WANDB_MODE"] == "off"


@pytest.mark.parametrize(
    ("gpu", "cloud", "expected"),
    [
        ("RTX4090", "secure", "NVIDIA GeForce RTX 4090"),
        ("rtx-4090", "secure", "NVIDIA GeForce RTX 4090"),
        ("a100_80gb", "secure", "NVIDIA A100 80GB PCIe"),
        ("A100-80GB:2", "secure", "NVIDIA A100 80GB PCIe"),  # the cheaper of two A100 80GB
        ("A100 SXM", "secure", "NVIDIA A100-SXM4-80GB"),
        ("NVIDIA A100-SXM4-80GB", "secure", "NVIDIA A100-SXM4-80GB"),
        ("H100", "secure", "NVIDIA H100 PCIe"),
        ("H100 SXM", "secure", "NVIDIA H100 80GB HBM3"),
        ("H100", "community", "NVIDIA H100 PCIe"),  # the SXM is not on community
        ("A6000", "community", "NVIDIA RTX A6000"),
    ],
)
def test_friendly_gpu_names(gpu, cloud, expected):
    assert runpod_gpus.resolve(GPUS, GpuSpec.parse(gpu), cloud)["id"] == expected


def test_gpu_count_beyond_the_cloud_maximum():
    with pytest.raises(BadInput, match=r"community cloud with 8 GPU\(s\)") as e:
        runpod_gpus.resolve(GPUS, GpuSpec.parse("H100:8"), "community")
    assert "--cloud secure" in e.value.hint


def test_unknown_gpu_lists_close_matches(provider, fake):
    with pytest.raises(BadInput) as e:
        provider.create_resource(opts("A1000"))
    assert e.value.exit_code == 2
    assert "unknown RunPod GPU 'A1000'" in str(e.value)
    assert "close matches:" in str(e.value) and "A100 PCIe" in str(e.value)
    assert fake.created == []


def test_nothing_like_it_lists_known_gpus():
    with pytest.raises(BadInput, match="known GPUs: A100 PCIe, A100 SXM, H100 PCIe"):
        runpod_gpus.resolve(GPUS, GpuSpec.parse("TPUv5"), "secure")


def test_the_catalog_is_fetched_once_and_cached(provider, fake):
    provider.estimate_cost(opts("H100"))
    provider.estimate_cost(opts("RTX4090"))
    RunPodProvider().estimate_cost(opts("A6000"))
    assert sum(1 for m, p, _ in fake.log if p == "/v2/catalog/gpus") == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (CreateResourceOptions(name="x"), "RunPod needs a GPU"),
        (opts(instance_type="g5.xlarge"), "cannot choose an instance type"),
        (opts(extra={"cloud": "moon"}), "--cloud must be one of secure, community, not 'moon'"),
        (opts(extra={"volume_gb": 5}), "at least 10 GB"),
        (opts(disk_gb=0), "bad disk size"),
        (opts(name="has space"), "bad name"),
        (opts(max_price=-1), "--max-price must be more than 0"),
        (opts(tags={"team": "x"}), r"cannot tag machines \(--tag\)"),
    ],
)
def test_bad_options_are_refused_before_any_request(provider, fake, options, message):
    with pytest.raises(BadInput, match=message):
        provider.create_resource(options)
    assert fake.log == []


def test_a_second_pod_with_the_same_name_is_refused(provider, fake):
    provider.create_resource(opts(name="same"))
    with pytest.raises(BadInput, match="trainctl-same already exists"):
        provider.create_resource(opts(name="same"))
    assert len(fake.created) == 1


def test_on_demand_above_max_price_is_no_offer(provider, fake):
    with pytest.raises(NoCapacity, match="above --max-price"):
        provider.create_resource(opts("H100:2", max_price=1.0))
    assert fake.created == []


# --- failures while creating -------------------------------------------------------


def test_no_capacity_is_the_apis_own_error(provider, fake):
    fake.knobs.no_capacity = True
    with pytest.raises(NoCapacity) as e:
        provider.create_resource(opts())
    assert NO_CAPACITY in str(e.value)
    assert fake.pods == {}


def test_pod_stuck_in_provisioning_is_terminated(provider, fake):
    fake.knobs.stuck = True
    provider.ready_timeout = 0.5
    with pytest.raises(OperationFailed) as e:
        provider.create_resource(opts())
    msg = str(e.value)
    assert "was not ready after 0.5 s (still PROVISIONING)" in msg
    assert "was terminated" in msg
    assert len(fake.created) == 1 and fake.pods == {}
    assert ("DELETE", f"/v2/pods/{fake.created[0]}", 204) in fake.log


def test_error_status_is_terminated_with_the_reason(provider, fake):
    fake.knobs.error_on_start = True
    with pytest.raises(OperationFailed) as e:
        provider.create_resource(opts())
    assert "in ERROR" in str(e.value) and "was terminated" in str(e.value)
    assert fake.pods == {}


def test_create_waits_until_sshd_lets_trainctl_in(provider, fake):
    fake.knobs.sshd_late_reads = 3
    lines: list[str] = []
    st = provider.create_resource(opts(), progress=lines.append)
    assert any("RUNNING, waiting for sshd" in ln for ln in lines)
    assert provider.connect(st.id).run(["true"]).ok


def test_sshd_that_never_lets_trainctl_in_is_terminated(provider, fake):
    fake.knobs.sshd_late_reads = 10**6
    provider.ready_timeout = 1.0
    with pytest.raises(OperationFailed) as e:
        provider.create_resource(opts())
    assert "still RUNNING, waiting for sshd" in str(e.value)
    assert "was terminated" in str(e.value)
    assert fake.pods == {}


def test_rejected_key_exits_4_without_showing_it(fake):
    p = RunPodProvider(api_key="rpa_WRONG_KEY_0123")
    with pytest.raises(CredentialsError) as e:
        p.create_resource(opts())
    assert e.value.exit_code == 4
    assert "RUNPOD_API_KEY" in e.value.hint
    assert "rpa_WRONG_KEY_0123" not in str(e.value)
    assert fake.created == []
    check = p.check()
    assert not check.usable and "rejected the API key" in check.detail


def test_bursts_of_429_and_5xx_are_retried_and_make_one_pod(provider, fake, sleeps):
    fake.knobs.retry_after = 2
    fake.fail_next("listGpuTypes", 503)
    fake.fail_next("listPods", 429, 502)
    fake.fail_next("createPod", 429, 429)
    fake.fail_next("getPod", 500, 504, 429)
    st = provider.create_resource(opts())
    assert st.state is ResourceState.RUNNING
    assert len(fake.created) == 1 and len(fake.pods) == 1
    assert sum(1 for s in sleeps if s >= 2) == 4  # each 429's Retry-After was honoured
    assert fake.knobs.faults == {"listGpuTypes": [], "listPods": [], "createPod": [], "getPod": []}


def test_a_5xx_on_create_looks_the_pod_up_before_retrying(provider, fake):
    fake.fail_next("createPod", 503)
    provider.create_resource(opts())
    assert len(fake.created) == 1
    posts = [s for m, p, s in fake.log if (m, p) == ("POST", "/v2/pods")]
    assert posts == [503, 201]


@pytest.mark.parametrize("spot", [False, True])
@pytest.mark.parametrize("acting", ["every", "last"])
def test_create_that_acts_then_answers_5xx_is_found_by_name(provider, fake, spot, acting):
    """The server makes the pod, then answers 503: on every attempt, or only on the
    last one (the others refused with no pod made); the pod is found by its name."""
    operation = "podRentInterruptable" if spot else "createPod"
    attempts = 5  # JsonApi's default
    if acting == "every":
        fake.fail_next(operation, *["act-503"] * attempts)
    else:
        fake.fail_next(operation, *[503] * (attempts - 1), "act-503")
    # with a bid (--max-price), the spot price is not asked for: every POST is a rent
    st = provider.create_resource(opts(name="acted", spot=spot, max_price=1.0))
    assert fake.created == [st.id] and len(fake.pods) == 1
    assert st.state is ResourceState.RUNNING and st.name == "acted" and st.spot is spot
    path = "/graphql" if spot else "/v2/pods"
    creates = [s for m, p, s in fake.log if (m, p) == ("POST", path)]
    assert creates == ([503] if acting == "every" else [503] * attempts)


def test_create_that_cannot_be_settled_is_a_resource_left(provider, fake):
    fake.fail_next("createPod", *[503] * 5)
    with pytest.raises(ResourceLeft, match="gave up after 5 attempts; it may have taken effect"):
        provider.create_resource(opts(name="unsure"))
    assert fake.pods == {}


def test_lost_create_response_is_found_by_name_not_repeated(provider, fake):
    fake.fail_next("createPod", "lose")
    st = provider.create_resource(opts(name="lost"))
    assert fake.created == [st.id]
    assert [s for m, p, s in fake.log if (m, p) == ("POST", "/v2/pods")] == [0]
    assert st.state is ResourceState.RUNNING and st.name == "lost"


# --- spot ---------------------------------------------------------------------------


def test_spot_goes_through_graphql_at_the_current_price(provider, fake):
    st = provider.create_resource(opts("RTX4090:2", spot=True))
    assert ("POST", "/graphql", 200) in fake.log
    assert not any((m, p) == ("POST", "/v2/pods") for m, p, _ in fake.log)
    pod = next(iter(fake.pods.values()))
    assert pod.spot and st.spot
    assert st.cost_per_hour == pytest.approx(2 * 0.34)  # the secure spot price per GPU
    assert provider.get_resource_status(st.id).spot


def test_spot_bid_from_max_price(provider, fake):
    st = provider.create_resource(opts("RTX4090:2", spot=True, max_price=1.0))
    assert st.cost_per_hour == pytest.approx(1.0)


def test_spot_bid_too_low_is_no_offer(provider, fake):
    with pytest.raises(NoCapacity, match="below the minimum bid") as e:
        provider.create_resource(opts("RTX4090", spot=True, max_price=0.05))
    assert "--max-price" in e.value.hint
    assert fake.created == []


def test_spot_fallback_when_neither_has_capacity(provider, fake):
    fake.knobs.no_capacity = True
    lines: list[str] = []
    with pytest.raises(NoCapacity, match="no longer any instances"):
        provider.create_resource(opts(spot=True, spot_fallback=True), progress=lines.append)
    assert any("falling back to on-demand" in ln for ln in lines)
    assert fake.created == []


def test_spot_fallback_above_max_price_is_refused(provider, fake):
    with pytest.raises(NoCapacity) as e:
        provider.create_resource(opts("RTX4090", spot=True, spot_fallback=True, max_price=0.1))
    assert "below the minimum bid" in e.value.message
    assert (
        "the on-demand fallback: 1x NVIDIA GeForce RTX 4090 on RunPod's secure cloud costs $0.69/h"
        in e.value.message
    )
    assert "above --max-price $0.10/h" in e.value.message and "0.69" in e.value.hint
    assert fake.created == []
    assert not any((m, p) == ("POST", "/v2/pods") for m, p, _ in fake.log)


def test_spot_fallback_within_max_price(provider, fake):
    fake.knobs.no_spot_capacity = True
    lines: list[str] = []
    st = provider.create_resource(
        opts("RTX4090", spot=True, spot_fallback=True, max_price=0.7), progress=lines.append
    )
    assert not st.spot and st.cost_per_hour == pytest.approx(0.69)
    assert any("falling back to on-demand" in ln for ln in lines)
    assert ("POST", "/v2/pods", 201) in fake.log


def test_lost_spot_response_is_found_by_name(provider, fake):
    fake.fail_next("podRentInterruptable", "lose")
    st = provider.create_resource(opts(spot=True))
    assert fake.created == [st.id] and st.spot


# --- the rest of the lifecycle -----------------------------------------------------


def test_list_and_status_show_only_trainctl_pods(provider, fake):
    foreign = fake.add_foreign_pod()
    st = provider.create_resource(opts())
    assert [r.id for r in provider.list_resources()] == [st.id]
    with pytest.raises(NotFound, match="not created by trainctl"):
        provider.get_resource_status(foreign)
    with pytest.raises(NotFound, match="not created by trainctl"):
        provider.terminate(foreign)
    with pytest.raises(NotFound):
        provider.stop(foreign)
    assert foreign in fake.pods


def test_terminate_twice(provider, fake):
    st = provider.create_resource(opts())
    first = provider.terminate(st.id)
    second = provider.terminate(st.id)
    assert first.state is second.state is ResourceState.TERMINATED
    assert first.name == "t1" and first.cost_per_hour == 0.0
    assert fake.pods == {}
    with pytest.raises(NotFound):
        provider.get_resource_status(st.id)


def test_stop_and_start(provider, fake):
    st = provider.create_resource(opts())
    stopped = provider.stop(st.id)
    assert stopped.state is ResourceState.STOPPED and stopped.ssh_host is None
    assert provider.stop(st.id).state is ResourceState.STOPPED  # already stopped: fine
    started = provider.start(st.id)
    assert started.state is ResourceState.RUNNING and started.ssh_port
    assert provider.start(st.id).state is ResourceState.RUNNING


def test_a_stopped_spot_pod_starts_again_with_a_new_bid(provider, fake):
    st = provider.create_resource(opts("RTX4090", spot=True))
    stopped = provider.stop(st.id)
    assert stopped.state is ResourceState.STOPPED and "reclaims" in stopped.reason
    started = provider.start(st.id)
    assert started.state is ResourceState.RUNNING and started.spot
    assert sum(1 for m, p, s in fake.log if p == "/graphql") == 4  # quote+rent, quote+resume
    actions = [s for m, p, s in fake.log if m == "POST" and p.endswith("/action")]
    assert actions == [200]  # the stop; the start went through podBidResume


def test_a_retried_stop_that_had_taken_effect(provider, fake):
    st = provider.create_resource(opts())
    fake.fail_next("podAction", "lose")
    assert provider.stop(st.id).state is ResourceState.STOPPED


def test_estimate_cost(provider, fake):
    est = provider.estimate_cost(opts("A100-80GB:2"), hours=3)
    assert est.hourly == pytest.approx(3.28) and est.total == pytest.approx(9.84)
    assert "secure" in est.source and "NVIDIA A100 80GB PCIe" in est.source
    community = provider.estimate_cost(opts("A100-80GB:2", extra={"cloud": "community"}))
    assert community.hourly == pytest.approx(2.38)
    spot = provider.estimate_cost(opts("RTX4090:2", spot=True))
    assert spot.spot and spot.hourly == pytest.approx(0.68)
    assert fake.created == []


def test_check(provider, fake):
    provider.create_resource(opts())
    fake.add_foreign_pod()
    result = provider.check()
    assert result.usable
    assert result.detail == "API key from RUNPOD_API_KEY works; 1 trainctl pod(s) of 2"
    assert fake.api_key not in result.detail


# --- the key ------------------------------------------------------------------------


@pytest.fixture
def user_home(tmp_path, monkeypatch):
    home = tmp_path / "user"
    (home / ".runpod").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    return home


def write_config(home, text):
    (home / ".runpod" / "config.toml").write_text(text)


def test_key_from_runpodctl_config(user_home):
    write_config(
        user_home, "apikey = 'rpa_from_runpodctl'\napiurl = 'https://api.runpod.io/graphql'\n"
    )
    assert find_api_key() == ("rpa_from_runpodctl", str(user_home / ".runpod" / "config.toml"))
    assert RunPodProvider.credentials_present()


def test_key_from_older_runpodctl_config(user_home):
    write_config(user_home, 'apiKey = "rpa_camel"\n')
    assert find_api_key()[0] == "rpa_camel"


def test_key_from_runpod_python_config(user_home):
    write_config(user_home, '[default]\napi_key = "rpa_from_python"\n')
    assert find_api_key()[0] == "rpa_from_python"


def test_key_from_a_named_profile(user_home, trainctl_home):
    write_config(user_home, '[default]\napi_key = "rpa_d"\n[work]\napi_key = "rpa_w"\n')
    assert find_api_key("work")[0] == "rpa_w"
    trainctl_home.mkdir(parents=True, exist_ok=True)
    (trainctl_home / "config.toml").write_text('[providers.runpod]\nprofile = "work"\n')
    assert RunPodProvider()._key()[0] == "rpa_w"


def test_environment_wins(user_home, monkeypatch):
    write_config(user_home, 'apikey = "rpa_file"\n')
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_env")
    assert find_api_key() == ("rpa_env", "RUNPOD_API_KEY")


def test_no_key_anywhere(user_home):
    assert find_api_key() is None
    assert not RunPodProvider.credentials_present()
    write_config(user_home, "[default]\n")
    assert find_api_key() is None
    with pytest.raises(CredentialsError) as e:
        RunPodProvider().create_resource(opts())
    assert e.value.exit_code == 4 and "runpod config" in e.value.hint
    # runpodctl hides `config --apiKey` (deprecated for `doctor`, which prompts for it)
    assert "runpodctl doctor" in e.value.hint and "--apiKey" not in e.value.hint
    check = RunPodProvider().check()
    assert not check.usable and "no RunPod API key" in check.detail


def test_estimate_without_a_key_uses_the_bundled_catalog(user_home):
    est = RunPodProvider().estimate_cost(opts("A100-80GB:2"), hours=2)
    assert est.provider == "runpod" and est.hourly and est.hourly > 0
    assert est.source.startswith("catalog ")


def test_broken_config_file(user_home):
    write_config(user_home, "apikey = \n")
    with pytest.raises(BadInput, match="config.toml could not be read"):
        find_api_key()
    assert not RunPodProvider.credentials_present()


def test_interrupt_while_waiting_terminates_the_pod(provider, fake):
    def progress(line: str) -> None:
        if "STARTING" in line:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        provider.create_resource(opts(), progress=progress)
    assert len(fake.created) == 1 and fake.pods == {}


# --- the fake itself ------------------------------------------------------------------


def test_the_fake_refuses_what_the_document_refuses(fake):
    import httpx

    c = httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {fake.api_key}"})
    r = c.post("/v2/pods", json={"name": "x", "gpu": {"id": GPUS[0]["id"]}, "disks": 5})
    assert r.status_code == 422
    assert r.headers["Content-Type"] == "application/problem+json"
    assert "'disks' was unexpected" in " ".join(r.json()["errors"])
    assert c.get("/v2/pods", params={"limit": 5}).status_code == 422
    r = c.post("/v2/pods/abc/action", json={"action": "pause"})
    assert r.status_code == 422
    assert len(fake.violations) == 4  # image missing, 'disks', 'limit', 'pause'
    fake.violations.clear()


def test_the_fake_checks_its_own_responses(fake):
    import httpx

    pod_id = fake.add_foreign_pod()
    fake.pods[pod_id].data["status"] = "PAUSED"  # not a PodStatus
    c = httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {fake.api_key}"})
    c.get(f"/v2/pods/{pod_id}")
    assert any("getPod response 200" in v and "PAUSED" in v for v in fake.violations)
    fake.violations.clear()


# --- answers of any shape (hypothesis) ----------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
POD = {
    "id": "abc",
    "name": "trainctl-x",
    "status": "RUNNING",
    "gpu": {"id": GPUS[0]["id"], "count": 1},
    "ssh": {"direct": {"host": "127.0.0.1", "port": 22, "username": "root"}},
    "env": {},
    "cost": 0.5,
    "createdAt": "2026-06-01T12:00:00Z",
    "mounts": {},
    "cloud": "SECURE",
}


def one_field_replaced(real: dict) -> st.SearchStrategy:
    """``real`` with one field (or one field of a nested object) set to any JSON."""

    def replace(key: str, sub: str | None, value: object) -> dict:
        out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in real.items()}
        if sub is not None and isinstance(out[key], dict):
            out[key][sub] = value
        else:
            out[key] = value
        return out

    subkeys = st.sampled_from([None, "id", "count", "direct", "secure", "community"])
    return st.builds(replace, st.sampled_from(sorted(real)), subkeys, JSON)


PODISH = one_field_replaced(POD) | JSON
GPUISH = one_field_replaced(GPUS[0]) | JSON


@settings(max_examples=300, deadline=None)
@given(PODISH)
def test_any_pod_answer_is_read_or_refused_in_one_line(pod):
    """What RunPod's API answers for a pod either reads as a status or is one
    ``OperationFailed``: never a KeyError, TypeError or ValueError."""
    from trainctl.providers.runpod.client import checked_pod as _checked_pod
    from trainctl.providers.runpod.provider import _look

    try:
        checked = _checked_pod(pod, "GET /v2/pods/x")
    except OperationFailed as e:
        assert "\n" not in e.message
        return
    RunPodProvider(api_key="k")._status(checked)
    _look(checked)


def test_a_gpu_offered_on_a_cloud_without_a_price_there_is_not_rented():
    """Found by the property test below: ``price`` lacking the cloud's key."""
    gpu = {**GPUS[0], "price": {}}
    with pytest.raises(BadInput):
        runpod_gpus.resolve(
            runpod_gpus.checked({"gpus": [gpu]}), GpuSpec.parse(gpu["id"]), "secure"
        )


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({"gpus": st.lists(GPUISH, min_size=1, max_size=3)}) | JSON)
def test_any_gpu_catalog_answer_is_read_or_refused_in_one_line(body):
    from datetime import datetime

    from trainctl.providers.runpod.offers import offers_from_catalog

    try:
        gpus = runpod_gpus.checked(body)
    except OperationFailed as e:
        assert "\n" not in e.message
        return
    assert gpus
    offers_from_catalog({"gpus": gpus}, datetime(2026, 12, 6))
    for cloud in ("secure", "community"):
        with contextlib.suppress(BadInput):  # a well-formed catalog without that GPU
            runpod_gpus.resolve(gpus, GpuSpec.parse("RTX4090"), cloud)
