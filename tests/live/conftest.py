"""The live suite: real machines on the real clouds, for whoever holds credentials.

Opt-in: ``make live PROVIDERS="aws runpod lyceum"`` runs
``pytest --confcutdir tests/live tests/live --live "aws runpod lyceum"``. Without
``--live`` (as in ``make test``) each module is reported skipped, with the reason,
and nothing in it is collected. ``--live-fake`` says the endpoints point at the test
stand-ins (``tests/live_stand.py``): the same checks run, and the few that only a
real machine can answer are skipped saying why.

A run has an id (``trainctl-live-<id>-...`` names its machines), a directory
(``out/live/<id>``, or ``--live-dir``) holding its own trainctl home (the user's
``config.toml`` is copied in; credentials are the providers' usual ones) and
``report.json``. The session ends with a sweep that releases everything the run made
(``LiveRun.sweep``), after failures and after Ctrl-C, SIGTERM or SIGHUP too, then
prints what each check observed, the sweep's outcome and what the run cost.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest

import livekit
from trainctl import home, registry


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("live", "live cloud suite (tests/live)")
    group.addoption(
        "--live",
        default=None,
        metavar="PROVIDERS",
        help="rent real machines on these providers (space or comma separated: "
        + " ".join(livekit.PROVIDERS)
        + ")",
    )
    group.addoption(
        "--live-fake",
        action="store_true",
        help="the provider endpoints point at the test stand-ins, not at the clouds",
    )
    group.addoption("--live-dir", default=None, help="the run's directory (default out/live/ID)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "live_provider(name): a check of one provider only")
    wanted = config.getoption("live", default=None)
    if not wanted:
        return
    cut = config.getoption("confcutdir")
    if not cut or Path(cut).resolve() != Path(__file__).resolve().parent:
        # tests/conftest.py would give every test an empty HOME and no credentials
        raise pytest.UsageError(
            "live: run it with `make live PROVIDERS=...` (pytest --confcutdir tests/live "
            "tests/live --live ...): the other tests' fixtures hide your credentials"
        )
    providers = list(dict.fromkeys(wanted.replace(",", " ").split()))
    unknown = [p for p in providers if p not in livekit.PROVIDERS]
    if unknown:
        raise pytest.UsageError(
            f"live: unknown provider(s) {', '.join(unknown)}; "
            f"the live suite checks {', '.join(livekit.PROVIDERS)}"
        )
    run_id = livekit.LiveRun.new_id()
    given = config.getoption("live_dir")
    directory = Path(given) if given else Path(config.rootpath) / "out" / "live" / run_id
    if directory.exists() and any(directory.iterdir()):
        # it may hold an earlier run's home, whose records its sweep needs
        raise pytest.UsageError(f"live: the run's directory {directory} is not empty")
    own_home = directory / "home"
    own_home.mkdir(parents=True, exist_ok=True, mode=0o700)
    user_config = home.config_path()
    if user_config.is_file():
        shutil.copy(user_config, own_home / "config.toml")
    os.environ["TRAINCTL_HOME"] = str(own_home)
    refused = []
    for name in providers:
        checked = registry.get(name).check()
        if not checked.usable:
            refused.append(f"live: cannot run on {name}: {checked.detail}")
    if refused:
        shutil.rmtree(directory, ignore_errors=True)
        raise pytest.UsageError("\n".join(refused))
    livekit.CURRENT = livekit.LiveRun(
        run_id, providers, directory, fake=config.getoption("live_fake")
    )
    livekit.CURRENT.write_report()
    # pytest turns Ctrl-C into a clean end of the session (fixtures torn down, the
    # sweep included); SIGTERM and SIGHUP (a closed terminal, a cancelled CI job) would
    # kill the process with the machines still running, and a second Ctrl-C would cut
    # the teardown short: the first of them ends the session, the others are held
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)


_interrupted: list[int] = []


def _interrupt(signum: int, _frame: object) -> None:
    name = signal.Signals(signum).name
    if _interrupted:
        print(f"live: {name} held: the run is ending, its sweep releases what it made",
              file=sys.stderr, flush=True)  # fmt: skip
        return
    _interrupted.append(signum)
    raise KeyboardInterrupt(name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "provider_name" in metafunc.fixturenames and livekit.CURRENT is not None:
        metafunc.parametrize("provider_name", livekit.CURRENT.providers)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run = livekit.CURRENT
    if run is None:
        return
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("live_provider")
        (drop if marker and marker.args[0] not in run.providers else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(scope="session", autouse=True)
def live() -> livekit.LiveRun:
    """The run; once the session ends, however it ends, its sweep."""
    run = livekit.CURRENT
    assert run is not None
    try:
        yield run
    finally:
        run.sweep()


@pytest.fixture
def observe(live: livekit.LiveRun, request: pytest.FixtureRequest) -> livekit.Observe:
    """Say what the check saw: kept in the report and printed at the end."""
    lines = live.observed.setdefault(request.node.nodeid, [])

    def say(line: str) -> None:
        lines.append(line)
        print(line, flush=True)
        live.write_report()

    return say


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    result = livekit.CURRENT.sweep_result if livekit.CURRENT else None
    if result is not None and (result.left or result.errors) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    run = livekit.CURRENT
    if run is None:
        return
    tr = terminalreporter
    tr.section("live: what each check observed")
    for nodeid, lines in run.observed.items():
        tr.write_line(nodeid)
        for line in lines:
            tr.write_line(f"    {line}")
    tr.section("live: sweep")
    result = run.sweep_result
    if result is None:
        tr.write_line("no check started: nothing was rented")
    else:
        tr.write_line(f"released: {', '.join(result.released) or 'nothing left to release'}")
        if result.revoked:
            tr.write_line(f"guard credentials revoked for: {', '.join(result.revoked)}")
        for error in result.errors:
            tr.write_line(f"error: {error}", red=True)
        if result.left:
            for left in result.left:
                tr.write_line(f"LEFT BEHIND: {left}", red=True, bold=True)
            tr.write_line(
                f"release them with: python tests/live/sweep.py --run {run.run_id} "
                f"--home {run.directory / 'home'} {' '.join(run.providers)}",
                red=True,
            )
        else:
            tr.write_line(
                f"nothing of run {run.run_id} is left on {', '.join(run.providers)}", green=True
            )
    tr.section("live: spend")
    for line in run.spend_lines():
        tr.write_line(line)
    tr.write_line(f"report: {run.directory / 'report.json'}")
