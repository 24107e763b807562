"""`trainctl ... --provider lyceum` through the real entry point, against the fake API."""

from __future__ import annotations

import pytest

from cli_helpers import trainctl
from fake_lyceum import DEFAULT_ORG, FakeLyceum, SshdMachines

SECRET = "lk_cli_secret_never_printed_42"


def serve(monkeypatch, trainctl_home, machines=None):
    fake = FakeLyceum(api_keys={SECRET: None}, machines=machines).start()
    monkeypatch.setenv("TRAINCTL_LYCEUM_API_URL", fake.url)
    monkeypatch.setenv("LYCEUM_API_KEY", SECRET)
    monkeypatch.setenv("LYCEUM_ORG", DEFAULT_ORG)
    trainctl_home.mkdir(parents=True, exist_ok=True)
    # the fake's VMs reach no machine unless given some: no guard could be set up there
    unreachable = '[guard]\nidle_stop = "never"\n' if machines is None else ""
    (trainctl_home / "config.toml").write_text(
        "[providers.lyceum]\npoll_interval = 0.05\nready_timeout = 20\n" + unreachable
    )
    return fake


@pytest.fixture
def fake(monkeypatch, trainctl_home):
    f = serve(monkeypatch, trainctl_home)
    yield f
    f.stop()


def secret_free(*results) -> bool:
    return all(SECRET not in r.out and SECRET not in r.err for r in results)


@pytest.mark.parametrize("spot", [False, True])
def test_create_status_terminate(fake, trainctl_home, spot):
    flags = ["--spot"] if spot else []
    r = trainctl("create", "--provider", "lyceum", "--gpu", "A100:1", "--name", "exp", *flags)
    assert r.code == 0, r.err
    assert "created exp" in r.out and "on lyceum" in r.out
    assert "creating Lyceum VM trainctl-exp" in r.err and "ready at" in r.err
    body = fake.creates()[0].body
    assert body["instance_type"] == ("spot" if spot else "on-demand")
    assert body["instance_specs"] == {"gpu_count": 1} and body["display_name"] == "trainctl-exp"

    st = trainctl("status", "exp", "--json")
    assert st.code == 0, st.err
    data = st.json()
    assert data["state"] == "running" and data["spot"] is spot and data["ssh_user"] == "lyceum"
    assert data["details"]["billed_usd"] >= 0 and "uptime_seconds" in data["details"]
    listed = trainctl("list", "--refresh", "--json").json()["resources"]
    assert [x["name"] for x in listed] == ["exp"]

    gone = trainctl("terminate", "exp", "-y")
    assert gone.code == 0, gone.err
    assert fake.live_vms() == []
    assert secret_free(r, st, gone)
    assert SECRET.encode() not in (trainctl_home / "state.db").read_bytes()


def test_unknown_gpu_lists_the_offers(fake):
    r = trainctl("create", "--provider", "lyceum", "--gpu", "B200:1")
    assert r.code == 2
    assert "no hardware profile 'B200'" in r.err and "a100 on-demand" in r.err
    assert fake.creates() == []


def test_rejected_key_exits_4_with_the_fix(fake, monkeypatch):
    monkeypatch.setenv("LYCEUM_API_KEY", "lk_wrong_" + SECRET)
    r = trainctl("create", "--provider", "lyceum", "--gpu", "A100:1", "--json")
    assert r.code == 4
    err = r.error()
    assert err["type"] == "credentials" and "LYCEUM_API_KEY" in err["hint"]
    assert secret_free(r)


def test_no_credit(fake):
    fake.credit = False
    r = trainctl("create", "--provider", "lyceum", "--gpu", "H100:1")
    assert r.code == 1 and "not enough credit" in r.err
    assert trainctl("list", "--json").json()["resources"] == []


def test_volume_warning_on_terminate(fake):
    r = trainctl("create", "-p", "lyceum", "--gpu", "A100:1", "-n", "vol", "--volume-gb", "10")
    assert r.code == 0, r.err
    gone = trainctl("terminate", "vol", "-y")
    assert gone.code == 0 and "keep billing" in gone.out
    (warning,) = [ln for ln in gone.err.splitlines() if ln.startswith("warning: ")]
    assert "Lyceum VM" in warning and "keep billing" in warning


def test_train_and_download_over_ssh(sshd, monkeypatch, tmp_path, trainctl_home):
    fake = serve(monkeypatch, trainctl_home, SshdMachines(sshd))
    try:
        project = tmp_path / "proj"
        project.mkdir()
        (project / "job.py").write_text(
            "import os, sys\n"
            "print('argv', sys.argv[1:])\n"
            "d = os.environ['TRAINCTL_CHECKPOINT_DIR']\n"
            "os.makedirs(d, exist_ok=True)\n"
            "open(os.path.join(d, 'w.txt'), 'w').write('weights')\n"
        )
        r = trainctl("create", "-p", "lyceum", "--gpu", "A100:1", "-n", "ssh1")
        assert r.code == 0, r.err
        t = trainctl("train", "ssh1", "-w", str(project), "--", "python3", "job.py", "a b")
        assert t.code == 0, t.err
        assert "argv ['a b']" in t.out
        d = trainctl("download", "ssh1", "checkpoints", str(tmp_path / "out"))
        assert d.code == 0, d.err
        assert (tmp_path / "out" / "w.txt").read_text() == "weights"
        assert trainctl("terminate", "ssh1", "-y").code == 0
        assert fake.live_vms() == []
        assert next(iter(fake.machines.by_vm.values())).destroyed
    finally:
        fake.stop()


