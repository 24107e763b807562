"""trainctl tree sync, machine side: standard library only, Python 3.8+.

python3 treeapply.py DEST < bundle.tar.gz

The bundle (built by ``treesync.bundle``) is a gzip'd tar whose first member is a
JSON header describing the whole tree as the client has it: directories, files
(size and modification time as sent) and symlinks, whether to delete what is not
in it, and paths to protect from deletion. The files that changed follow. This
writes them under DEST (each through a temporary name, so a reader never sees half
a file), removes what is gone when asked, and prints one JSON line:
{"stale": [paths not as the header says], "deleted": count}.
"""

import json
import os
import shutil
import stat
import sys
import tarfile

HEADER = ".trainctl-sync.json"


def fail(message):
    sys.stderr.write("treeapply: %s\n" % message)
    sys.exit(2)


def inside(dest, rel):
    parts = rel.split("/")
    if not rel or rel.startswith("/") or ".." in parts:
        fail("refusing path %r" % rel)
    return os.path.join(dest, *parts)


def clear(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)


def real_dirs(dest, rel):
    """Make every component of ``rel`` (a directory under ``dest``) a real directory:
    a file or symlink standing in the way is removed, so nothing is ever written
    through a symlink out of ``dest``."""
    path = dest
    for part in rel.split("/") if rel else []:
        path = os.path.join(path, part)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            os.mkdir(path)
            continue
        if not stat.S_ISDIR(mode):
            os.unlink(path)
            os.mkdir(path)


def under_real_dirs(dest, rel):
    """Whether every parent of ``rel`` under ``dest`` is a real directory."""
    path = dest
    for part in rel.split("/")[:-1]:
        path = os.path.join(path, part)
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return False
        except OSError:
            return False
    return True


def write(dest, member, tar):
    path = inside(dest, member.name)
    real_dirs(dest, os.path.dirname(member.name))
    if member.issym():
        clear(path)
        os.symlink(member.linkname, path)
        return
    if not member.isfile():
        fail("unexpected member %r" % member.name)
    tmp = path + ".trainctl-tmp"
    clear(tmp)
    src = tar.extractfile(member)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(src, out)
    os.chmod(tmp, member.mode & 0o7777)
    os.utime(tmp, (member.mtime, member.mtime))
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    os.replace(tmp, path)


def is_current(dest, rel, want):
    if not under_real_dirs(dest, rel):
        return False
    path = inside(dest, rel)
    if "link" in want:
        return os.path.islink(path) and os.readlink(path) == want["link"]
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_size == want["size"]
        and int(st.st_mtime) == want["mtime"]
    )


def prune(dest, header):
    """Remove what is not in the tree, except protected paths; return how many."""
    keep_files = set(header["files"])
    keep_dirs = set(header["dirs"])
    protect = [p.strip("/") for p in header.get("protect", []) if p.strip("/")]

    def protected(rel):
        return any(rel == p or rel.startswith(p + "/") for p in protect)

    def holds_protected(rel):
        return any(p.startswith(rel + "/") for p in protect)

    deleted = 0
    for root, dirs, files in os.walk(dest):
        base = os.path.relpath(root, dest)
        base = "" if base == "." else base + "/"
        for d in list(dirs):
            rel, full = base + d, os.path.join(root, d)
            if protected(rel):
                dirs.remove(d)
            elif os.path.islink(full):
                dirs.remove(d)
                if rel not in keep_files:
                    os.unlink(full)
                    deleted += 1
            elif rel not in keep_dirs and not holds_protected(rel):
                dirs.remove(d)
                shutil.rmtree(full)
                deleted += 1
        for f in files:
            rel = base + f
            if rel not in keep_files and not protected(rel):
                os.unlink(os.path.join(root, f))
                deleted += 1
    return deleted


def main(argv):
    if len(argv) != 1:
        fail("usage: treeapply.py DEST < bundle")
    dest = os.path.abspath(os.path.expanduser(argv[0]))
    os.makedirs(dest, exist_ok=True)
    header = None
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|gz") as tar:
        for member in tar:
            if header is None:
                if member.name != HEADER:
                    fail("the bundle does not start with its header")
                header = json.loads(tar.extractfile(member).read().decode("utf-8"))
                continue
            write(dest, member, tar)
    if header is None:
        fail("empty bundle")
    for d in header["dirs"]:
        inside(dest, d)
        real_dirs(dest, d)
    deleted = prune(dest, header) if header.get("delete") else 0
    stale = sorted(p for p, want in header["files"].items() if not is_current(dest, p, want))
    sys.stdout.write(json.dumps({"stale": stale, "deleted": deleted}) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
