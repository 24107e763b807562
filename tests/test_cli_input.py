"""The CLI's parsing of what users type and write: job commands, --debug, task files,
environment values."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from cli_helpers import trainctl
from trainctl.cli import taskfile
from trainctl.cli.envfile import job_env, read_env_file
from trainctl.cli.main import main
from trainctl.errors import BadInput


def create(name="box"):
    r = trainctl("create", "--provider", "local", "--name", name, "--json")
    assert r.code == 0, r.err


# --- the job's command owns everything from its first word ------------------------


def test_flags_after_the_command_belong_to_the_command():
    create()
    r = trainctl("train", "box", "--no-sync", "echo", "hello", "-d", "--json")
    # not detached, not JSON: the job printed its own arguments and was followed
    assert r.code == 0, r.err
    assert "hello -d --json" in r.out


def test_run_keeps_flags_after_the_command(tmp_path):
    r = trainctl(
        "run", "--provider", "local", "--no-sync", "echo", "x", "--keep", "-o", "y", cwd=tmp_path
    )
    assert r.code == 0, r.err
    assert "x --keep -o y" in r.out
    assert "terminated" in r.err  # --keep went to echo, so the machine was released


def test_options_before_the_command_still_count():
    create()
    r = trainctl("train", "box", "-e", "A=1", "--no-sync", "-d", "--json", "sh", "-c", "echo $A")
    assert r.code == 0, r.err
    assert r.json()["status"] in ("running", "completed")


# --- --debug anywhere before the command, the -- hint only where it helps ----------


def test_debug_after_the_subcommand_shows_the_traceback():
    r = trainctl("status", "missing", "--debug")
    assert r.code == 3 and "Traceback" in r.err
    r = trainctl("list", "--debug")
    assert r.code == 0 and "Traceback" not in r.err and "--" not in r.err


def test_dash_dash_hint_only_on_commands_taking_a_command():
    r = trainctl("list", "--bogus")
    assert r.code == 2 and "No such option" in r.err and "after --" not in r.err
    create()
    r = trainctl("train", "box", "--bogus", "python")
    assert r.code == 2 and "after --" in r.err


def test_debug_after_the_job_command_belongs_to_the_job():
    create()
    r = trainctl("train", "box", "--no-sync", "echo", "--debug")
    assert r.code == 0 and "--debug" in r.out


# --- task files --------------------------------------------------------------------


def run_file(tmp_path: Path, content: bytes) -> tuple[int, str]:
    task = tmp_path / "task.yaml"
    task.write_bytes(content)
    r = trainctl("run", "-f", str(task), "--provider", "local", "--no-sync")
    return r.code, r.err


def test_task_file_with_binary_bytes(tmp_path):
    code, err = run_file(tmp_path, b"name: a\ncommand: [\xff\xfe]\n")
    assert code == 2 and "not UTF-8" in err and "line 2" in err and "Traceback" not in err


def test_bad_yaml_names_line_and_column(tmp_path):
    code, err = run_file(tmp_path, b"name: a\ncommand: [echo\nkeep: true\n")
    assert code == 2 and "line 3, column 5" in err, err


def test_alias_bomb_is_refused(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    code, err = run_file(tmp_path, bomb.encode())
    assert code == 2 and "aliases" in err and "line 1" in err


def test_task_file_size_is_capped(tmp_path):
    code, err = run_file(tmp_path, b"# " + b"x" * (taskfile.MAX_BYTES + 10) + b"\n")
    assert code == 2 and "larger than 1024 KiB" in err


def test_nested_values_are_refused(tmp_path):
    code, err = run_file(tmp_path, b"env: {A: [1, 2]}\ncommand: [echo]\n")
    assert code == 2 and "only strings and numbers" in err


BASE = b"""\
name: exp1
provider: local
gpu: A100:1
workdir: .
env: {LR: "0.01", EPOCHS: 3}
tags: {team: ml}
command: [python, train.py, --epochs, "5"]
outputs: [checkpoints]
max_price: 1.5
spot: false
"""
SPECIALS = [
    b"&a ",
    b"*a",
    b"[",
    b"]",
    b"{",
    b"}",
    b": ",
    b"- ",
    b"\xff",
    b"\xc3",
    b"\x00",
    b"!!python/object:os.system ",
    b"!!binary ",
    b"\t",
    b"'",
    b'"',
    b"\n  ",
    b"? ",
    b"%YAML 1.1\n",
    b"---\n",
    b"[" * 200,
    b"0x",
    b"~",
    b"2020-01-01",
    b"\xef\xbb\xbf",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        pos = rng.randint(0, len(out))
        op = rng.random()
        if op < 0.4:
            out[pos:pos] = rng.choice(SPECIALS)
        elif op < 0.6:
            out[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op < 0.8:
            del out[pos : pos + rng.randint(1, 8)]
        else:
            out[pos:pos] = out[rng.randint(0, len(out)) :][: rng.randint(1, 30)]
    return bytes(out)


def test_500_fuzzed_task_files_give_no_internal_error(tmp_path, capsys):
    """Through the real entry point (in this process, for speed): each mutated file is
    either refused as bad input or accepted; nothing reaches a provider, since
    --provider names none."""
    rng = random.Random(20261206)
    task = tmp_path / "task.yaml"
    codes: dict[int, int] = {}
    for i in range(500):
        task.write_bytes(mutate(rng, BASE))
        code = main(["run", "-f", str(task), "--provider", "no-such-provider", "--no-sync"])
        err = capsys.readouterr().err
        assert code == 2 and "internal error" not in err, (i, task.read_bytes(), err)
        codes[code] = codes.get(code, 0) + 1
    assert codes == {2: 500}


# --- environment values ------------------------------------------------------------


def test_env_name_takes_the_local_value_and_unset_is_an_error():
    assert job_env(["TOKEN", "A=1=2"], environ={"TOKEN": "s"}) == {"TOKEN": "s", "A": "1=2"}
    with pytest.raises(BadInput, match="TOKEN is not set"):
        job_env(["TOKEN"], environ={})


def test_env_file_format(tmp_path):
    f = tmp_path / "vars.env"
    f.write_text(
        "# comment\n\nexport A=1\nB = two words  # note\nC='lit $x \\n'\n"
        'D="q \\"x\\" \\n"\nE=\nF=a#b\n'
    )
    assert read_env_file(str(f)) == {
        "A": "1",
        "B": "two words",
        "C": "lit $x \\n",
        "D": 'q "x" \n',
        "E": "",
        "F": "a#b",
    }
    f.write_text("A=1\nnot a line\n")
    with pytest.raises(BadInput, match="line 2"):
        read_env_file(str(f))
    f.write_text('A="open\n')
    with pytest.raises(BadInput, match="missing closing"):
        read_env_file(str(f))


def test_env_from_environment_and_file_reach_the_job_not_ps(tmp_path, trainctl_home):
    create()
    secret, other = "from-env-" + "7" * 8, "from-file-" + "9" * 8
    envf = tmp_path / "job.env"
    envf.write_text(f"OTHER={other}\nexport THIRD='x y'\n")
    code = "import os; print(os.environ['TOKEN'], os.environ['OTHER'], os.environ['THIRD'])"
    import os
    import subprocess

    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainctl",
            "train",
            "box",
            "--no-sync",
            "-e",
            "TOKEN",
            "--env-file",
            str(envf),
            "--",
            sys.executable,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "TOKEN": secret},
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert f"{secret} {other} x y" in p.stdout
    # the log holds what the job printed; nothing else on disk holds the values
    stored = b"".join(
        f.read_bytes() for f in trainctl_home.rglob("*") if f.is_file() and f.name != "log"
    )
    assert secret.encode() not in stored and other.encode() not in stored


def test_task_file_env_file(tmp_path):
    (tmp_path / "vars.env").write_text("GREETING=hi there\n")
    task = tmp_path / "task.yaml"
    task.write_text(
        "provider: local\nenv_file: vars.env\n"
        f"command: [{sys.executable!r}, -c, 'import os; print(os.environ[\"GREETING\"])']\n"
    )
    r = trainctl("run", "-f", str(task), "--no-sync", cwd=tmp_path)
    assert r.code == 0, r.err
    assert "hi there" in r.out


def test_help_says_how_to_keep_values_out_of_ps():
    r = trainctl("train", "--help")
    assert "out of `ps`" in " ".join(r.out.split())


def test_catalog_refresh_without_boto3_names_the_extra(tmp_path):
    """boto3 and botocore made unimportable, as on an install without the aws extra."""
    import subprocess

    code = (
        "import sys; sys.modules['boto3'] = sys.modules['botocore'] = None\n"
        "from trainctl.cli.main import main\n"
        "sys.exit(main(['catalog', 'refresh', '--provider', 'aws']))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert "internal error" not in p.stdout + p.stderr
    assert "pip install 'trainctl[aws]'" in p.stdout + p.stderr


def test_json_inside_the_job_command_is_the_jobs():
    """An error after `train box cmd --json` is text: --json belongs to the command."""
    r = trainctl("train", "missing", "--no-sync", "echo", "--json")
    assert r.code == 3 and r.err.startswith("error: ") and "{" not in r.err
    r = trainctl("train", "missing", "--no-sync", "--json", "echo")
    assert r.code == 3 and r.error()["exit_code"] == 3


def test_json_errors_always_carry_the_documented_keys():
    """The README's error document: type, message, exit_code and hint (null if none)."""
    r = trainctl("status", "nosuch", "--json")
    assert r.code == 3
    assert set(r.error()) == {"type", "message", "exit_code", "hint"}


def test_task_file_recover_and_retry_on_failure(tmp_path):
    task = tmp_path / "task.yaml"
    flaky = "import os, sys; os.path.exists('tried') or (open('tried', 'w'), sys.exit(3))"
    task.write_text(
        "provider: local\nrecover: true\nretry_on_failure: true\n"
        f"command: [{sys.executable!r}, -c, {flaky!r}]\n"
    )
    r = trainctl("run", "-f", str(task), "--no-sync", cwd=tmp_path)
    assert r.code == 0, r.err
    assert "attempt 2: running it again" in r.err and "2 attempts" in r.err
    task.write_text("provider: local\nrecover: -1\ncommand: [true]\n")
    r = trainctl("run", "-f", str(task), "--no-sync", cwd=tmp_path)
    assert r.code == 2 and "recover must be a number of recoveries" in r.err
    assert "Traceback" not in r.err


def test_retry_on_failure_without_recover_is_refused():
    r = trainctl("run", "-p", "local", "--retry-on-failure", "--no-sync", "--", "true")
    assert r.code == 2 and "--retry-on-failure needs --recover" in r.err
