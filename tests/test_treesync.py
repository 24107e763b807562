"""The SSM tree sync run locally: ``treesync`` builds the bundle here and
``treeapply.py`` applies it in a subprocess, as a machine does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from trainctl.remote import treesync


def sync(src: Path, dest: Path, manifest: treesync.Manifest, *, delete: bool = False) -> dict:
    """One put_tree as the SSM remote does it: send what changed, then what the
    machine names stale; the manifest is saved once the machine matches."""
    previous = manifest.load(str(dest))
    snap = treesync.scan(src, previous)
    send = treesync.changed(snap, previous)
    for _ in range(2):
        data = treesync.bundle(src, snap, send, delete=delete, protect=[])
        r = subprocess.run(
            [sys.executable, "-c", treesync.apply_script(), str(dest)],
            input=data,
            capture_output=True,
            check=False,
        )
        assert r.returncode == 0, r.stderr.decode()
        answer = json.loads(r.stdout)
        send = answer["stale"]
        if not send:
            manifest.save(str(dest), snap)
            return answer
        delete = False
    raise AssertionError(f"still stale: {send}")


def test_a_file_that_becomes_a_directory(tmp_path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    manifest = treesync.Manifest(tmp_path / "manifest.json")
    src.mkdir()
    (src / "x").write_text("a file\n")
    sync(src, dest, manifest)
    (src / "x").unlink()
    (src / "x").mkdir()
    (src / "x" / "y").write_text("now a directory\n")
    sync(src, dest, manifest)
    assert (dest / "x" / "y").read_text() == "now a directory\n"
    assert "x/y" in manifest.load(str(dest))
    (src / "x" / "y").write_text("again\n")
    sync(src, dest, manifest)  # later syncs keep working
    assert (dest / "x" / "y").read_text() == "again\n"


def test_nothing_is_written_through_a_symlink_out_of_the_destination(tmp_path):
    src, dest, outside = tmp_path / "src", tmp_path / "dest", tmp_path / "outside"
    manifest = treesync.Manifest(tmp_path / "manifest.json")
    outside.mkdir()
    src.mkdir()
    (src / "d").symlink_to(outside)  # a directory that is a symlink, sent as one
    (src / "keep").mkdir()
    (src / "keep" / "f").write_text("kept\n")
    sync(src, dest, manifest)
    assert (dest / "d").is_symlink()

    (src / "d").unlink()  # the symlink becomes a real directory
    (src / "d").mkdir()
    (src / "d" / "f").write_text("inside\n")
    (src / "d" / "sub").mkdir()
    (src / "d" / "sub" / "g").write_text("deeper\n")
    # on the machine, a directory and a temporary name are turned into symlinks out
    (dest / "keep" / "f").unlink()
    (dest / "keep").rmdir()
    (dest / "keep").symlink_to(outside)
    (src / "keep" / "f").write_text("changed\n")
    sync(src, dest, manifest)

    assert list(outside.iterdir()) == []
    assert not (dest / "d").is_symlink() and (dest / "d" / "f").read_text() == "inside\n"
    assert (dest / "d" / "sub" / "g").read_text() == "deeper\n"
    assert not (dest / "keep").is_symlink() and (dest / "keep" / "f").read_text() == "changed\n"


def test_a_temporary_name_that_is_a_symlink_is_not_followed(tmp_path):
    src, dest, outside = tmp_path / "src", tmp_path / "dest", tmp_path / "outside.txt"
    manifest = treesync.Manifest(tmp_path / "manifest.json")
    src.mkdir()
    (src / "f").write_text("one\n")
    sync(src, dest, manifest)
    outside.write_text("untouched\n")
    (dest / "f.trainctl-tmp").symlink_to(outside)
    (src / "f").write_text("two\n")
    sync(src, dest, manifest)
    assert outside.read_text() == "untouched\n" and (dest / "f").read_text() == "two\n"
