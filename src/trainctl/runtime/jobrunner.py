"""trainctl job runtime: runs on the training machine, standard library only.

Layout under ROOT (one per machine registration: ``~/.trainctl/<registration>`` on an
``ssh`` host, ``~/.trainctl`` on a cloud machine, the workspace for ``local``):
  work/                  the synced code; jobs start here
  jobs/.lock             held while a job is checked against the running ones and recorded
  jobs/<job-id>/cmd.json argv, cwd, checkpoint dir, start request time (never the environment)
        supervisor.started  written by the supervisor before anything else
        pid.json         supervisor pid, job pid (= its process group), start time, the
                         leader's start time in clock ticks and the machine's boot id
        heartbeat        touched every few seconds while the supervisor lives
        log              stdout and stderr of the job, appended
        leftovers.json   the main process's exit and the processes it left, while they run
        exit.json        exit code (128+N and the signal when killed by signal N)
        cancelled        written by `cancel` before it signals the job
        ended_by         written by the guard before it ends the job: why (`deadline`,
                         `spend cap`) and a sentence saying so
  guard/                 the machine's guard (see guard.py)

Every sub-command prints one JSON document, except `read` and `tail`, which print
log bytes. Completion is read from exit.json alone, which the supervisor writes once
every process of the job is gone (its process group, and processes elsewhere that
carry TRAINCTL_JOB_ID); a job whose processes are all gone without one is `lost`.

The supervisor leaves the caller's service cgroup where systemd is the init: an agent
that runs commands (the AWS SSM agent is a snap on Ubuntu, restarted by snapd) is a
service whose restart kills every process of its cgroup, and setsid does not leave a
cgroup. ``systemd-run --scope`` moves the supervisor (and so the job) into a scope of
its own while keeping this process's environment and stdin; where systemd is absent or
systemd-run fails, the supervisor starts in a new session as before.
Kept compatible with Python 3.8.
"""

import base64
import fcntl
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

HEARTBEAT_SECONDS = 5.0
PENDING_GRACE_SECONDS = 30.0
#: how often the supervisor looks for the processes a finished main process left
LEFTOVER_POLL_SECONDS = 0.5
SUPERVISOR_START_SECONDS = 20.0
BOOT_ID = "/proc/sys/kernel/random/boot_id"
#: systemd is the init when this directory exists (sd_booted); tests name another one
SYSTEMD_DIR_ENV = "TRAINCTL_SYSTEMD_RUNTIME_DIR"
SYSTEMD_DIR = "/run/systemd/system"


def now():
    return time.time()


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fail(message, code=2):
    sys.stdout.write(json.dumps({"error": message}) + "\n")
    sys.exit(code)


class Root:
    def __init__(self, path):
        self.path = os.path.abspath(os.path.expanduser(path))
        self.work = os.path.join(self.path, "work")
        self.jobs = os.path.join(self.path, "jobs")

    def job_dir(self, job_id):
        if not job_id or "/" in job_id or job_id.startswith("."):
            fail("bad job id %r" % job_id)
        return os.path.join(self.jobs, job_id)


def pid_alive(pid, must_contain=None):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if must_contain:
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                return must_contain.encode() in f.read()
        except OSError:
            pass
    return not _is_zombie(pid)


def _stat_fields(pid):
    """/proc/<pid>/stat from field 3 (state) on: field N is at index N-3."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _is_zombie(pid):
    fields = _stat_fields(pid)
    return bool(fields) and fields[0] == "Z"


def start_ticks(pid):
    """The process's start time in clock ticks after boot (None if unknown): with the
    boot id, it tells a process from a later one that got the same pid."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def boot_id():
    try:
        with open(BOOT_ID) as f:
            return f.read().strip() or None
    except OSError:
        return None


