"""The machine's guard: it releases the machine when nobody needs it any more.

Standard library only, Python 3.8+; it runs on the machine, next to ``jobrunner.py``,
as one detached process per runtime root (``jobrunner.py --root ROOT guard-run``),
needing no client and no server. Every runtime command starts it again when its
policy is set and it is not running (killed, or the machine restarted), so it comes
back on the next contact with trainctl.

What it enforces, as the client set it (``guard-set``):
  idle_stop   seconds with no job running and no trainctl command on the machine
  deadline    a time (from launch plus --max-duration)
  max_spend   dollars: the hourly price times the time the machine was up
  recheck     seconds after an answered release before a machine still running is
              released again (default RELEASE_RECHECK_SECONDS)
  release     what it does then: {"action": "stop"|"terminate", "request": {...}}
              (see release.py); none on a machine that has nothing to release (ssh,
              local), where the guard only ends jobs
  spot_notice true on an AWS spot instance: each look reads IMDSv2
              ``spot/instance-action``; once it answers (two minutes before the
              reclaim), every running job is ended as ``cancel`` ends it, with
              ``ended_by`` ``preempted``, and its work is sent to the object store
              (the client, which sees the job end, brings the rest home, rents
              another machine and resumes there). Nothing is released: AWS does it
  store       an object store to save the jobs' work in (see objstore.py): each
              look uploads every job's new or changed settled checkpoint files and
              its log; once more when a job ends, before a release (for at most
              FLUSH_SECONDS) and when disarmed

At a deadline or a spend cap every running job is ended as ``cancel`` ends it
(SIGTERM, ``grace`` seconds to checkpoint, SIGKILL), with the reason in the job's
``ended_by``; then the machine is released. Files under ROOT/guard/:
  policy.json  what the client set (never a secret)
  secret       the release's credential, mode 0600, when the machine had none
  store-secret the object store's access key, mode 0600, when it needs one
  uploaded.json what was uploaded to the store, per job
  lock         held by the running guard: one guard per root
  pid          the running guard's pid
  state.json   seconds billed so far (counted per boot), what fired, the release's
               outcome, the last error
  contact      touched by every runtime command: a client was there then
  log          what the guard did, one line each
"""

import fcntl
import json
import os
import subprocess
import sys
import time

try:  # imported as part of the trainctl package (tests, the client's local runs)
    from . import jobrunner as jr
    from . import objstore, release
except ImportError:  # run on the machine, from the runtime's directory
    import jobrunner as jr
    import objstore
    import release

DEFAULT_INTERVAL = 5.0
DEFAULT_GRACE = 10.0
#: longest pause between two release attempts that failed
RETRY_MAX_SECONDS = 300.0
#: a machine whose guard still runs this long after a release call that was answered
#: was not released after all (the call was accepted and then failed, say): again
RELEASE_RECHECK_SECONDS = 300.0
#: the longest the last uploads to the object store may hold up a release
FLUSH_SECONDS = 120.0
IDLE, DEADLINE, SPEND_CAP, PREEMPTED = "idle", "deadline", "spend cap", "preempted"


class Paths:
    def __init__(self, root):
        self.dir = os.path.join(root.path, "guard")
        self.policy = os.path.join(self.dir, "policy.json")
        self.secret = os.path.join(self.dir, "secret")
        self.store_secret = os.path.join(self.dir, "store-secret")
        self.uploaded = os.path.join(self.dir, "uploaded.json")
        self.lock = os.path.join(self.dir, "lock")
        self.pid = os.path.join(self.dir, "pid")
        self.state = os.path.join(self.dir, "state.json")
        self.contact = os.path.join(self.dir, "contact")
        self.log = os.path.join(self.dir, "log")


# --- what every runtime command does -------------------------------------------------


def on_contact(root):
    """A trainctl command runs: note the contact, and start the guard if it is armed
    and not running."""
    p = Paths(root)
    if not os.path.exists(p.policy):
        return
    try:
        with open(p.contact, "a"):
            os.utime(p.contact, None)
    except OSError:
        return
    if running(p):
        return
    released = (jr.read_json(p.state) or {}).get("released")
    if released and released.get("epoch") == machine_epoch():
        return  # released, and this machine is on its way out: nothing to guard
    spawn(root)


def machine_epoch():
    """What changes when the machine starts again: the boot id, with the start time
    of process 1 (a container restarted on the same kernel has a new one)."""
    return "%s/%s" % (jr.boot_id(), jr.start_ticks(1))


def running(p):
    """Whether a guard holds the lock of this root."""
    try:
        f = open(p.lock, "a")
    except OSError:
        return False
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        f.close()  # closing drops the lock if this process took it
    return False


