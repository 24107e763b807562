"""The live suite (tests/live) run against the stand-ins (tests/live_stand.py): the same
checks a maintainer runs on the clouds, here proving that its sweep leaves nothing
behind (after a pass, a failing check, Ctrl-C and SIGTERM), that every machine is
capped, that its spend report adds up, that it refuses to start without credentials,
and that a normal run reports it skipped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from live_stand import REPO, TESTS, Stand
from polling import wait_for
from trainctl import catalog
from trainctl.guards import GuardRequest

sys.path.insert(0, str(TESTS / "live"))
import estimate  # noqa: E402
import livekit  # noqa: E402

ALL = ["aws", "runpod", "lyceum"]


@pytest.fixture
def stand(request, sshd, monkeypatch, tmp_path):
    providers = request.param if hasattr(request, "param") else ALL
    with Stand(providers, sshd, tmp_path / "stand", monkeypatch) as s:
        yield s


def run_suite(stand: Stand, providers: list[str], run_dir: Path, *args: str, timeout: float = 240):
    return subprocess.run(
        stand.suite(providers, *args, run_dir=run_dir),
        cwd=REPO,
        env=stand.child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def report(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text())


#: what a pass on the stand-ins runs: the checks passed, and those skipped
OUTCOMES = {"aws": "3 passed, 1 skipped", "runpod": "4 passed", "lyceum": "3 passed"}


@pytest.mark.parametrize("stand", [pytest.param([p], id=p) for p in ALL], indirect=True)
def test_the_suite_passes_on_the_stand_ins_capped_and_leaves_nothing(stand, tmp_path):
    (provider,) = stand.providers
    run_dir = tmp_path / "run"
    done = run_suite(stand, [provider], run_dir)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert re.search(rf"= {OUTCOMES[provider]}(, \d+ deselected)? in ", out), out[-3000:]
    assert stand.leftovers() == []
    rep = report(run_dir)
    made = rep["made"]
    # what the estimate counts is what the suite rents
    assert sorted(m["check"] for m in made) == sorted(livekit.CHECKS[provider])
    for m in made:
        # every machine at the provider is trainctl-live-<run>-<check>, and capped
        assert livekit.provider_name(m["name"]) == f"trainctl-live-{rep['run_id']}-{m['check']}"
        assert 0 < m["guards"]["max_spend"] <= livekit.ceiling(1)
        assert m["guards"]["deadline"] is not None and m["guards"]["idle_stop"]
        assert m["price_per_hour"] <= livekit.MAX_PRICE_PER_HOUR
    assert rep["sweep"]["left"] == [] and rep["sweep"]["errors"] == []
    guard = next(m["id"] for m in made if m["check"] == "guard")
    if provider == "runpod":
        # the guard released its pod with the pod's own key, not with the user's
        assert any(p.endswith(f"/{guard}/action") and key == f"pod:{guard}" and s == 200
                   for _m, p, s, key in stand.runpod.key_log)  # fmt: skip
    if provider == "lyceum":
        # with the key trainctl made for that VM, revoked since, as every key it made
        (key,) = [k for k in stand.lyceum.issued if k.key_name == f"trainctl-guard-{guard}"]
        assert any(r.method == "DELETE" and r.path.endswith(f"/vms/{guard}")
                   and r.headers.get("authorization") == f"Bearer {key.secret}"
                   for r in stand.lyceum.requests)  # fmt: skip
        assert all(not k.usable() for k in stand.lyceum.issued)
    if provider == "aws":
        from aws_support import agent, imds

        # with the instance profile's credentials, handed to that instance alone
        (halt,) = [h for h in agent().halts if guard in h.instance_ids and h.action == "stop"]
        assert imds().instance_of(halt.access_key) == guard
        # the one check a stand-in cannot answer says why it was skipped
        assert "no amazon-ssm-agent unit to restart" in out
    # the spend report: trainctl's recorded price times the time each machine billed
    spend = rep["spend"]
    assert len(spend) == len(made)
    for r in spend:
        assert r["cost"] == pytest.approx(r["price_per_hour"] * r["minutes"] / 60, abs=2e-4)
    total = re.search(rf"spent \$(\d+\.\d{{4}}) on {len(made)} machine\(s\)", out)
    assert total and float(total.group(1)) == pytest.approx(sum(r["cost"] for r in spend), 1e-3)
    capped = re.search(r"\(caps allowed \$(\d+\.\d\d)\)", out)
    assert capped and float(capped.group(1)) == pytest.approx(
        sum(m["guards"]["max_spend"] for m in made)
    )
    assert f"nothing of run {rep['run_id']} is left on {provider}" in out
    assert "what each check observed" in out and "argv arrived verbatim" in out


@pytest.mark.parametrize("stand", [["lyceum"]], indirect=True)
def test_a_failing_check_leaves_its_machine_to_the_sweep(stand, tmp_path):
    # Lyceum refuses the lifecycle's own terminate: the check fails with its VM alive
    stand.lyceum.fail_next(409, method="DELETE", path_contains="/vms/")
    run_dir = tmp_path / "run"
    done = run_suite(stand, ["lyceum"], run_dir, "-k", "test_full_lifecycle")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-4000:]
    assert "1 failed" in out and "409" in out
    rep = report(run_dir)
    (life,) = [m["name"] for m in rep["made"]]
    assert rep["sweep"]["released"] == [life]
    assert stand.leftovers() == []
    assert "nothing of run" in out


@pytest.mark.parametrize("stand", [["runpod"]], indirect=True)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_sweeps_what_it_made(stand, tmp_path, signum):
    run_dir = tmp_path / "run"
    child = subprocess.Popen(
        stand.suite(["runpod"], run_dir=run_dir),
        cwd=REPO,
        env=stand.child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group: the signal a terminal sends to all of it
    )
    try:
        # in the middle of the first check: a pod runs and a job was started on it
        wait_for(lambda: any(p.machine and list(p.machine.home.glob(".trainctl/jobs/j-*"))
                             for p in list(stand.runpod.pods.values())), 60)  # fmt: skip
        os.killpg(child.pid, signum)
        time.sleep(0.2)
        os.killpg(child.pid, signum)  # again, impatient: held while the run ends
        out, _ = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert child.returncode == 2, out[-4000:]  # pytest: interrupted
    rep = report(run_dir)
    assert rep["sweep"] is not None and rep["sweep"]["left"] == []
    assert rep["sweep"]["released"], rep["sweep"]
    assert stand.leftovers() == []
    assert f"nothing of run {rep['run_id']} is left on runpod" in out
    assert "live: spend" in out
    assert f"live: {signal.Signals(signum).name} held" in out


@pytest.mark.parametrize(
    "stand",
    [pytest.param(["runpod"], id="runpod"), pytest.param(["aws"], id="aws")],
    indirect=True,
)
def test_what_a_killed_run_left_is_found_by_name_or_tag_and_released(stand, tmp_path):
    """``kill -9`` leaves no sweep: tests/live/sweep.py, in a home that knows nothing
    of the run, finds its machine in the provider's own listing."""
    run_dir = tmp_path / "run"
    (provider,) = stand.providers
    child = subprocess.Popen(
        stand.suite([provider], "-k", "test_full_lifecycle", run_dir=run_dir),
        cwd=REPO, env=stand.child_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(stand.leftovers, 60)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    left = stand.leftovers()
    assert left and report(run_dir)["sweep"] is None  # no sweep ran
    argv = [sys.executable, str(TESTS / "live" / "sweep.py"), "--run", report(run_dir)["run_id"],
            "--home", str(tmp_path / "fresh-home"), provider]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, env=stand.child_env(), capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "released trainctl-live-" in done.stdout or "released live-" in done.stdout
    assert stand.leftovers() == []


def test_without_credentials_it_refuses_with_one_line_per_provider(tmp_path, monkeypatch):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--confcutdir",
            str(TESTS / "live"), str(TESTS / "live"), "--live", "aws runpod lyceum",
            "--live-dir", str(tmp_path / "run")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if "cannot run on" in ln]
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert [re.search(r"cannot run on (\w+):", ln).group(1) for ln in lines] == [
        "aws", "runpod", "lyceum",
    ]  # fmt: skip
    assert "RUNPOD_API_KEY" in lines[1] and "LYCEUM_API_KEY" in lines[2]
    assert not (tmp_path / "run").exists()  # nothing was made, not even its directory


