"""Guards: the limits a machine's guard enforces on the machine itself, and what it
does when one is reached.

- idle stop: no job running and no trainctl command on the machine for that long;
- deadline: ``--max-duration`` after launch;
- spend cap: ``--max-spend`` dollars, the hourly price times the time it was up;
- release: ``stop`` (keeps the disk, where the provider can) or ``terminate``.

Every cloud machine gets an idle stop unless ``never`` is given (30 minutes for
``create``, 10 minutes after the job for ``run``). A machine trainctl cannot release
(``ssh``, ``local``) has guards that end jobs only. The guard itself is
``runtime/guard.py``; this module turns what the user asked for into its policy.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from .errors import BadInput

NEVER = "never"
CREATE_IDLE_SECONDS = 30 * 60.0
RUN_IDLE_SECONDS = 10 * 60.0
RELEASES = ("stop", "terminate")
#: seconds between two looks of the guard, and the grace jobs get at a limit
DEFAULT_INTERVAL = 5.0
DEFAULT_GRACE = 10.0

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}

Limit = float | str | None
"""A limit as asked for: seconds or dollars, ``NEVER`` (off), or None (the default)."""


def parse_duration(value: Any, option: str) -> Limit:
    """``90s``, ``30m``, ``2h``, ``1d``, or ``never``. A bare number is refused: 30
    could mean seconds or minutes, and the wrong guess stops a machine early or
    leaves it billing."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == NEVER:
        return NEVER
    m = _DURATION.match(value) if isinstance(value, str) else None
    seconds = float(m.group(1)) * _UNIT[m.group(2).lower()] if m and m.group(2) else 0.0
    if not m or not seconds > 0 or math.isinf(seconds):
        bare = not isinstance(value, bool) and _DURATION.match(str(value))
        raise BadInput(
            f"bad {option} {value!r}: expected a duration like 90s, 30m or 2h, or never",
            hint=f"give a unit: {str(value).strip()}s or {str(value).strip()}m"
            if bare and not bare.group(2)
            else None,
        )
    return seconds