def test_org_header_reaches_the_server(fake):
    assert trainctl("check", "--provider", "lyceum").code == 0
    assert fake.requests and all(
        r.headers.get("x-org-slug") == DEFAULT_ORG and r.headers["authorization"].endswith(SECRET)
        for r in fake.requests
    )


# -- answers that cannot be read -------------------------------------------------------

UNREADABLE_LISTS = {
    "null": lambda d: None,
    "empty body": b"",
    "no vms key": lambda d: {},
    "vms null": lambda d: {"vms": None},
    "vms not a list": lambda d: {"vms": "none"},
    "entries of the wrong type": lambda d: {"vms": ["vm-1", 2]},
    "an HTML page": b"<html><body>502 Bad Gateway</body></html>",
}


def one_line_error(r) -> bool:
    """A message (and perhaps its hint), never a traceback or an internal error."""
    lines = r.err.strip().splitlines()
    return (
        bool(lines)
        and len(lines) <= 2
        and lines[0].startswith("error: ")
        and "Traceback" not in r.err
        and "internal error" not in r.err
    )


def test_unreadable_list_is_an_error_not_an_empty_account(fake):
    assert trainctl("create", "-p", "lyceum", "--gpu", "A100:1", "-n", "live").code == 0
    for case, answer in UNREADABLE_LISTS.items():
        content_type = "text/html" if case == "an HTML page" else "application/json"
        fake.rewrite_next(answer, path_contains="/vms/list", content_type=content_type)
        r = trainctl("list", "--refresh", "--json")
        assert r.code == 0, (case, r.err)
        (listed,) = r.json()["resources"]
        assert listed["state"] == "running", case
        assert listed["spend"]["billing"] and listed["spend"]["price_per_hour"] > 0, case
        assert "vms/list" in listed["error"] or "VM list" in listed["error"], case
        # the record is untouched, and the next refresh (a good answer) agrees
        assert trainctl("list", "--json").json()["resources"][0]["state"] == "running", case
    assert [x["state"] for x in trainctl("list", "--refresh", "--json").json()["resources"]] == [
        "running"
    ]
    assert len(fake.live_vms()) == 1


def test_a_listing_that_leaves_a_live_vm_out_does_not_end_its_record(fake):
    """A well-formed list that lags (or leaves entries out) is checked against the
    VM itself before its record is called terminated."""
    assert trainctl("create", "-p", "lyceum", "--gpu", "A100:1", "-n", "live").code == 0
    fake.rewrite_next(lambda d: {**d, "vms": []}, path_contains="/vms/list")
    (listed,) = trainctl("list", "--refresh", "--json").json()["resources"]
    assert listed["state"] == "running"
    assert trainctl("terminate", "live", "-y").code == 0
    (gone,) = [v for v in fake.vms.values()]
    assert gone.status == "terminated"


def test_a_provider_that_cannot_be_asked_is_named_even_with_no_records(fake):
    """With nothing recorded, an unreadable listing is not an empty account: the
    refresh says which provider it could not ask."""
    fake.rewrite_next(lambda d: None, path_contains="/vms/list")
    r = trainctl("list", "--refresh", "--json")
    assert r.code == 0, r.err
    (error,) = r.json()["errors"]
    assert error.startswith("could not ask lyceum: ")
    fake.rewrite_next(lambda d: None, path_contains="/vms/list")
    r = trainctl("list", "--refresh")
    assert "warning: could not ask lyceum: " in r.err
    assert "No machines" in r.out


def test_unreadable_list_stops_a_create_before_it_makes_a_duplicate(fake):
    fake.rewrite_next(lambda d: None, path_contains="/vms/list")
    r = trainctl("create", "-p", "lyceum", "--gpu", "A100:1", "-n", "dup")
    assert r.code == 1 and one_line_error(r), r.err
    assert fake.creates() == []


def _set(**fields):
    return lambda d: {**d, **fields}


def _first_variant(**fields):
    def rewrite(d):
        first, *rest = d["available_instance_variants"]
        return {**d, "available_instance_variants": [{**first, **fields}, *rest]}

    return rewrite