def test_the_live_suite_refuses_to_run_under_the_other_tests_fixtures(tmp_path):
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(TESTS / "live"),
            "--live", "runpod", "--live-dir", str(tmp_path / "run")]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "live: run it with `make live PROVIDERS=...`" in done.stderr
    assert not (tmp_path / "run").exists()


def test_a_normal_run_reports_the_live_suite_skipped_and_why():
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(TESTS / "live")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    out = done.stdout
    assert done.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, out
    assert "collected 0 items / 2 skipped" in out
    (line,) = [ln for ln in out.splitlines() if ln.startswith("SKIPPED [2] tests/live/")]
    assert "live cloud suite" in line and 'make live PROVIDERS="aws runpod lyceum"' in line


def test_every_machine_is_capped_by_its_price():
    g = livekit.caps(0.526)
    assert (g.max_duration, g.max_spend) == (livekit.MACHINE_MINUTES * 60, 0.33)
    assert g.idle_stop == GuardRequest.parse(idle_stop=livekit.IDLE_STOP).idle_stop
    with pytest.raises(livekit.Refused, match="no hourly price"):
        livekit.caps(None)
    with pytest.raises(livekit.Refused, match="ceiling"):
        livekit.caps(livekit.MAX_PRICE_PER_HOUR + 0.01)
    assert livekit.caps(livekit.MAX_PRICE_PER_HOUR).max_spend == livekit.ceiling(1)


