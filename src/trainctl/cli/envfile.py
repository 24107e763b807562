"""The job's environment from the command line: ``-e NAME=VALUE``, ``-e NAME`` (the
value of this environment) and ``--env-file FILE`` (dotenv lines).

The last two keep values out of trainctl's own command line, which every local user
can read with ``ps``. Values travel to the machine on stdin only, never stored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

from ..errors import BadInput

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def job_env(
    envs: Iterable[str], env_files: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Files first, in order, then ``-e`` items (a later one wins)."""
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    for path in env_files:
        env.update(read_env_file(path))
    for item in envs:
        name, sep, value = item.partition("=")
        if not _NAME.match(name):
            raise BadInput(
                f"bad --env {item!r}: expected NAME=VALUE or NAME, with NAME like MY_VAR"
            )
        if not sep:
            if name not in environ:
                raise BadInput(f"bad --env {name}: {name} is not set in this environment")
            value = environ[name]
        env[name] = value
    return env


def read_env_file(path: str) -> dict[str, str]:
    """``NAME=VALUE`` lines; ``#`` comments, blank lines and an ``export `` prefix
    allowed; a value may be in single quotes (literal) or double quotes (``\\n``,
    ``\\"`` and ``\\\\`` escapes); an unquoted value ends at `` #``."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise BadInput(f"cannot read --env-file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise BadInput(f"--env-file {path} is not UTF-8 text") from None
    env: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export "):
            text = text[len("export ") :].lstrip()
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not _NAME.match(name):
            raise BadInput(f"{path}, line {number}: expected NAME=VALUE")
        env[name] = _value(value.strip(), f"{path}, line {number}")
    return env


def _value(raw: str, where: str) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = _closing(raw, quote)
        if end < 0:
            raise BadInput(f"{where}: missing closing {quote}")
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise BadInput(f"{where}: unexpected text after the closing {quote}")
        body = raw[1:end]
        if quote == "'":
            return body
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)
    return re.split(r"\s+#", raw, maxsplit=1)[0].rstrip()


def _closing(raw: str, quote: str) -> int:
    i = 1
    while i < len(raw):
        if raw[i] == "\\" and quote == '"':
            i += 2
            continue
        if raw[i] == quote:
            return i
        i += 1
    return -1