@pytest.mark.parametrize(
    "path, answer",
    [
        ("/status", _set(gpu_count="two")),
        ("/status", _set(status=None)),
        ("/status", _set(status=7)),
        ("/status", _set(ip_address=["10.0.0.1"])),
        ("/status", _set(croesus_billed="0.12")),
        ("/status", _set(volumes="none")),
        ("/status", lambda d: None),
        ("/status", lambda d: ["ready"]),
        ("/status", b'{"status": "rea'),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_wrongly_typed_status_is_a_one_line_error(fake, path, answer):
    assert trainctl("create", "-p", "lyceum", "--gpu", "A100:1", "-n", "typed").code == 0
    fake.rewrite_next(answer, path_contains=path)
    r = trainctl("status", "typed")
    assert r.code == 1 and one_line_error(r), r.err
    assert trainctl("status", "typed").code == 0  # the next good answer is read again


@pytest.mark.parametrize(
    "answer",
    [
        _first_variant(price_per_hour="1.79"),
        _first_variant(price_per_hour=None),
        _first_variant(hardware_profile=None),
        _first_variant(available_gpus_per_instance="1,2"),
        _first_variant(available_gpus_per_instance=[1, "2"]),
        lambda d: {"available_instance_variants": None},
        lambda d: {"available_instance_variants": ["a100"]},
        lambda d: None,
        lambda d: [],
    ],
)
def test_wrongly_typed_offers_are_a_one_line_error(fake, answer):
    fake.rewrite_next(answer, path_contains="/vms/availability")
    r = trainctl("create", "-p", "lyceum", "--gpu", "A100:1", "-n", "offers")
    assert r.code == 1 and one_line_error(r), r.err
    assert fake.creates() == [] and trainctl("list", "--json").json()["resources"] == []


@pytest.mark.parametrize(
    "entry", [_set(gpu_count="1"), _set(display_name=5), _set(vm_id={"id": 1}), _set(status=None)]
)
def test_wrongly_typed_list_entry_keeps_the_record(fake, entry):
    assert trainctl("create", "-p", "lyceum", "--gpu", "A100:1", "-n", "entry").code == 0
    fake.rewrite_next(lambda d: {"vms": [entry(v) for v in d["vms"]]}, path_contains="/vms/list")
    r = trainctl("list", "--refresh", "--json")
    assert r.code == 0 and "internal error" not in r.err, r.err
    (listed,) = r.json()["resources"]
    assert listed["state"] == "running" and "cannot read" in listed["error"]


@pytest.mark.parametrize("answer", [_set(vm_id=None), lambda d: None, b"<html>oops</html>"])
def test_unreadable_create_answer_finds_the_vm_by_name(fake, answer):
    fake.rewrite_next(answer, path_contains="/vms/create", content_type="text/html")
    r = trainctl("create", "-p", "lyceum", "--gpu", "A100:1", "-n", "made")
    assert r.code == 0, r.err
    (vm,) = fake.live_vms()
    assert trainctl("status", "made", "--json").json()["id"] == vm.vm_id
    assert trainctl("terminate", "made", "-y").code == 0 and fake.live_vms() == []


class KeyLaterMachines(SshdMachines):
    """Test SSH machines that let the VM's key in only ``delay`` seconds after the VM
    has its address, as a VM whose sshd is still being set up."""

    def __init__(self, server, delay: float) -> None:
        super().__init__(server)
        self.delay = delay

    def start(self, vm_id: str, public_key: str) -> tuple[str, int, str]:
        import threading

        machine = self.server.new_machine(authorize_client_key=False)
        self.by_vm[vm_id] = machine
        threading.Timer(self.delay, machine.authorize, (public_key,)).start()
        return machine.host, machine.port, machine.user


def test_vm_that_stays_running_is_taken_once_ssh_login_works(sshd, monkeypatch, trainctl_home):
    fake = serve(monkeypatch, trainctl_home, KeyLaterMachines(sshd, delay=1.5))
    fake.stay_running = True  # never says `ready`, as lyceum-cli's own wait allows
    try:
        r = trainctl("create", "-p", "lyceum", "--gpu", "A100:1", "-n", "run1")
        assert r.code == 0, r.err
        assert "waiting for SSH" in r.err and "SSH login works" in r.err
        (vm,) = fake.live_vms()
        assert vm.status == "running"
        st = trainctl("status", "run1", "--json").json()
        assert st["state"] == "running" and st["raw_state"] == "running"
        t = trainctl("train", "run1", "--no-sync", "--", "echo", "trained on running")
        assert t.code == 0 and "trained on running" in t.out, t.err
        assert trainctl("terminate", "run1", "-y").code == 0
        assert fake.live_vms() == []
    finally:
        fake.stop()


@pytest.mark.parametrize(
    "answer", [_set(detached_volumes="none"), lambda d: ["deleted"], b"<html>ok</html>"]
)
def test_unreadable_delete_answer_still_ends_the_record(fake, answer):
    assert trainctl("create", "-p", "lyceum", "--gpu", "A100:1", "-n", "del").code == 0
    fake.rewrite_next(answer, method="DELETE", content_type="text/html")
    r = trainctl("terminate", "del", "-y")
    assert "internal error" not in r.err and "Traceback" not in r.err
    assert fake.live_vms() == []
    if r.code == 0:
        assert "check the Lyceum dashboard" in r.out + r.err
        assert trainctl("list", "--json").json()["resources"] == []
    else:  # the answer was not even JSON: the record stays until a terminate settles it
        assert r.code == 1 and one_line_error(r), r.err
        assert trainctl("terminate", "del", "-y").code == 0