def test_the_offers_tried_are_the_cheapest_within_the_ceiling():
    aws = livekit.candidates("aws")
    cheapest = catalog.offers("aws")[0]
    assert aws[0]["instance_type"] == cheapest.offer_id
    prices = [catalog.price("aws", c["instance_type"]) for c in aws]
    assert prices == sorted(prices) and max(prices) <= livekit.MAX_PRICE_PER_HOUR
    community = livekit.candidates("runpod", cloud="community")
    assert community and all(c["extra"]["cloud"] == "community" for c in community)
    assert livekit.candidates("lyceum") == [{"instance_type": livekit.LYCEUM_CPU}]


def test_the_estimate_prices_the_first_offer_tried_from_the_catalog():
    aws, runpod, lyceum, total = estimate.lines(["aws", "runpod", "lyceum"])
    first = catalog.offers("aws")[0]
    minutes = sum(livekit.CHECKS["aws"].values())
    assert f"3 machines of {first.offer_id} at ${first.on_demand:.4f}/h" in aws
    assert f"~${first.on_demand * minutes / 60:.2f}" in aws
    assert f"at most ${3 * livekit.caps(first.on_demand).max_spend:.2f} on this offer" in aws
    assert f"${livekit.ceiling(3):.2f} on any offer" in aws  # a fallback costs more
    assert "(community)" in runpod
    assert "no catalog price" in lyceum and f"${livekit.ceiling(3):.2f}" in lyceum
    assert total.startswith("total")


def test_names_carry_the_run_at_the_provider():
    assert livekit.live_name("aws", "ab12cd", "life") == "trainctl-live-ab12cd-life"
    assert livekit.live_name("runpod", "ab12cd", "life") == "live-ab12cd-life"
    for provider in ("aws", "runpod", "lyceum"):
        name = livekit.live_name(provider, "ab12cd", "x")
        assert livekit.provider_name(name) == "trainctl-live-ab12cd-x"


def test_the_sweep_holds_interrupts_until_it_is_done():
    got = []
    before = signal.signal(signal.SIGINT, lambda *_: got.append("handler"))
    try:
        with livekit.held_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            got.append("sweep went on")
        assert got == ["sweep went on"]
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_sweep_without_the_runs_home_still_reads_the_users_config(tmp_path, monkeypatch):
    import sweep

    (tmp_path / "config.toml").write_text('[providers.aws]\nregion = "eu-north-1"\n')
    monkeypatch.setenv("TRAINCTL_HOME", str(tmp_path))
    made = sweep.own_home()
    assert made != tmp_path
    assert (made / "config.toml").read_text() == (tmp_path / "config.toml").read_text()
