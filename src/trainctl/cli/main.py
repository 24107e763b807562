"""Entry point: a click group whose subcommands load on first use.

Exit codes: 0 success, 1 operation failed, 2 bad usage or input, 3 resource or job
not found, 4 credentials missing or rejected, 130 interrupted; `monitor --follow`
and `run` exit with the job's own exit code.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from .. import interrupts
from ..errors import TrainctlError
from .output import error_document

#: command name -> ("module:attribute", one-line help shown by --help)
COMMANDS: dict[str, tuple[str, str]] = {
    "create": ("trainctl.cli.create:create", "Create a machine on a provider."),
    "list": ("trainctl.cli.resources:list_cmd", "List trainctl's machines."),
    "status": ("trainctl.cli.resources:status", "Show one machine's state."),
    "terminate": ("trainctl.cli.resources:terminate", "Release a machine so it stops billing."),
    "adopt": ("trainctl.cli.resources:adopt", "Record an untracked machine again."),
    "stop": ("trainctl.cli.resources:stop", "Stop a machine (where the provider can)."),
    "start": ("trainctl.cli.resources:start", "Start a stopped machine."),
    "autostop": ("trainctl.cli.autostop:autostop", "Show or change a machine's guards."),
    "train": ("trainctl.cli.jobs:train", "Sync code to a machine and start a job."),
    "monitor": ("trainctl.cli.jobs:monitor", "Print (or follow) a job's log."),
    "logs": ("trainctl.cli.jobs:monitor", "Alias of monitor."),
    "jobs": ("trainctl.cli.jobs:jobs", "List jobs and their states."),
    "runs": ("trainctl.cli.runs:runs", "Every run, kept after its machine is gone; costs."),
    "cancel": ("trainctl.cli.jobs:cancel", "Cancel a running job."),
    "download": ("trainctl.cli.jobs:download", "Copy files from a machine."),
    "ssh": ("trainctl.cli.access:ssh", "A shell (or a command) on a machine."),
    "forward": ("trainctl.cli.access:forward", "Forward a machine's ports here."),
    "ssh-config": ("trainctl.cli.access:ssh_config", "Host entries for your own ssh."),
    "run": ("trainctl.cli.run:run", "Create, train, follow, download, terminate."),
    "providers": ("trainctl.cli.providers:providers", "Provider commands (list, compare)."),
    "catalog": ("trainctl.cli.catalog:catalog", "Price catalog commands (refresh)."),
    "check": ("trainctl.cli.providers:check", "Which providers are usable here, and why not."),
    "aws": ("trainctl.providers.aws.cli:aws", "AWS commands (setup)."),
}


#: set by any command's --debug (see ``debug_option``)
_debug = {"on": False}
#: set by a command's --json once its options are parsed (None: not parsed yet)
_json: dict[str, bool | None] = {"on": None}


def note_json(value: bool) -> None:
    _json["on"] = value


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        _debug["on"] = True
        logging.getLogger("trainctl").setLevel(logging.DEBUG)


class _LogLine(logging.Formatter):
    """``warning: ...`` for what the user should know; with --debug, every record of
    trainctl's logger (retries, polls) as ``debug: logger: ...``."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno >= logging.WARNING:
            return f"warning: {record.getMessage()}"
        return f"debug: {record.name}: {record.getMessage()}"