def group_members(pgid):
    """Pids of the group's live processes, read from /proc; zombies (dead, not yet
    reaped by whichever process inherited them) do not count."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields and int(fields[2]) == pgid and fields[0] != "Z":
            yield int(entry)


def _has_marker(pid, marker):
    try:
        with open("/proc/%d/environ" % pid, "rb") as f:
            return marker in f.read().split(b"\0")
    except OSError:
        return False


def job_processes(pid_info, job_id, trusted=False):
    """(pids of the job's process group, pids elsewhere that carry the job's marker).

    The marker is TRAINCTL_JOB_ID=<job id> in a process's environment: it finds a
    child that started a session of its own. The group counts only once it is shown
    to be the job's (unless ``trusted``, for the supervisor, which watches it): the
    machine has not restarted since, and a member carries the marker or is the
    leader the supervisor started (same start time). A process group id is reused
    only when every member is gone, so one proven member vouches for the others.
    Without /proc the group is believed if it exists."""
    pgid = pid_info.get("pgid")
    recorded_boot = pid_info.get("boot_id")
    if recorded_boot and recorded_boot != boot_id():
        return [], []
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, TypeError, ValueError):
            return [], []
        except PermissionError:
            pass
        return [pgid], []
    marker = ("TRAINCTL_JOB_ID=%s" % job_id).encode()
    group, marked_elsewhere = [], []
    proven = trusted
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if not fields or fields[0] == "Z":
            continue
        pid = int(entry)
        if pgid and int(fields[2]) == pgid:
            group.append(pid)
            if not proven:
                leader = pid == pgid and pid_info.get("start_ticks") is not None
                proven = (leader and start_ticks(pid) == pid_info["start_ticks"]) or (
                    _has_marker(pid, marker)
                )
        elif _has_marker(pid, marker):
            marked_elsewhere.append(pid)
    return (group if proven else []), marked_elsewhere


def supervisor_alive(pid_info, job_id):
    """Whether the job's supervisor still runs (same boot, and the recorded pid is
    still a supervisor of this job)."""
    if pid_info.get("boot_id") not in (None, boot_id()):
        return False
    return pid_alive(pid_info.get("supervisor_pid"), must_contain="supervise\0" + job_id)


def _describe_leftovers(left):
    code = left.get("main_exit_code")
    pids = left.get("pids") or []
    return "main process exited %s; waiting for %d leftover process%s (pid %s)" % (
        code,
        len(pids),
        "" if len(pids) == 1 else "es",
        ", ".join(str(p) for p in pids[:5]) + (", ..." if len(pids) > 5 else ""),
    )


def job_status(root, job_id):
    d = root.job_dir(job_id)
    cmd = read_json(os.path.join(d, "cmd.json"))
    if cmd is None:
        return {"job_id": job_id, "status": "unknown", "reason": "no such job"}
    st = {
        "job_id": job_id,
        "command": cmd.get("argv", []),
        "cwd": cmd.get("cwd"),
        "checkpoint_dir": cmd.get("checkpoint_dir"),
        "requested_at": cmd.get("requested_at"),
        "started_at": None,
        "ended_at": None,
        "exit_code": None,
        "signal": None,
        "reason": None,
        "heartbeat_age": None,
        "log_size": 0,
    }
    try:
        st["log_size"] = os.path.getsize(os.path.join(d, "log"))
    except OSError:
        pass
    pid = read_json(os.path.join(d, "pid.json")) or {}
    st["started_at"] = pid.get("started_at")
    cancelled = os.path.exists(os.path.join(d, "cancelled"))
    ex = read_json(os.path.join(d, "exit.json"))
    if ex is not None:
        st.update(
            exit_code=ex.get("exit_code"), signal=ex.get("signal"), ended_at=ex.get("ended_at")
        )
        st["reason"] = ex.get("reason")
        ended_by = read_json(os.path.join(d, "ended_by"))
        if ended_by:
            st["ended_by"] = ended_by.get("why")
            st["reason"] = "%s: %s" % (ended_by.get("why"), ended_by.get("detail"))
        if cancelled:
            st["status"] = "cancelled"
        elif ex.get("exit_code") == 0:
            st["status"] = "completed"
        else:
            st["status"] = "failed"
        return st
    try:
        st["heartbeat_age"] = round(now() - os.path.getmtime(os.path.join(d, "heartbeat")), 3)
    except OSError:
        pass
    if pid:
        restarted = pid.get("boot_id") not in (None, boot_id())
        sup_alive = supervisor_alive(pid, job_id)
        if sup_alive or any(job_processes(pid, job_id)):
            st["status"] = "running"
            left = read_json(os.path.join(d, "leftovers.json"))
            if left:
                st["reason"] = _describe_leftovers(left)
            elif not sup_alive:
                st["reason"] = "its supervisor is gone; the job's processes still run"
        else:
            st["status"] = "lost"
            st["reason"] = (
                "the machine restarted since the job started; no exit code was recorded"
                if restarted
                else "the job's processes are gone and no exit code was recorded"
            )
        return st
    if now() - (cmd.get("requested_at") or 0) < PENDING_GRACE_SECONDS:
        st["status"] = "pending"
    else:
        st["status"] = "lost"
        st["reason"] = "the job never started"
    return st


def cmd_info(root, args):
    os.makedirs(root.work, exist_ok=True)
    os.makedirs(root.jobs, exist_ok=True)
    info = {"root": root.path, "work": root.work, "home": os.path.expanduser("~")}
    print(json.dumps(dict(info, python=sys.version.split()[0])))


class _JobsLock:
    """Held while a new job is checked against the running ones and recorded, so that
    two `start`s at once cannot both take one checkpoint directory."""

    def __init__(self, root):
        os.makedirs(root.jobs, exist_ok=True)
        self.path = os.path.join(root.jobs, ".lock")

    def __enter__(self):
        self.f = open(self.path, "a")
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.f.close()


def running_jobs(root):
    return [
        st
        for st in (job_status(root, j) for j in owned_jobs(root, None))
        if st["status"] in ("running", "pending")
    ]


def cmd_start(root, args):
    spec = json.loads(sys.stdin.read())
    job_id = spec["job_id"]
    d = root.job_dir(job_id)
    cwd = os.path.join(root.work, spec.get("cwd") or "")
    checkpoint_dir = os.path.join(cwd, spec.get("checkpoint_dir") or "checkpoints")
    checkpoint_dir = os.path.normpath(checkpoint_dir)
    if spec.get("image"):
        why = _sibling("launch").check_docker(spec["image"])
        if why:
            fail(why)
    with _JobsLock(root):
        for other in running_jobs(root):
            if other.get("checkpoint_dir") == checkpoint_dir:
                fail(
                    "job %s is running with the same checkpoint directory %s"
                    % (other["job_id"], checkpoint_dir)
                )
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            fail("job %s already exists" % job_id)
        write_json(
            os.path.join(d, "cmd.json"),
            {
                "argv": spec["argv"],
                "cwd": cwd,
                "checkpoint_dir": checkpoint_dir,
                "requested_at": now(),
                "owner": spec.get("owner"),
            },
        )
    spec["cwd"] = cwd
    spec["checkpoint_dir"] = checkpoint_dir
    start_supervisor(root, job_id, json.dumps(spec).encode())
    print(json.dumps(job_status(root, job_id)))


def systemd_run():
    """systemd-run's path when systemd is the init and the tool is there, else None."""
    if not os.path.isdir(os.environ.get(SYSTEMD_DIR_ENV) or SYSTEMD_DIR):
        return None
    return shutil.which("systemd-run")


