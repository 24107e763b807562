"""Which files of a directory are complete: standard library only, runs on the machine.

Used by everything that moves checkpoints off the machine while the job runs (the
client's incremental pull, the guard's uploads to an object store). A file is *settled*
(safe to take) when no process this user can see has it open for writing
(``/proc/<pid>/fdinfo``) and it was last modified at least ``SETTLE_SECONDS`` ago (a
writer that reopens it to append is not caught between two writes). A file still being
written is taken on a later look; one written under a temporary name and renamed into
place (``torch.save`` then ``os.replace``) is settled a moment after the rename.
Kept compatible with Python 3.8.
"""

import hashlib
import json
import os

#: a file modified more recently than this is not taken yet
SETTLE_SECONDS = 1.0
#: names that are someone's temporary files, never taken
_TEMPORARY = (".tmp", ".part", ".partial", ".swp", "~")


def scan(root):
    """{relative path: [size, mtime_ns]} of the regular files under ``root`` (symlinks
    and temporary names left out); {} when ``root`` does not exist."""
    found = {}
    top = os.path.abspath(root)
    for here, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".trainctl"))
        for name in files:
            if name.endswith(_TEMPORARY) or ".trainctl-part-" in name:
                continue
            path = os.path.join(here, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue  # gone meanwhile
            if os.path.stat.S_ISREG(st.st_mode):
                found[os.path.relpath(path, top)] = [st.st_size, st.st_mtime_ns]
    return found


def open_for_writing(root):
    """Absolute paths under ``root`` that a process this user can inspect has open
    for writing (O_WRONLY or O_RDWR)."""
    top = os.path.abspath(root) + os.sep
    busy = set()
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return busy
    for pid in pids:
        fd_dir = "/proc/%s/fd" % pid
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue  # another user's, or gone
        for fd in fds:
            try:
                target = os.readlink(os.path.join(fd_dir, fd))
            except OSError:
                continue
            if not target.startswith(top):
                continue
            try:
                with open("/proc/%s/fdinfo/%s" % (pid, fd)) as f:
                    flags = next(
                        (int(line.split()[1], 8) for line in f if line.startswith("flags:")), 0
                    )
            except (OSError, ValueError):
                continue
            if flags & 3:  # O_WRONLY (1) or O_RDWR (2)
                busy.add(target)
    return busy


def settled(root, now):
    """``(files, ready)``: this look at ``root`` (``scan``) and the relative paths in
    it that are settled at ``now``."""
    current = scan(root)
    old = [rel for rel, (_, mtime_ns) in current.items() if now - mtime_ns / 1e9 >= SETTLE_SECONDS]
    if not old:
        return current, []
    busy = open_for_writing(root)
    top = os.path.abspath(root)
    return current, sorted(rel for rel in old if os.path.join(top, rel) not in busy)


def digest(files, ready):
    """What tells one answer's settled files from another's."""
    taken = [[rel] + files[rel] for rel in ready]
    return hashlib.sha256(json.dumps(taken).encode()).hexdigest()[:16]


def watch(root, unless, timeout, poll=0.25, clock=None, until=None):
    """Look at ``root`` until its settled files differ from those of the answer whose
    ``digest`` is ``unless``, or for ``timeout`` seconds, or until ``until()`` is true
    (the job that writes them has ended); the answer:
    ``{"files": {rel: [size, mtime_ns, settled]}, "digest": ...}``. One call waits on
    the machine, so that a client learns of a new checkpoint within ``poll`` seconds
    of it settling, for one round trip per change."""
    import time

    clock = clock or time.time
    end = clock() + timeout
    while True:
        files, ready = settled(root, clock())
        d = digest(files, ready)
        if d != unless or clock() >= end or (until is not None and until()):
            marked = set(ready)
            return {
                "files": {rel: v + [rel in marked] for rel, v in files.items()},
                "digest": d,
            }
        time.sleep(poll)