class _Stderr(logging.Handler):
    """Writes to the stderr of the moment (tests swap it), not the one at start."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never break a command
            self.handleError(record)


def _setup_logging() -> None:
    """The library logs to the ``trainctl`` logger and never prints; the CLI shows
    its warnings, and everything with --debug (or TRAINCTL_DEBUG=1)."""
    logger = logging.getLogger("trainctl")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        handler = _Stderr()
        handler.setFormatter(_LogLine())
        logger.addHandler(handler)
    # without --debug the level is the root logger's (warnings and above by default)
    debug = os.environ.get("TRAINCTL_DEBUG") == "1"
    logger.setLevel(logging.DEBUG if debug else logging.NOTSET)


def debug_option() -> click.Option:
    """``--debug`` as an option of every command, so it works after the subcommand too
    (``trainctl list --debug``); in a job command it counts only before the command."""
    return click.Option(
        ["--debug"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_debug,
        help="Show tracebacks on errors, and trainctl's log (retries, polls).",
    )


class LazyGroup(click.Group):
    """A group whose commands are imported only when invoked (fast --help).
    Every command gets the ``--debug`` option."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.lazy, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            target, _ = self.lazy[name]
            module, _, attr = target.partition(":")
            return _with_debug(getattr(importlib.import_module(module), attr))
        command = super().get_command(ctx, name)
        return _with_debug(command) if command else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        rows += [
            (name, cmd.get_short_help_str())
            for name, cmd in sorted(self.commands.items())
            if name not in self.lazy
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _with_debug(command: click.Command) -> click.Command:
    if not any(p.name == "debug" for p in command.params):
        command.params.append(debug_option())
    return command


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="Exit codes: 0 ok, 1 failed, 2 bad input, 3 not found, 4 credentials; "
    "monitor --follow and run exit with the job's own code.",
)
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show tracebacks on errors (also accepted after the subcommand).",
)
@click.version_option(package_name="trainctl")
def cli() -> None:
    """trainctl: run ML training jobs on rented GPUs through one interface."""


def _json_mode(argv: list[str]) -> bool:
    """Whether errors are JSON documents: the command's own --json once its options
    are parsed (a --json inside a job's command is the job's), else --json given
    before any `--`."""
    if _json["on"] is not None:
        return bool(_json["on"])
    head = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in head


def _fail(message: str, exit_code: int, kind: str, json_mode: bool, hint: str | None = None) -> int:
    if json_mode:
        click.echo(error_document(kind, message, exit_code, hint), err=True)
    else:
        # an interrupt is what the user asked for, not an error
        prefix = "" if kind == "interrupted" else "error: "
        click.echo(f"{prefix}{message}" + (f" ({hint})" if hint else ""), err=True)
    return exit_code


def _traceback() -> None:
    """With --debug, the traceback goes to stderr; the exit code stays the same."""
    if _debug["on"] or os.environ.get("TRAINCTL_DEBUG") == "1":
        import traceback

        traceback.print_exc()


def _takes_command(ctx: click.Context | None) -> bool:
    from .common import JobCommand

    return ctx is not None and isinstance(ctx.command, JobCommand)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _debug["on"], _json["on"] = False, None
    _setup_logging()
    try:
        result = cli.main(args=argv, prog_name="trainctl", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.exceptions.Abort as e:
        # click turns an interrupt during a command into Abort; a declined prompt is one too
        cause = e.__cause__ if isinstance(e.__cause__, KeyboardInterrupt) else None
        message = f"{interrupts.name(cause)}: interrupted" if cause else "aborted"
        return _fail(message, 130, "interrupted", _json_mode(argv))
    except click.ClickException as e:
        _traceback()
        hint = None
        if isinstance(e, click.NoSuchOption) and _takes_command(e.ctx):
            hint = (
                "put the job's command after --, e.g. trainctl train RES -- python train.py --lr 1"
            )
        return _fail(e.format_message(), 2, "usage", _json_mode(argv), hint)
    except TrainctlError as e:
        _traceback()
        return _fail(e.message, e.exit_code, e.kind, _json_mode(argv), e.hint)
    except KeyboardInterrupt as e:
        return _fail(f"{interrupts.name(e)}: interrupted", 130, "interrupted", _json_mode(argv))
    except Exception as e:
        _traceback()
        return _fail(
            f"internal error: {type(e).__name__}: {e} (run with --debug for details)",
            1,
            "internal",
            _json_mode(argv),
        )
    return result if isinstance(result, int) else 0