def parse_spend(value: Any, option: str = "--max-spend") -> Limit:
    """Dollars, more than 0, or ``never``."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == NEVER:
        return NEVER
    try:
        dollars = float(str(value).strip().lstrip("$")) if not isinstance(value, bool) else 0.0
    except ValueError:
        dollars = 0.0
    if not dollars > 0 or math.isinf(dollars):
        raise BadInput(f"bad {option} {value!r}: expected dollars more than 0, or never")
    return dollars


def parse_release(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if text not in RELEASES:
        raise BadInput(f"bad --release {value!r}: expected stop or terminate")
    return text


@dataclass
class GuardRequest:
    """What the user asked for; None keeps the default (or, for ``autostop``, the
    current value), ``NEVER`` switches a limit off."""

    idle_stop: Limit = None
    max_duration: Limit = None
    max_spend: Limit = None
    release: str | None = None

    @classmethod
    def parse(
        cls,
        idle_stop: Any = None,
        max_duration: Any = None,
        max_spend: Any = None,
        release: Any = None,
    ) -> GuardRequest:
        return cls(
            parse_duration(idle_stop, "--idle-stop"),
            parse_duration(max_duration, "--max-duration"),
            parse_spend(max_spend),
            parse_release(release),
        )

    @property
    def empty(self) -> bool:
        return all(v is None for v in asdict(self).values())

    def with_defaults(self, table: dict[str, Any]) -> GuardRequest:
        """This request, with the ``[guard]`` table of the config file where nothing
        was asked (``idle_stop``, ``max_duration``, ``max_spend``, ``release``)."""
        configured = GuardRequest(
            parse_duration(table.get("idle_stop"), "[guard] idle_stop"),
            parse_duration(table.get("max_duration"), "[guard] max_duration"),
            parse_spend(table.get("max_spend"), "[guard] max_spend"),
            parse_release(table.get("release")),
        )
        mine = asdict(self)
        return GuardRequest(
            **{k: mine[k] if mine[k] is not None else v for k, v in asdict(configured).items()}
        )


@dataclass
class Guards:
    """What a machine's guard enforces (kept in its record)."""

    launched_at: float
    idle_stop: float | None = None
    deadline: float | None = None
    max_spend: float | None = None
    hourly: float | None = None
    #: "stop" or "terminate"; None on a machine that has nothing to release
    release: str | None = None

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.idle_stop, self.deadline, self.max_spend))

    def policy(self, *, interval: float, grace: float) -> dict[str, Any]:
        """The guard's policy on the machine, without the release request."""
        return {
            "idle_stop": self.idle_stop if self.release else None,
            "deadline": self.deadline,
            "max_spend": self.max_spend,
            "hourly": self.hourly,
            "launched_at": self.launched_at,
            "interval": interval,
            "grace": grace,
        }

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Guards | None:
        if not data:
            return None
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})

    def spent(self, now: float | None = None) -> float | None:
        """Dollars so far, counted from launch (the guard's own count excludes the
        time a stopped machine was down; this one, made without asking it, does not)."""
        if self.hourly is None:
            return None
        return self.hourly * max(0.0, (now or time.time()) - self.launched_at) / 3600

    def summary(self, report: dict[str, Any] | None = None, now: float | None = None) -> str:
        """One line: each limit and how far it is (``report``: the guard's own, when
        it was asked), then what happens."""
        now = now or time.time()
        parts = []
        if self.idle_stop is not None and self.release:
            text = f"idle stop {human_seconds(self.idle_stop)}"
            idle_for = (report or {}).get("idle_for")
            if report and report.get("jobs_running"):
                text += " (a job runs)"
            elif idle_for is not None:
                text += f" (in {human_seconds(max(0.0, self.idle_stop - idle_for))})"
            parts.append(text)
        if self.deadline is not None:
            left = self.deadline - now
            when = f"in {human_seconds(left)}" if left > 0 else "passed"
            parts.append(f"deadline {when}")
        if self.max_spend is not None:
            spent = (report or {}).get("spent")
            spent = self.spent(now) if spent is None else spent
            parts.append(f"spend ${spent or 0:.2f} of ${self.max_spend:.2f}")
        if not parts:
            return "no guards"
        then = f"then {self.release}" if self.release else "then its jobs end"
        return ", ".join(parts) + f"; {then}"

    def short(self, now: float | None = None) -> str:
        """A few words for a table: ``idle 30m, 1h20m left, $0.42/$5.00``."""
        now = now or time.time()
        parts = []
        if self.idle_stop is not None and self.release:
            parts.append(f"idle {human_seconds(self.idle_stop)}")
        if self.deadline is not None:
            left = self.deadline - now
            parts.append(f"{human_seconds(left)} left" if left > 0 else "deadline passed")
        if self.max_spend is not None:
            parts.append(f"${self.spent(now) or 0:.2f}/${self.max_spend:.2f}")
        return ", ".join(parts) or "-"


def human_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def resolve(
    request: GuardRequest,
    *,
    current: Guards,
    releases: tuple[str, ...],
    default_idle: float | None,
    what: str,
) -> Guards:
    """``current`` with ``request`` applied. ``releases``: what the provider can do
    to this machine, the default first (none: it has nothing to release);
    ``default_idle`` applies when the machine has no idle stop yet and none was asked
    for (a new machine)."""
    if request.release is not None:
        if not releases:
            raise BadInput(f"{what} has nothing to release: --release does not apply")
        if request.release not in releases:
            raise BadInput(
                f"{what} cannot be {request.release}ped"
                if request.release == "stop"
                else f"{what} cannot be terminated by its guard",
                hint=f"--release {' or '.join(releases)}",
            )
    guards = Guards(**current.to_dict())
    guards.release = (request.release or current.release or releases[0]) if releases else None
    if not releases:
        guards.idle_stop = None  # nothing to release when idle (the caller warns)
    elif request.idle_stop is not None:
        guards.idle_stop = None if request.idle_stop == NEVER else float(request.idle_stop)
    elif current.idle_stop is None and default_idle is not None:
        guards.idle_stop = default_idle
    if request.max_duration is not None:
        guards.deadline = (
            None
            if request.max_duration == NEVER
            else current.launched_at + float(request.max_duration)
        )
    if request.max_spend is not None:
        if request.max_spend != NEVER and not (guards.hourly or 0) > 0:
            raise BadInput(
                f"{what} has no known hourly price, so --max-spend cannot be enforced",
                hint="leave out --max-spend, or use --max-duration",
            )
        guards.max_spend = None if request.max_spend == NEVER else float(request.max_spend)
    return guards
