"""runtime/files.py: which checkpoint files are complete enough to take."""

from __future__ import annotations

import os
import threading
import time

from trainctl.runtime import files


def _age(path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_a_file_open_for_writing_is_not_settled_until_closed(tmp_path):
    done = tmp_path / "epoch1.pt"
    done.write_bytes(b"x" * 10)
    _age(done, 5)
    writing = tmp_path / "sub" / "epoch2.pt"
    writing.parent.mkdir()
    with writing.open("wb") as f:
        f.write(b"y")
        f.flush()
        _age(writing, 5)
        found, ready = files.settled(tmp_path, time.time())
        assert set(found) == {"epoch1.pt", "sub/epoch2.pt"}
        assert ready == ["epoch1.pt"]
    _, ready = files.settled(tmp_path, time.time())
    assert ready == ["epoch1.pt", "sub/epoch2.pt"]


def test_a_file_just_modified_and_temporary_names_wait(tmp_path):
    (tmp_path / "fresh.pt").write_bytes(b"z")
    (tmp_path / "model.pt.tmp").write_bytes(b"z")
    (tmp_path / ".model.pt.trainctl-part-1234").write_bytes(b"z")
    _age(tmp_path / "model.pt.tmp", 5)
    found, ready = files.settled(tmp_path, time.time())
    assert list(found) == ["fresh.pt"] and ready == []
    _, ready = files.settled(tmp_path, time.time() + files.SETTLE_SECONDS + 0.1)
    assert ready == ["fresh.pt"]


def test_watch_answers_when_a_file_settles_and_not_before(tmp_path):
    first = files.watch(tmp_path, None, 0)
    assert first["files"] == {}

    def later() -> None:
        time.sleep(0.3)
        target = tmp_path / "ck.pt"
        (tmp_path / "ck.pt.tmp").write_bytes(b"w" * 100)
        os.replace(tmp_path / "ck.pt.tmp", target)
        _age(target, 5)

    writer = threading.Thread(target=later)
    began = time.monotonic()
    writer.start()
    answer = files.watch(tmp_path, first["digest"], 10, poll=0.05)
    writer.join()
    assert answer["files"] == {"ck.pt": [100, answer["files"]["ck.pt"][1], True]}
    assert time.monotonic() - began < 5
    began = time.monotonic()
    same = files.watch(tmp_path, answer["digest"], 0.3, poll=0.05)
    assert same["digest"] == answer["digest"] and time.monotonic() - began >= 0.3


def test_watch_answers_at_once_when_until_says_so(tmp_path):
    (tmp_path / "ck.pt").write_bytes(b"v")
    first = files.watch(tmp_path, None, 0)
    began = time.monotonic()
    calls = []
    answer = files.watch(
        tmp_path, first["digest"], 10, poll=0.05, until=lambda: calls.append(1) or len(calls) > 2
    )
    assert answer["digest"] == first["digest"]
    assert len(calls) == 3 and time.monotonic() - began < 5