def start_supervisor(root, job_id, spec):
    """Start the supervisor detached, in a systemd scope of its own where systemd is
    the init (see the module docstring), else in a new session only."""
    d = root.job_dir(job_id)
    argv = [sys.executable, os.path.abspath(__file__), "--root", root.path, "supervise", job_id]
    tool = systemd_run()
    if tool:
        scoped = [tool, "--scope", "--unit=trainctl-" + job_id, "--collect", "--quiet"]
        scoped += ["--no-ask-password", "--"]
        if _spawn_supervisor(d, scoped + argv, spec):
            return
        # systemd-run failed before the supervisor ran (no bus, no permission, an old
        # systemd without --collect): the plain way still detaches from the caller
    _spawn_supervisor(d, argv, spec)


def _spawn_supervisor(d, argv, spec):
    """Run ``argv`` with ``spec`` on its stdin; False if it ended before the supervisor
    began, True once the supervisor began (or after a patient wait)."""
    with open(os.path.join(d, "supervisor.err"), "ab") as err:
        try:
            sup = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            err.write(("trainctl: cannot run %s: %s\n" % (argv[0], e)).encode())
            return False
    try:
        sup.stdin.write(spec)
        sup.stdin.close()
    except OSError:  # it ended before reading its spec
        pass
    began = os.path.join(d, "supervisor.started")
    deadline = now() + SUPERVISOR_START_SECONDS
    while now() < deadline:
        if os.path.exists(os.path.join(d, "pid.json")) or os.path.exists(
            os.path.join(d, "exit.json")
        ):
            return True
        if sup.poll() is not None:
            return os.path.exists(began)
        time.sleep(0.01)
    return True


