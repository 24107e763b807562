"""How the supervisor starts a job's process: its setup step and its container.

Runs on the training machine, standard library only, kept compatible with Python 3.8.

Setup: the job's ``setup`` text runs before its command, in the same process group,
with the same environment and log, through a small ``sh`` wrapper that then ``exec``s
the command (so the job's pid, signals and exit code stay the command's). The setup
runs with ``bash -e`` (``sh -e`` where bash is missing): its first failing command
fails it, and the job then ends with the setup's exit code; a spec with
``"setup_errexit": false`` runs it with plain ``bash`` as SkyPilot does (only its last
command's status counts). A setup that succeeded is remembered per machine under a key
made of its text, its mode, its directory and the contents of the files it names
(``pip install -r requirements.txt`` names requirements.txt), so the next job with the
same key skips it. In a container (``image``) nothing persists
between jobs, so the setup runs in every one.

Container: ``docker run`` with the work directory (and a checkpoint directory, and the
job's file mounts, outside it) mounted at the same path, the job's working directory,
the host's user (files stay the user's), host networking (a port the job serves is the
machine's, for `trainctl forward`), the host's IPC namespace (PyTorch's data loaders
share memory) and every GPU where the machine has NVIDIA's driver. The environment goes
by name only (``-e NAME``): docker reads each value from its own environment, never from
its command line. With ``--init`` the container's first process passes SIGTERM on to the
job, and docker's client passes on the signals it gets, so `cancel` reaches the job as
it does a bare one; the container carries the job's marker (TRAINCTL_JOB_ID), so its
processes are found and signalled like any of the job's (see jobrunner.job_processes).
"""

import hashlib
import os
import shlex
import shutil
import subprocess

#: the docker client to use (tests name another)
DOCKER_ENV = "TRAINCTL_DOCKER"
#: the variables the job runtime gives every job (beside the job's own)
JOB_VARS = ("TRAINCTL_JOB_ID", "TRAINCTL_CHECKPOINT_DIR", "PYTHONUNBUFFERED")
#: setup lines in the job's log start with this
MARK = "[trainctl] setup:"

_WRAPPER = r"""
d=$1; cache=$2; e=$3; shift 3
echo '[trainctl] setup: running'
if command -v bash >/dev/null 2>&1; then bash $e "$d/setup.sh"; else sh $e "$d/setup.sh"; fi
rc=$?
if [ "$rc" -ne 0 ]; then
  echo "[trainctl] setup: failed with exit code $rc; the command did not start"
  printf '%s' "$rc" > "$d/failed" 2>/dev/null
  exit "$rc"
fi
if [ -n "$cache" ]; then : > "$cache"; fi
echo '[trainctl] setup: done; starting the command'
exec "$@"
"""


def docker():
    return os.environ.get(DOCKER_ENV) or "docker"


def container_name(job_id):
    return "trainctl-" + job_id