def spawn(root):
    """Start the guard detached from the caller (a systemd scope of its own where
    systemd is the init, as the supervisor does, else a new session)."""
    p = Paths(root)
    argv = [
        sys.executable,
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "jobrunner.py"),
    ]
    argv += ["--root", root.path, "guard-run"]
    tool = jr.systemd_run()
    attempts = []
    if tool:
        unit = "--unit=trainctl-guard-%d-%d" % (os.getpid(), int(time.time()))
        attempts.append([tool, "--scope", unit, "--collect", "--quiet", "--no-ask-password", "--"])
    attempts.append([])
    for prefix in attempts:
        with open(os.path.join(p.dir, "guard.err"), "ab") as err:
            try:
                proc = subprocess.Popen(
                    prefix + argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError:
                continue
        deadline = time.time() + 5
        while time.time() < deadline:
            if running(p):
                return True
            if proc.poll() is not None:
                break
            time.sleep(0.01)
        else:
            return True
        if running(p):
            return True
    return False


# --- sub-commands --------------------------------------------------------------------


def cmd_set(root, args):
    """guard-set: merge the JSON policy on stdin into the current one (a key given as
    null is switched off), store its ``secret`` apart, start the guard, report."""
    spec = json.loads(sys.stdin.read() or "{}")
    p = Paths(root)
    os.makedirs(p.dir, mode=0o700, exist_ok=True)
    secret = spec.pop("secret", None)
    if secret is not None:
        _write_private(p.secret, secret)
    store_secret = spec.pop("store_secret", None)
    if store_secret is not None:
        _write_private(p.store_secret, json.dumps(store_secret))
    policy = jr.read_json(p.policy) or {}
    policy.update(spec)
    policy["set_at"] = jr.now()
    jr.write_json(p.policy, policy)
    state = jr.read_json(p.state)
    if state and state.get("released") and not running(p):
        state.pop("released")  # armed again: the next guard starts afresh
        jr.write_json(p.state, state)
    on_contact(root)
    print(json.dumps(report(root)))


def cmd_status(root, args):
    print(json.dumps(report(root)))


def cmd_stop(root, args):
    """guard-stop: disarm (the guard sees its policy gone and ends within a tick,
    after its last uploads to the object store, whose credential goes once it ended)."""
    p = Paths(root)
    flush = FLUSH_SECONDS if (jr.read_json(p.policy) or {}).get("store") else 0.0
    for path in (p.policy, p.secret):
        try:
            os.unlink(path)
        except OSError:
            pass
    deadline = jr.now() + _interval(jr.read_json(p.state) or {}) + 5 + flush
    while running(p) and jr.now() < deadline:
        time.sleep(0.05)
    try:
        os.unlink(p.store_secret)
    except OSError:
        pass
    print(json.dumps(report(root)))


def cmd_run(root, args):
    """guard-run: the guard itself (started by ``spawn``)."""
    p = Paths(root)
    os.makedirs(p.dir, mode=0o700, exist_ok=True)
    lock = open(p.lock, "a")
    deadline = jr.now() + 1.0
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            # another guard holds this root, or a command is looking (``running``)
            if jr.now() > deadline:
                return
            time.sleep(0.02)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    with open(p.pid, "w") as f:
        f.write(str(os.getpid()))
    Guard(root).loop()


# --- the guard -------------------------------------------------------------------------


class Guard:
    def __init__(self, root):
        self.root = root
        self.p = Paths(root)
        self.state = jr.read_json(self.p.state) or {}
        self.started_at = jr.now()
        self.failures = 0
        self.retry_at = 0.0
        self.uploader = None
        self.store_spec = None
        if self.state.pop("released", None):
            # released before (a stop), and running again: a new stretch begins
            self.state.pop("fired", None)
            self.log("running again after a release; guarding afresh")

    def loop(self):
        """Look every interval until disarmed. Nothing that goes wrong in one look
        (a full disk, an answer that cannot be read) ends the guard."""
        self.log("guard started (pid %d)" % os.getpid())
        while True:
            policy = jr.read_json(self.p.policy)
            if policy is None and not os.path.exists(self.p.policy):
                self.flush()
                self.log("disarmed; guard ends")
                self.save()
                return
            try:
                if policy is not None:
                    now = jr.now()
                    self.count(policy, now)
                    self.tick(policy, now)
                self.save()
            except Exception as e:  # noqa: BLE001 - the guard must outlive any one look
                self.log("error: %s: %s" % (type(e).__name__, e))
            time.sleep(self.pause(policy or {}, jr.now()))

    def tick(self, policy, now):
        """One look at the machine; True when it asked for the release. A machine
        still running RELEASE_RECHECK_SECONDS after a release that was answered
        (the guard is alive, so it is) is released again."""
        released = self.state.get("released")
        if released:
            if now - released.get("at", 0) < policy.get("recheck", RELEASE_RECHECK_SECONDS):
                return False
            self.state.pop("released")
            self.state.pop("fired", None)
            self.log(
                "still running %ds after the release; releasing again" % (now - released["at"])
            )
        jobs = [jr.job_status(self.root, j) for j in jr.owned_jobs(self.root, None)]
        active = [st for st in jobs if st["status"] in ("running", "pending")]
        self.upload(policy, jobs)
        if self.preempted(policy, active):
            return False
        why = over_limit(policy, self.state, now)
        if not why and (self.state.get("fired") or {}).get("why") in (DEADLINE, SPEND_CAP):
            self.state.pop("fired")  # the limit was moved (autostop)
        if why:
            if active:
                self.end_jobs(active, why, describe_limit(policy, self.state, why))
            return self.release(policy, why, now)
        idle_stop = policy.get("idle_stop")
        if idle_stop is None or active or not policy.get("release"):
            return False
        if now - self.idle_since(policy, jobs) >= idle_stop:
            return self.release(policy, IDLE, now)
        return False

    def preempted(self, policy, active):
        """True once the machine has its spot interruption notice: its jobs are ended
        (at the notice), and their last work sent to the store."""
        fired = self.state.get("fired") or {}
        if fired.get("why") == PREEMPTED:
            if fired.get("epoch") == machine_epoch():
                return True
            self.state.pop("fired")  # started again since (a spot stop): guarding afresh
        if not policy.get("spot_notice"):
            return False
        notice = spot_notice()
        if notice is None:
            return False
        self.state["fired"] = {
            "why": PREEMPTED,
            "at": jr.now(),
            "notice": notice,
            "epoch": machine_epoch(),
        }
        detail = "spot interruption notice: %s at %s" % (
            notice.get("action"),
            notice.get("time"),
        )
        self.log("%s: %s" % (PREEMPTED, detail))
        if active:
            self.end_jobs(active, PREEMPTED, detail)
        self.flush()
        return True

    def idle_since(self, policy, jobs):
        ended = [st.get("ended_at") or 0 for st in jobs]
        return max([self.started_at, policy.get("set_at") or 0, last_contact(self.p)] + ended)

    def count(self, policy, now):
        """Add the time since the last count to the seconds billed, when the machine
        did not restart in between (a stopped machine does not bill)."""
        boot = machine_epoch()
        last = self.state.get("counted_at")
        if last is None:
            self.state["billed"] = max(0.0, now - (policy.get("launched_at") or now))
        elif self.state.get("boot") == boot:
            self.state["billed"] = self.state.get("billed", 0.0) + max(0.0, now - last)
        self.state["counted_at"] = now
        self.state["boot"] = boot
        self.state["interval"] = policy.get("interval") or DEFAULT_INTERVAL

    def end_jobs(self, active, why, detail):
        grace = policy_grace(jr.read_json(self.p.policy) or {})
        for st in active:
            d = self.root.job_dir(st["job_id"])
            jr.write_json(os.path.join(d, "ended_by"), {"why": why, "detail": detail})
            self.log("%s: ending job %s (SIGTERM, SIGKILL after %gs)" % (why, st["job_id"], grace))
        for st in active:
            jr.cancel_job(self.root, st["job_id"], grace)

    def release(self, policy, why, now):
        rel = policy.get("release")
        if self.state.get("fired") is None:
            self.state["fired"] = {"why": why, "at": now}
            self.log("%s: %s" % (why, describe_limit(policy, self.state, why)))
        if not rel:
            return False  # nothing to release: the jobs were ended, the guard goes on
        if now < self.retry_at:
            return False
        if jr.read_json(self.p.policy) != policy:
            return False  # changed since this look began (autostop): the next one decides
        self.flush()
        secret = None
        try:
            with open(self.p.secret) as f:
                secret = f.read().strip()
        except OSError:
            pass
        outcome, message = release.execute(rel["request"], secret)
        self.log("%s: %s %s" % (rel["action"], outcome, message))
        if outcome == "failed":
            self.failures += 1
            self.state["last_error"] = message
            self.retry_at = now + min(
                RETRY_MAX_SECONDS, (policy.get("interval") or DEFAULT_INTERVAL) * 2**self.failures
            )
            return False
        self.state["released"] = {
            "action": rel["action"],
            "why": why,
            "at": now,
            "outcome": outcome,
            "epoch": machine_epoch(),
        }
        self.state.pop("last_error", None)
        return True

    def upload(self, policy, jobs, until=None):
        """Send the jobs' new work to the policy's object store, if it has one."""
        spec = policy.get("store")
        if spec != self.store_spec:
            self.store_spec = spec
            self.uploader = None
            if spec:
                self.uploader = objstore.Uploader(
                    spec, self.p.store_secret, self.p.uploaded, self.log
                )
                self.log("store: saving the jobs' checkpoints and logs to %s" % spec.get("url"))
        if self.uploader is None:
            return
        for st in jobs:
            st["log_path"] = os.path.join(self.root.job_dir(st["job_id"]), "log")
        try:
            self.uploader.look(jobs, until=until)
        except Exception as e:  # noqa: BLE001 - an upload never keeps a limit from acting
            self.log("store: error: %s: %s" % (type(e).__name__, e))

    def flush(self):
        """The last uploads before a release or the end of the guard (the jobs' state
        asked again: some were just ended), for at most FLUSH_SECONDS."""
        if self.uploader is None:
            return
        jobs = [jr.job_status(self.root, j) for j in jr.owned_jobs(self.root, None)]
        self.upload({"store": self.store_spec}, jobs, until=jr.now() + FLUSH_SECONDS)

    def pause(self, policy, now):
        """Until the next look: the interval, or less when the deadline comes sooner."""
        interval = policy.get("interval") or DEFAULT_INTERVAL
        deadline = policy.get("deadline")
        if deadline and deadline > now:
            return max(0.05, min(interval, deadline - now))
        return interval

    def save(self):
        jr.write_json(self.p.state, self.state)

    def log(self, line):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            with open(self.p.log, "a") as f:
                f.write("%s %s\n" % (stamp, line))
        except OSError:
            pass


def spot_notice():
    """The spot interruption notice IMDS serves (``{"action", "time"}``), or None:
    404 until AWS decides to reclaim the instance, or IMDS not answering."""
    endpoint = os.environ.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or release.IMDS_DEFAULT
    try:
        text = release.Imds(endpoint).get("meta-data/spot/instance-action")
        notice = json.loads(text)
    except (release.Failed, OSError, ValueError):
        return None
    return notice if isinstance(notice, dict) else None


def over_limit(policy, state, now):
    deadline = policy.get("deadline")
    if deadline is not None and now >= deadline:
        return DEADLINE
    cap, spent = policy.get("max_spend"), spent_so_far(policy, state, now)
    if cap is not None and spent is not None and spent >= cap:
        return SPEND_CAP
    return None


def describe_limit(policy, state, why):
    if why == DEADLINE:
        return "the machine's deadline passed"
    if why == SPEND_CAP:
        return "the machine's spend reached $%.2f (cap $%.2f)" % (
            spent_so_far(policy, state, jr.now()) or 0.0,
            policy.get("max_spend") or 0.0,
        )
    return "idle for %gs" % (policy.get("idle_stop") or 0)


def spent_so_far(policy, state, now):
    hourly = policy.get("hourly")
    if hourly is None:
        return None
    billed = state.get("billed")
    if billed is None:
        billed = max(0.0, now - (policy.get("launched_at") or now))
    elif state.get("boot") == machine_epoch() and state.get("counted_at"):
        billed += max(0.0, now - state["counted_at"])
    return hourly * billed / 3600.0


def policy_grace(policy):
    grace = policy.get("grace")
    return DEFAULT_GRACE if grace is None else float(grace)


def last_contact(p):
    try:
        return os.path.getmtime(p.contact)
    except OSError:
        return 0.0


def report(root):
    """What the guard enforces and how far each limit is, for ``guard-status``."""
    p = Paths(root)
    policy = jr.read_json(p.policy)
    state = jr.read_json(p.state) or {}
    now = jr.now()
    if policy is None:
        return {"armed": False, "running": running(p)}
    jobs = [jr.job_status(root, j) for j in jr.owned_jobs(root, None)]
    active = [st for st in jobs if st["status"] in ("running", "pending")]
    since = max(
        [policy.get("set_at") or 0, last_contact(p)] + [st.get("ended_at") or 0 for st in jobs]
    )
    rel = policy.get("release")
    out = {
        "armed": True,
        "running": running(p),
        "idle_stop": policy.get("idle_stop"),
        "deadline": policy.get("deadline"),
        "max_spend": policy.get("max_spend"),
        "hourly": policy.get("hourly"),
        "release": rel.get("action") if rel else None,
        "jobs_running": len(active),
        "idle_for": None if active else round(now - since, 3),
        "spent": _rounded(spent_so_far(policy, state, now)),
        "fired": state.get("fired"),
        "released": state.get("released"),
        "last_error": state.get("last_error"),
        "now": now,
    }
    return out


def _rounded(dollars):
    return None if dollars is None else round(dollars, 6)


def _interval(state):
    return state.get("interval") or DEFAULT_INTERVAL


def _write_private(path, text):
    tmp = "%s.%d" % (path, os.getpid())
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


COMMANDS = {
    "guard-set": cmd_set,
    "guard-status": cmd_status,
    "guard-stop": cmd_stop,
    "guard-run": cmd_run,
}