def cmd_supervise(root, args):
    job_id = args[0]
    d = root.job_dir(job_id)
    with open(os.path.join(d, "supervisor.started"), "w") as f:
        f.write(str(os.getpid()))
    spec = json.loads(sys.stdin.read())
    if os.path.exists(os.path.join(d, "cancelled")):
        # cancelled while pending: the job must not start after `cancelled` was said
        _never_started(d)
        return
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    env = dict(os.environ)
    env.update(spec.get("env") or {})
    env["TRAINCTL_JOB_ID"] = job_id
    env["TRAINCTL_CHECKPOINT_DIR"] = spec["checkpoint_dir"]
    env.setdefault("PYTHONUNBUFFERED", "1")
    _write_job_env(root, env)
    log = open(os.path.join(d, "log"), "ab", buffering=0)
    try:
        os.makedirs(spec["checkpoint_dir"], exist_ok=True)
        launch = _sibling("launch").Launch(root, job_id, spec, env)
        for note in launch.notes:
            log.write((note + "\n").encode())
        proc = subprocess.Popen(
            launch.argv,
            cwd=spec["cwd"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as e:
        reason = "cannot start %s: %s" % (spec["argv"][0], e.strerror or e)
        log.write(("trainctl: %s\n" % reason).encode())
        write_json(
            os.path.join(d, "exit.json"),
            {"exit_code": 127, "signal": None, "ended_at": now(), "reason": reason},
        )
        return
    info = {
        "supervisor_pid": os.getpid(),
        "pid": proc.pid,
        "pgid": proc.pid,
        "started_at": now(),
        "start_ticks": start_ticks(proc.pid),
        "boot_id": boot_id(),
    }
    write_json(os.path.join(d, "pid.json"), info)
    hb = os.path.join(d, "heartbeat")
    while True:
        with open(hb, "a"):
            os.utime(hb, None)
        try:
            proc.wait(timeout=HEARTBEAT_SECONDS)
            break
        except subprocess.TimeoutExpired:
            continue
    rc = proc.returncode
    launch.after()
    result = {"exit_code": rc, "signal": None, "ended_at": None, "reason": launch.reason(rc)}
    if rc < 0:
        sig = -rc
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "signal %d" % sig
        result.update(exit_code=128 + sig, signal=name, reason="killed by %s" % name)
    _wait_for_leftovers(d, info, job_id, result["exit_code"], hb)
    result["ended_at"] = now()
    write_json(os.path.join(d, "exit.json"), result)


def _write_job_env(root, env):
    """ROOT/job.env: the runtime's variables of the latest job (launch.JOB_VARS), for
    `trainctl ssh`'s shell to source. The job's own variables are left out: their
    values may be secrets, which are never stored."""
    names = _sibling("launch").JOB_VARS
    lines = ["export %s=%s\n" % (k, shlex.quote(env[k])) for k in names if k in env]
    path = os.path.join(root.path, "job.env")
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def _wait_for_leftovers(d, info, job_id, exit_code, hb):
    """The job is done when all its processes are: while the main process's children
    (or processes that carry the job's marker) run, the job stays `running` and
    leftovers.json says what it waits for. A daemon that never exits keeps the job
    running until `cancel` ends it."""
    path = os.path.join(d, "leftovers.json")
    last_beat = now()
    while True:
        group, elsewhere = job_processes(info, job_id, trusted=True)
        pids = sorted(group + elsewhere)
        if not pids:
            break
        left = read_json(path) or {}
        if left.get("pids") != pids:
            write_json(path, {"main_exit_code": exit_code, "pids": pids, "since": now()})
        if now() - last_beat >= HEARTBEAT_SECONDS:
            with open(hb, "a"):
                os.utime(hb, None)
            last_beat = now()
        time.sleep(LEFTOVER_POLL_SECONDS)
    try:
        os.unlink(path)
    except OSError:
        pass


def owned_jobs(root, owner):
    """Job ids started for ``owner`` (all when None), oldest request first."""
    try:
        ids = os.listdir(root.jobs)
    except OSError:
        return []
    found = []
    for job_id in ids:
        cmd = read_json(os.path.join(root.jobs, job_id, "cmd.json"))
        if cmd is None or (owner is not None and cmd.get("owner") != owner):
            continue
        found.append((cmd.get("requested_at") or 0, job_id))
    return [job_id for _, job_id in sorted(found)]


def split_owner(args):
    """(owner, other args) from args that may hold ``--owner NAME``."""
    if "--owner" in args:
        i = args.index("--owner")
        return args[i + 1], args[:i] + args[i + 2 :]
    return None, list(args)


def cmd_status(root, args):
    """status [JOB...] [--owner NAME] | status --running: the named jobs, or all of
    NAME's, or every running (or pending) job under ROOT whoever started it."""
    if args == ["--running"]:
        print(json.dumps(running_jobs(root)))
        return
    owner, ids = split_owner(args)
    print(json.dumps([job_status(root, j) for j in ids or owned_jobs(root, owner)]))


def cmd_cancel(root, args):
    """cancel JOB [GRACE] | cancel --all [GRACE] [--owner NAME]

    SIGTERM to the job's processes, SIGKILL after GRACE seconds. A job that has
    ended but left processes behind has those ended too. Only processes shown to be
    the job's (see job_processes) are ever signalled."""
    owner, rest = split_owner(args)
    if rest and rest[0] == "--all":
        grace = float(rest[1]) if len(rest) > 1 else 10.0
        print(json.dumps([cancel_job(root, j, grace) for j in owned_jobs(root, owner)]))
        return
    grace = float(rest[1]) if len(rest) > 1 else 10.0
    print(json.dumps(cancel_job(root, rest[0], grace)))


def cancel_job(root, job_id, grace):
    d = root.job_dir(job_id)
    st = job_status(root, job_id)
    if st["status"] == "unknown":
        return st
    pid = read_json(os.path.join(d, "pid.json"))
    if st["status"] not in ("running", "pending"):
        if pid:
            _end_job(pid, job_id, grace)
        return st
    with open(os.path.join(d, "cancelled"), "w") as f:
        f.write(str(now()))
    deadline = now() + 5
    while pid is None and now() < deadline:
        time.sleep(0.05)
        pid = read_json(os.path.join(d, "pid.json"))
    if pid:
        _end_job(pid, job_id, grace)
    else:
        _never_started(d)  # a supervisor that starts later sees `cancelled` and stops
    deadline = now() + HEARTBEAT_SECONDS + 5
    while not os.path.exists(os.path.join(d, "exit.json")) and now() < deadline:
        if not supervisor_alive(pid or {}, job_id):
            break
        time.sleep(0.05)
    return job_status(root, job_id)


def _never_started(d):
    path = os.path.join(d, "exit.json")
    if not os.path.exists(path):
        write_json(
            path,
            {
                "exit_code": None,
                "signal": None,
                "ended_at": now(),
                "reason": "cancelled before it started",
            },
        )


def _end_job(pid_info, job_id, grace):
    """SIGTERM, then SIGKILL after ``grace``, to the job's proven processes (the
    whole group while its supervisor, which watches it, lives)."""
    trusted = supervisor_alive(pid_info, job_id)
    if not _signal_job(pid_info, job_id, signal.SIGTERM, trusted):
        return
    deadline = now() + grace
    while any(job_processes(pid_info, job_id, trusted)) and now() < deadline:
        time.sleep(0.05)
    _signal_job(pid_info, job_id, signal.SIGKILL, trusted)


def _signal_job(pid_info, job_id, sig, trusted):
    """Signal what job_processes finds; False when there was nothing to signal."""
    group, elsewhere = job_processes(pid_info, job_id, trusted)
    targets = [(os.killpg, pid_info["pgid"])] if group else []
    targets += [(os.kill, p) for p in elsewhere]
    for kill, target in targets:
        try:
            kill(target, sig)
        except ProcessLookupError:
            pass
    return bool(targets)


def cmd_read(root, args):
    """read JOB OFFSET LIMIT [--b64]: log bytes from OFFSET, at most LIMIT of them."""
    job_id, offset, limit = args[0], int(args[1]), int(args[2])
    path = os.path.join(root.job_dir(job_id), "log")
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(limit)
    except FileNotFoundError:
        data = b""
    if "--b64" in args[3:]:
        data = base64.b64encode(data) + b"\n"
    sys.stdout.buffer.write(data)


def cmd_tail(root, args):
    """tail JOB OFFSET: stream the log from OFFSET until the job has ended."""
    job_id, offset = args[0], int(args[1])
    d = root.job_dir(job_id)
    path = os.path.join(d, "log")
    out = sys.stdout.buffer
    f = None
    idle = 0
    while True:
        if f is None:
            try:
                f = open(path, "rb")
                f.seek(offset)
            except FileNotFoundError:
                f = None
        data = f.read(65536) if f else b""
        if data:
            out.write(data)
            out.flush()
            idle = 0
            continue
        idle += 1
        # check for the end only when the log is drained; exit.json is written
        # after the job's output is complete.
        if idle % 250 == 0:  # every 5 s: a client is still following
            _guard().on_contact(root)
        if idle % 10 == 1:
            st = job_status(root, job_id)
            if st["status"] not in ("running", "pending"):
                data = f.read() if f else b""
                if data:
                    out.write(data)
                    out.flush()
                return
        time.sleep(0.02)


def cmd_files(root, args):
    """files DIR [--unless DIGEST] [--wait SECONDS] [--job JOB]: DIR's files (relative
    to the work directory unless absolute) with which are settled (see files.py); with
    --wait, the answer comes once they differ from the answer whose digest is DIGEST,
    or after SECONDS, or (with --job) once JOB has ended, which the answer then says
    (``job_ended``)."""
    files = _sibling("files")
    opts = {args[i]: args[i + 1] for i in range(1, len(args) - 1, 2)}
    path = args[0] if os.path.isabs(args[0]) else os.path.join(root.work, args[0])
    wait = min(float(opts.get("--wait", 0)), 60.0)
    job_id = opts.get("--job")
    ended = None
    if job_id:

        def ended():
            return job_status(root, job_id)["status"] not in ("running", "pending")

    answer = files.watch(path, opts.get("--unless"), wait, until=ended)
    if ended is not None:
        answer["job_ended"] = ended()
    print(json.dumps(answer))


def cmd_touch(root, args):
    """touch: nothing but the contact every command makes (a client is still here)."""
    print("{}")


COMMANDS = {
    "info": cmd_info,
    "touch": cmd_touch,
    "start": cmd_start,
    "supervise": cmd_supervise,
    "status": cmd_status,
    "cancel": cmd_cancel,
    "read": cmd_read,
    "tail": cmd_tail,
    "files": cmd_files,
}


def _sibling(name):
    """A module of the runtime, next to this file (imported late: guard imports this one)."""
    import importlib

    if __package__:  # imported as part of the trainctl package
        return importlib.import_module("." + name, __package__)
    return importlib.import_module(name)


def _guard():
    return _sibling("guard")


def main(argv):
    commands = dict(COMMANDS, **_guard().COMMANDS)
    if len(argv) < 3 or argv[0] != "--root" or argv[2] not in commands:
        fail("usage: jobrunner.py --root ROOT {%s} ..." % ",".join(sorted(commands)))
    if argv[2] in ("read", "tail"):
        # a reader interrupted with its client (Ctrl-C, closed pipe) ends quietly
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    root = Root(argv[1])
    if argv[2] not in ("supervise", "guard-run", "guard-set", "guard-stop"):
        # a trainctl command: a client is here (guard-set starts the guard itself, once
        # its new policy is written: an old one could release the machine first)
        _guard().on_contact(root)
    commands[argv[2]](root, argv[3:])


if __name__ == "__main__":
    main(sys.argv[1:])