def check_docker(image):
    """None when docker can run ``image``'s jobs here, else why not (one sentence)."""
    tool = shutil.which(docker())
    if not tool:
        return (
            "--image %s needs Docker, which is not installed on this machine "
            "(install Docker Engine and NVIDIA Container Toolkit, or run without --image)"
            % image
        )
    try:
        r = subprocess.run(
            [tool, "version", "--format", "{{.Server.Version}}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return "docker did not answer on this machine: %s" % e
    if r.returncode != 0:
        lines = (r.stderr or r.stdout).decode("utf-8", "replace").strip().splitlines()
        return "docker cannot run containers for this user here: %s" % (
            lines[-1] if lines else "exit %d" % r.returncode
        )
    return None


def setup_key(text, cwd, errexit=True):
    """The key a setup is remembered by: its text, its mode (``errexit``), where it
    runs, and the contents of the files it names (each word, or the part after ``=``,
    that is a file there)."""
    h = hashlib.sha256()
    h.update(cwd.encode() + b"\0" + text.encode() + b"\0")
    if not errexit:
        h.update(b"no-errexit\0")
    for path in sorted(_named_files(text, cwd)):
        h.update(path.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()[:32]


def _named_files(text, cwd):
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # words as the shell splits them, `;`, `&&`, `|` apart
    try:
        words = list(lexer)
    except ValueError:  # an unbalanced quote: the shell will say so; take plain words
        words = text.split()
    found = set()
    for word in words:
        for candidate in (word, word.partition("=")[2]):
            if not candidate:
                continue
            path = os.path.normpath(os.path.join(cwd, os.path.expanduser(candidate)))
            if os.path.isfile(path):
                found.add(path)
    return found


class Launch:
    """The argv the supervisor starts for job ``job_id`` (see the module docstring);
    ``notes`` are lines for the job's log before it starts."""

    def __init__(self, root, job_id, spec, env):
        self.root = root
        self.job_dir = root.job_dir(job_id)
        self.job_id = job_id
        self.spec = spec
        self.env = env
        self.notes = []
        self.setup_dir = os.path.join(self.job_dir, "setup")
        self.argv = self._argv()

    def _argv(self):
        spec = self.spec
        argv = list(spec["argv"])
        setup = spec.get("setup")
        image = spec.get("image")
        if setup:
            os.makedirs(self.setup_dir, exist_ok=True)
            with open(os.path.join(self.setup_dir, "setup.sh"), "w") as f:
                f.write(setup if setup.endswith("\n") else setup + "\n")
            cache = "" if image else self._cache_path(setup)
            if cache and os.path.exists(cache):
                self.notes.append(
                    "%s skipped: it ran on this machine before with the same text and "
                    "files (--no-setup skips it always)" % MARK
                )
            else:
                d = "/.trainctl-setup" if image else self.setup_dir
                # "-e" or "": a word of its own, unquoted in the wrapper
                e = "-e" if self._errexit() else ""
                argv = ["sh", "-c", _WRAPPER, "trainctl-setup", d, cache, e] + argv
        if image:
            argv = self._docker(image) + argv
        return argv

    def _cache_path(self, setup):
        cache_dir = os.path.join(self.root.path, "setup-done")
        os.makedirs(cache_dir, exist_ok=True)
        return os.path.join(cache_dir, setup_key(setup, self.spec["cwd"], self._errexit()))

    def _errexit(self):
        return self.spec.get("setup_errexit", True) is not False

    def _docker(self, image):
        work = self.root.work
        mounts = [work]
        # the checkpoint directory and the job's file mounts, where outside the work one
        for path in [self.spec["checkpoint_dir"]] + list(self.spec.get("mounts") or []):
            if not (path + "/").startswith(work + "/") and path not in mounts:
                mounts.append(path)
        argv = [docker(), "run", "--rm", "--init", "--name", container_name(self.job_id)]
        argv += ["--user", "%d:%d" % (os.getuid(), os.getgid())]
        argv += ["--network", "host", "--ipc", "host"]
        if shutil.which("nvidia-smi"):
            argv += ["--gpus", "all"]
        for path in mounts:
            argv += ["-v", "%s:%s" % (path, path)]
        if self.spec.get("setup"):
            argv += ["-v", "%s:/.trainctl-setup" % self.setup_dir]
        argv += ["-w", self.spec["cwd"]]
        for name in sorted(self.env_names()):
            argv += ["-e", name]
        return argv + ["--", image]

    def env_names(self):
        """What goes into the container: the job's own variables and trainctl's."""
        return set(self.spec.get("env") or {}) | set(JOB_VARS)

    def reason(self, exit_code):
        """Why the job ended, when it was its setup or docker and not its command."""
        try:
            with open(os.path.join(self.setup_dir, "failed")) as f:
                return "the setup failed with exit code %d" % int(f.read().strip())
        except (OSError, ValueError):
            pass
        if self.spec.get("image") and exit_code == 125:  # docker run's own failure
            return "docker could not run the container (exit 125): the log says why"
        return None

    def after(self):
        """Once the started process has ended: no container outlives it (docker's
        client may have been killed while its container ran)."""
        if not self.spec.get("image"):
            return
        try:
            subprocess.run(
                [docker(), "rm", "--force", container_name(self.job_id)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
            )
        except (OSError, subprocess.TimeoutExpired):
            pass
