"""trainctl job runtime: runs on the training machine, standard library only.

Layout under ROOT (``~/.trainctl`` on a remote machine, the workspace for ``local``):
  work/                  the synced code; jobs start here
  jobs/<job-id>/cmd.json argv, cwd, start request time (never the environment)
        pid.json         supervisor pid, job pid (= its process group), start time
        heartbeat        touched every few seconds while the supervisor lives
        log              stdout and stderr of the job, appended
        exit.json        exit code (128+N and the signal when killed by signal N)
        cancelled        written by `cancel` before it signals the job

Every sub-command prints one JSON document, except `read` and `tail`, which print
log bytes. Completion is read from exit.json alone; a job whose processes are all
gone without one is `lost`. Kept compatible with Python 3.8.
"""

import base64
import json
import os
import signal
import subprocess
import sys
import time

HEARTBEAT_SECONDS = 5.0
PENDING_GRACE_SECONDS = 30.0


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


def _is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def group_members(pgid):
    """Pids of the group's live processes, read from /proc; zombies (dead, not yet
    reaped by whichever process inherited them) do not count."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            yield int(entry)


def group_alive(pgid):
    """Whether any process of the group is alive (without /proc: any, zombies too)."""
    if not pgid:
        return False
    if os.path.isdir("/proc/self"):
        return any(True for _ in group_members(pgid))
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def job_status(root, job_id):
    d = root.job_dir(job_id)
    cmd = read_json(os.path.join(d, "cmd.json"))
    if cmd is None:
        return {"job_id": job_id, "status": "unknown", "reason": "no such job"}
    st = {
        "job_id": job_id,
        "command": cmd.get("argv", []),
        "cwd": cmd.get("cwd"),
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
        sup_alive = pid_alive(pid.get("supervisor_pid"), must_contain=job_id)
        if sup_alive or group_alive(pid.get("pgid")):
            st["status"] = "running"
        else:
            st["status"] = "lost"
            st["reason"] = "the job's processes are gone and no exit code was recorded"
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
    print(json.dumps({"root": root.path, "work": root.work, "python": sys.version.split()[0]}))


def cmd_start(root, args):
    spec = json.loads(sys.stdin.read())
    job_id = spec["job_id"]
    d = root.job_dir(job_id)
    os.makedirs(root.jobs, exist_ok=True)
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        fail("job %s already exists" % job_id)
    cwd = os.path.join(root.work, spec.get("cwd") or "")
    write_json(
        os.path.join(d, "cmd.json"),
        {"argv": spec["argv"], "cwd": cwd, "requested_at": now(), "owner": spec.get("owner")},
    )
    spec["cwd"] = cwd
    spec["checkpoint_dir"] = os.path.join(cwd, spec.get("checkpoint_dir") or "checkpoints")
    sup = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--root", root.path, "supervise", job_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(d, "supervisor.err"), "ab"),
        start_new_session=True,
        close_fds=True,
    )
    sup.stdin.write(json.dumps(spec).encode())
    sup.stdin.close()
    deadline = now() + 20
    while now() < deadline:
        if os.path.exists(os.path.join(d, "pid.json")) or os.path.exists(
            os.path.join(d, "exit.json")
        ):
            break
        time.sleep(0.01)
    print(json.dumps(job_status(root, job_id)))


def cmd_supervise(root, args):
    job_id = args[0]
    d = root.job_dir(job_id)
    spec = json.loads(sys.stdin.read())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    env = dict(os.environ)
    env.update(spec.get("env") or {})
    env["TRAINCTL_JOB_ID"] = job_id
    env["TRAINCTL_CHECKPOINT_DIR"] = spec["checkpoint_dir"]
    env.setdefault("PYTHONUNBUFFERED", "1")
    log = open(os.path.join(d, "log"), "ab", buffering=0)
    try:
        os.makedirs(spec["checkpoint_dir"], exist_ok=True)
        proc = subprocess.Popen(
            spec["argv"],
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
    started = now()
    write_json(
        os.path.join(d, "pid.json"),
        {"supervisor_pid": os.getpid(), "pid": proc.pid, "pgid": proc.pid, "started_at": started},
    )
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
    result = {"exit_code": rc, "signal": None, "ended_at": now(), "reason": None}
    if rc < 0:
        sig = -rc
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "signal %d" % sig
        result.update(exit_code=128 + sig, signal=name, reason="killed by %s" % name)
    write_json(os.path.join(d, "exit.json"), result)


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
    """status [JOB...] [--owner NAME]: the named jobs, or all of NAME's."""
    owner, ids = split_owner(args)
    print(json.dumps([job_status(root, j) for j in ids or owned_jobs(root, owner)]))


def leftover_pids(pgid, job_id):
    """Live processes of the job's process group that still carry its job id in
    their environment (so a reused process group id is never mistaken for it)."""
    if not pgid or not os.path.isdir("/proc/self"):
        return []
    marker = ("TRAINCTL_JOB_ID=%s" % job_id).encode()
    pids = []
    for pid in group_members(pgid):
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                if marker in f.read().split(b"\0"):
                    pids.append(pid)
        except OSError:
            continue
    return pids


def cmd_cancel(root, args):
    """cancel JOB [GRACE] | cancel --all [GRACE] [--owner NAME]

    SIGTERM to the job's process group, SIGKILL after GRACE seconds. A job that
    has ended but left processes behind in its group has those ended too."""
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
    pgid = (pid or {}).get("pgid")
    if st["status"] not in ("running", "pending"):
        if leftover_pids(pgid, job_id):
            _end_group(pgid, grace)
        return st
    with open(os.path.join(d, "cancelled"), "w") as f:
        f.write(str(now()))
    deadline = now() + 5
    while pid is None and now() < deadline:
        time.sleep(0.05)
        pid = read_json(os.path.join(d, "pid.json"))
    pgid = (pid or {}).get("pgid")
    if pgid:
        _end_group(pgid, grace)
    deadline = now() + HEARTBEAT_SECONDS + 5
    while not os.path.exists(os.path.join(d, "exit.json")) and now() < deadline:
        if not pid_alive((pid or {}).get("supervisor_pid"), must_contain=job_id):
            break
        time.sleep(0.05)
    return job_status(root, job_id)


def _end_group(pgid, grace):
    _killpg(pgid, signal.SIGTERM)
    deadline = now() + grace
    while group_alive(pgid) and now() < deadline:
        time.sleep(0.05)
    if group_alive(pgid):
        _killpg(pgid, signal.SIGKILL)


def _killpg(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


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
        if idle % 10 == 1:
            st = job_status(root, job_id)
            if st["status"] not in ("running", "pending"):
                data = f.read() if f else b""
                if data:
                    out.write(data)
                    out.flush()
                return
        time.sleep(0.02)


COMMANDS = {
    "info": cmd_info,
    "start": cmd_start,
    "supervise": cmd_supervise,
    "status": cmd_status,
    "cancel": cmd_cancel,
    "read": cmd_read,
    "tail": cmd_tail,
}


def main(argv):
    if len(argv) < 3 or argv[0] != "--root" or argv[2] not in COMMANDS:
        fail("usage: jobrunner.py --root ROOT {%s} ..." % ",".join(sorted(COMMANDS)))
    if argv[2] in ("read", "tail"):
        # a reader interrupted with its client (Ctrl-C, closed pipe) ends quietly
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    COMMANDS[argv[2]](Root(argv[1]), argv[3:])


if __name__ == "__main__":
    main(sys.argv[1:])
