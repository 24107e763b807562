"""SkyPilot task files: `trainctl run -f task.yaml` with a task written for `sky launch`.

    name: train
    workdir: .
    resources:
      infra: aws/us-east-1      # or cloud: aws, region: us-east-1
      accelerators: A100:2      # or {A100: 2}
      use_spot: true
      disk_size: 256            # GB, or 256GB
      image_id: docker:pytorch/pytorch:latest
      ports: 6006
    envs:
      LR: 0.01
      WANDB_PROJECT: null       # required: --env NAME=VALUE, or -e NAME from this shell
    secrets:
      HF_TOKEN: null
    setup: |
      pip install -r requirements.txt
    run: |
      python train.py --lr $LR

The fields follow SkyPilot's task schema (``sky/utils/schemas.py``, ``get_task_schema``
and ``get_resources_schema``; documented in ``docs/source/reference/yaml-spec.rst``).
What trainctl cannot do as SkyPilot would (a bucket mount, CPU or memory sizes, a
machine image...) is refused in one error naming every such key, never dropped: a run
that silently lacks its data mount or its second node would waste the money it costs.

Beyond `run`'s flags a task gives a ``SkyTask`` (the ``skypilot`` value of ``load``):

- its resource candidates, read as SkyPilot's ``Resources.from_yaml_config`` does:
  ``any_of`` (the optimizer's choice: cheapest first), ``ordered`` (in order),
  ``candidates`` (SkyPilot Benchmark's older key, read as ``any_of``), a list of
  accelerators (in order) or a set (cheapest first); each candidate's fields override
  the task's, both lists at once or several accelerators with ``ordered`` are errors,
  as in SkyPilot; ``cli.plan`` turns them into offers to try;
- its local ``file_mounts`` (``TARGET: ./dir``), synced like the workdir;
- the names whose value is null in ``envs`` or ``secrets``, which must be given
  (``taskfile.sky_envs``);
- the keys given as null or empty, which ask for nothing (``--dryrun`` names them).

Its jobs also get SkyPilot's variables (``trainctl.skyvars``) and run their setup with
plain bash (``TrainingJob.setup_errexit``).
"""

from __future__ import annotations

import difflib
import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import registry
from ..errors import BadInput
from ..types import TrainingJob

#: what SkyPilot's task script does before a task's ``setup`` and ``run``
#: (``sky/skylet/log_lib.py``, ``make_task_bash_script``): the user's ``~/.bashrc``,
#: conda's shell functions exported (so that ``conda activate`` works), unbuffered
#: Python. SkyPilot runs the script with ``bash -i``; here it is not interactive, so a
#: ``~/.bashrc`` that returns at once for non-interactive shells (Debian's and Ubuntu's
#: do) gives nothing, but conda's functions are sourced on their own all the same.
SHELL_PREAMBLE = (
    "source ~/.bashrc >/dev/null 2>&1 || true\n"
    "set -a\n"
    '. "$(conda info --base 2>/dev/null)/etc/profile.d/conda.sh" >/dev/null 2>&1 || true\n'
    "set +a\n"
    "export PYTHONUNBUFFERED=1\n"
)


def as_task_script(job: TrainingJob) -> TrainingJob:
    """``job`` with SkyPilot's preamble before its setup and its ``run`` script."""
    command = job.command
    if command[:2] == ["bash", "-c"] and len(command) == 3:
        command = ["bash", "-c", SHELL_PREAMBLE + command[2]]
    setup = SHELL_PREAMBLE + job.setup if job.setup else job.setup
    return replace(job, command=command, setup=setup)


#: top-level keys only SkyPilot's format has; any of them makes a document SkyPilot's
ONLY_SKYPILOT = (
    "resources",
    "run",
    "envs",
    "secrets",
    "num_nodes",
    "file_mounts",
    "file_mounts_mapping",
    "volumes",
    "volume_mounts",
    "service",
    "pool",
    "config",
    "event_callback",
    "managed_secrets",
    "inputs",
    "api_server_access",
    "_metadata",
)

#: keys with the same meaning in both formats
SHARED = ("name", "workdir", "setup")

#: how SkyPilot names the Kubernetes infra; trainctl has no such provider
_KUBERNETES = ("k8s", "kubernetes")

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]B?)?\s*$", re.IGNORECASE)
_UNIT_GB = {"K": 2.0**-20, "M": 2.0**-10, "G": 1.0, "T": 2.0**10, "P": 2.0**20}


def detected(data: dict[Any, Any]) -> list[str]:
    """The SkyPilot-only keys of a task document (none: trainctl's own format)."""
    return [k for k in data if isinstance(k, str) and k in ONLY_SKYPILOT]


def load(path: str, data: dict[Any, Any], base: Path, trainctl_keys: set[str]) -> dict[str, Any]:
    """A SkyPilot task document as `run` parameter values (names as in
    ``taskfile.FIELDS``); ``base`` is the task file's directory."""
    _refuse_mixed(path, data, trainctl_keys)
    task = _Task(base)
    for key, value in data.items():
        task.top(key, value)
    problems = []
    if task.unsupported:
        problems.append("cannot honour " + ", ".join(task.unsupported))
    problems += task.problems
    if problems:
        raise BadInput(f"task file {path} (SkyPilot format): " + "; ".join(problems))
    if task.envs:
        task.values["envs"] = tuple(task.envs)
    task.values["skypilot"] = SkyTask(
        path, task.choices, task.ordered, task.mounts, task.required, task.ignored
    )
    return task.values


@dataclass
class SkyTask:
    """What a SkyPilot task asks for beyond `run`'s flags (``load`` gives it as the
    ``skypilot`` value): its jobs get SkyPilot's variables (``trainctl.skyvars``) and
    run their setup with plain bash."""

    path: str
    #: the resource candidates (``any_of``, ``ordered``, ``candidates`` or several
    #: accelerators), each as `run` values over the task's own; [] for one choice
    choices: list[dict[str, Any]] = field(default_factory=list)
    #: tried in the order given (``ordered``, an accelerator list), else cheapest first
    ordered: bool = False
    #: (local directory, path on the machine) of each file mount
    mounts: list[tuple[str, str]] = field(default_factory=list)
    #: names in envs or secrets with a null value: given with --env or -e NAME
    required: list[str] = field(default_factory=list)
    #: keys given with a null or empty value, which ask for nothing
    ignored: list[str] = field(default_factory=list)


def _refuse_mixed(path: str, data: dict[Any, Any], trainctl_keys: set[str]) -> None:
    ours = [
        k
        for k, v in data.items()
        if isinstance(k, str)
        and k in trainctl_keys
        and k not in SHARED
        # SkyPilot's own (experimental) `outputs` is a mapping; trainctl's a list
        and not (k == "outputs" and isinstance(v, dict))
    ]
    if ours:
        named = [f"{k}: SkyPilot's is {_THEIRS[k]}" if k in _THEIRS else k for k in ours]
        raise BadInput(
            f"task file {path} mixes SkyPilot's format ({', '.join(detected(data))}) "
            f"with trainctl's ({'; '.join(named)}): write it in one of the two"
        )


#: trainctl's task-file keys and SkyPilot's for the same setting
_THEIRS = {
    "env": "envs",
    "command": "run",
    "nodes": "num_nodes",
    "provider": "resources.infra",
    "gpu": "resources.accelerators",
    "spot": "resources.use_spot",
    "disk": "resources.disk_size",
    "image": "resources.image_id",
    "tags": "resources.labels",
    "max_price": "resources.max_hourly_cost",
}


def _unknown(name: str, key: str, known: tuple[str, ...]) -> str:
    """``name`` for a key SkyPilot's schema does not have, with the nearest it does."""
    if key in known:
        return name
    near = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    return f"{name} (not a SkyPilot key" + (f"; did you mean {near[0]}?)" if near else ")")


def _given(value: Any) -> bool:
    """A null or empty field asks for nothing (a null is the schema's default)."""
    return value is not None and value != {} and value != [] and value != ""


class _Task:
    """The values read so far, and what could not be read."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.values: dict[str, Any] = {}
        self.envs: list[str] = []
        self.required: list[str] = []
        self.choices: list[dict[str, Any]] = []
        self.ordered = False
        self.mounts: list[tuple[str, str]] = []
        self.ignored: list[str] = []
        self.unsupported: list[str] = []
        self.problems: list[str] = []

    def top(self, key: Any, value: Any) -> None:
        if not isinstance(key, str):
            self.unsupported.append(repr(key))
        elif key in ("name", "setup"):
            self._string(key, value, key)
        elif key == "run":
            if self._string(key, value):
                # SkyPilot runs `run` (and `setup`) as a bash script
                self.values["command"] = ("bash", "-c", value)
        elif key == "workdir":
            self._workdir(value)
        elif key in ("envs", "secrets"):
            self._envs(key, value)
        elif key == "num_nodes":
            self._num_nodes(value)
        elif key == "resources":
            if isinstance(value, dict):
                self._resources(value)
            elif value is not None:
                self.problems.append("resources must be a mapping")
        elif key == "file_mounts" and isinstance(value, dict):
            for target, source in value.items():
                self._mount(target, source)
        elif key not in ONLY_SKYPILOT or _given(value):
            self.unsupported.append(_unknown(key, key, ONLY_SKYPILOT + SHARED))
        else:
            self.ignored.append(key)

    def _resources(self, res: dict[Any, Any]) -> None:
        """The task's resources, and its candidates: each one's fields over the task's
        (SkyPilot's ``Resources.from_yaml_config``)."""
        base = Resources(self, "resources")
        base.read(res)
        self.values.update(base.values)
        lists = [k for k in _CHOICES if _given(res.get(k))]
        if len(lists) > 1:
            self.problems.append(f"resources: give one of {', '.join(lists)}, not several")
            return
        items = [base]
        if lists:
            kind = lists[0]
            raw = res[kind]
            if not isinstance(raw, list) or not all(isinstance(i, dict) for i in raw):
                self.problems.append(f"resources.{kind} must be a list of mappings")
                return
            items = []
            for i, item in enumerate(raw, 1):
                r = Resources(self, f"resources.{kind}[{i}]", candidate=True)
                r.read(item)
                items.append(r)
            self.ordered = kind == "ordered"
            if base.gpus and self.ordered:
                self.problems.append("resources: several accelerators cannot go with ordered")
                return
            if base.gpus and base.gpus_ordered:
                # SkyPilot's Resources.from_yaml_config refuses it too
                self.problems.append(
                    f"resources: a list of accelerators (an order) cannot go with {kind}"
                )
                return
        elif base.gpus:
            self.ordered = base.gpus_ordered
        for item in items:
            values = {} if item is base else item.values
            gpus = item.gpus or ([] if "gpu" in values else base.gpus)
            self.choices += [{**values, "gpu": g} for g in gpus] if gpus else [values]
        if len(self.choices) == 1:
            self.values.update(self.choices.pop())

    def _mount(self, target: Any, source: Any) -> None:
        """``TARGET: SOURCE``, a local directory synced to the machine's TARGET; a
        bucket, a volume or a mount mode is named as unsupported."""
        name = f"file_mounts {target}"
        if (
            not isinstance(target, str)
            or not target.strip()
            or target.startswith("~")
            and not (target == "~" or target.startswith("~/"))
        ):
            self.problems.append(f"{name}: the path on the machine must be a path such as /data")
            return
        if any(c in target for c in ":,\n"):
            # docker's -v SOURCE:TARGET cannot carry them
            self.problems.append(f"{name}: the path on the machine cannot hold ':' or ','")
            return
        if isinstance(source, dict):
            what = f"mode: {source['mode']}" if source.get("mode") else "a bucket or volume"
            self.unsupported.append(f"{name} ({what})")
        elif not isinstance(source, str) or not source.strip():
            self.problems.append(f"{name}: the source must be a local directory")
        elif _BUCKET.match(source.strip()):
            self.unsupported.append(f"{name} (bucket {source.strip()})")
        else:
            local = self.base / os.path.expanduser(source.strip())
            if not local.is_dir():
                kind = "a file (only directories are synced)" if local.exists() else "missing"
                self.problems.append(f"{name}: {source} is {kind}")
            else:
                self.mounts.append((str(local.resolve()), target.strip()))

    def _string(self, key: str, value: Any, param: str | None = None) -> bool:
        if value is None:
            return False
        if not isinstance(value, str):
            self.problems.append(f"{key} must be a string")
            return False
        if param:
            self.values[param] = value
        return True

    def _workdir(self, value: Any) -> None:
        if isinstance(value, dict):
            self.unsupported.append("workdir (a git repository)")
        elif self._string("workdir", value):
            # relative to the task file, as in trainctl's own format
            self.values["workdir"] = str(self.base / os.path.expanduser(value))

    def _envs(self, key: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, list):
            self.unsupported.append(f"{key} (SkyPilot-managed secrets)")
            return
        if not isinstance(value, dict):
            self.problems.append(f"{key} must be a mapping of NAME: value")
            return
        for name, item in value.items():
            # keys may be read as numbers; SkyPilot makes them strings
            name = str(name)
            if not _ENV_NAME.match(name):
                self.problems.append(f"{key}: {name!r} is not a variable name")
            elif item is None:
                self.envs.append(name)  # required: -e NAME reads this shell's value
                self.required.append(name)
            elif isinstance(item, str | int | float | bool):
                self.envs.append(f"{name}={item}")  # str(), as SkyPilot converts
            else:
                # the value itself is never shown: it may be a secret
                self.problems.append(f"{key}: {name} must be a string or a number")

    def _num_nodes(self, value: Any) -> None:
        if value is None or value == 1 and not isinstance(value, bool):
            return
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            self.values["nodes"] = value  # `run --nodes`: a group, all or nothing
        else:
            self.problems.append("num_nodes must be a whole number of nodes (1)")


class Resources:
    """``resources:`` (or one of its candidates, named ``where``) read into `run`
    parameter values; problems go to the ``_Task``."""

    def __init__(self, task: _Task, where: str, *, candidate: bool = False) -> None:
        self.task = task
        self.where = where
        self.candidate = candidate
        self.values: dict[str, Any] = {}
        #: several accelerators: one candidate each, in ``gpus_ordered`` order or not
        self.gpus: list[str] = []
        self.gpus_ordered = False

    def read(self, res: dict[Any, Any]) -> None:
        task = self.task
        if "infra" in res and any(k in res for k in ("cloud", "region", "zone")):
            task.problems.append(f"{self.where}: give either infra or cloud/region/zone, not both")
        for key, value in res.items():
            name = f"{self.where}.{key}"
            if isinstance(key, str) and key in _CHOICES:
                if self.candidate:
                    self._problem(f"{name}: a candidate cannot hold candidates")
            elif isinstance(key, str) and key in _READ:
                if value is None:
                    task.ignored.append(name)
                elif self.candidate and key in _NOT_PER_CANDIDATE:
                    task.unsupported.append(f"{name} (give it outside the candidates)")
                else:
                    getattr(self, f"_{key}")(name, value)
            elif not isinstance(key, str):
                task.unsupported.append(name)
            elif _given(value) or key not in _KNOWN:
                task.unsupported.append(_unknown(name, key, _READ + _KNOWN + _CHOICES))
            else:
                task.ignored.append(name)

    def _problem(self, text: str) -> None:
        self.task.problems.append(text)

    def _set(self, param: str, value: Any) -> None:
        self.values[param] = value

    def _provider(self, name: str, cloud: str) -> str | None:
        """trainctl's provider for SkyPilot's cloud name (``*``: any, trainctl picks)."""
        cloud = cloud.lower()
        if cloud == "*":
            return None
        known = registry.names()
        if cloud not in known:
            what = "Kubernetes" if cloud in _KUBERNETES else repr(cloud)
            self._problem(f"{name}: trainctl has no provider {what} (it has {', '.join(known)})")
            return None
        self._set("provider", cloud)
        return cloud

    def _infra(self, name: str, value: Any) -> None:
        if not isinstance(value, str) or not value.strip():
            self._problem(f"{name} must be a string such as aws or aws/us-east-1")
            return
        cloud, _, rest = value.strip().partition("/")
        provider = self._provider(name, cloud)
        if not rest:
            return
        if provider == "ssh":
            self._set("host", rest)  # ssh/NAME: the machine trainctl's ssh provider uses
            return
        region, _, zone = rest.partition("/")
        if region != "*":
            self._set("region", region)
        if zone:
            self.task.unsupported.append(f"{name} (a zone)")

    def _cloud(self, name: str, value: Any) -> None:
        if isinstance(value, str) and value.strip():
            self._provider(name, value.strip())
        else:
            self._problem(f"{name} must be a string")

    def _region(self, name: str, value: Any) -> None:
        if isinstance(value, str) and value.strip():
            self._set("region", value.strip())
        else:
            self._problem(f"{name} must be a string")

    def _instance_type(self, name: str, value: Any) -> None:
        if isinstance(value, str) and value.strip():
            self._set("instance_type", value.strip())
        else:
            self._problem(f"{name} must be a string")

    def _use_spot(self, name: str, value: Any) -> None:
        if isinstance(value, bool):
            self._set("spot", value)
        else:
            self._problem(f"{name} must be true or false")

    def _accelerators(self, name: str, value: Any) -> None:
        """``A100``, ``A100:2``, ``{A100: 2}``; a list of several is SkyPilot's choice
        among them in that order, a set (``{A100:1, V100:1}``) cheapest first."""
        items = value if isinstance(value, list) else [value]
        if isinstance(value, dict):
            # `{A100:1, V100:1}` is read as keys with null values
            items = [str(g) if c is None else {g: c} for g, c in value.items()]
        if not items:
            self._problem(f"{name} must be NAME or NAME:COUNT, e.g. A100:2")
            return
        found = [self._one_accelerator(name, item) for item in items]
        specs = [spec for spec in found if spec is not None]
        if len(specs) < len(found):
            return
        if len(specs) == 1:
            self._set("gpu", specs[0])
        else:
            self.gpus, self.gpus_ordered = specs, isinstance(value, list)

    def _one_accelerator(self, name: str, value: Any) -> str | None:
        if isinstance(value, dict):
            if len(value) != 1:
                self._problem(f"{name} must be NAME or NAME:COUNT, e.g. A100:2")
                return None
            ((gpu, count),) = value.items()
            value = f"{gpu}:{count}"
        if not isinstance(value, str) or not value.strip():
            self._problem(f"{name} must be NAME or NAME:COUNT, e.g. A100:2")
            return None
        gpu, _, count = value.strip().partition(":")
        spec = _accelerator(gpu.strip(), count.strip() or 1)
        if spec is None:
            self._problem(f"{name}: {value!r} is not NAME or NAME:COUNT (a whole count)")
        return spec

    def _disk_size(self, name: str, value: Any) -> None:
        gb = _gigabytes(value)
        if gb is None:
            self._problem(f"{name} must be a size in GB, e.g. 256 or 256GB")
        else:
            self._set("disk_gb", gb)

    def _image_id(self, name: str, value: Any) -> None:
        if isinstance(value, str) and value.strip().startswith("docker:"):
            image = value.strip()[len("docker:") :].strip()
            if image:
                self._set("image", image)
                return
        if isinstance(value, str | dict):
            # trainctl's --image is the docker image the job runs in
            self.task.unsupported.append(f"{name} (only docker:IMAGE)")
        else:
            self._problem(f"{name} must be a string such as docker:ubuntu:22.04")

    def _ports(self, name: str, value: Any) -> None:
        found = []
        for item in value if isinstance(value, list) else [value]:
            port = _port(item)
            if port is None:
                self._problem(f"{name}: {item!r} is not a port or a one-port range")
            else:
                found.append(port)
        if found:
            self._set("ports", tuple(found))

    def _labels(self, name: str, value: Any) -> None:
        if isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str | int | float) for k, v in value.items()
        ):
            self._set("tags", tuple(f"{k}={v}" for k, v in value.items()))
        else:
            self._problem(f"{name} must be a mapping of NAME: value")

    def _max_hourly_cost(self, name: str, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            self._set("max_price", value)
        else:
            self._problem(f"{name} must be a number of $/hour above 0")


#: the resources keys read (each by its ``Resources._KEY``)
_READ = (
    "infra",
    "cloud",
    "region",
    "instance_type",
    "use_spot",
    "accelerators",
    "disk_size",
    "image_id",
    "ports",
    "labels",
    "max_hourly_cost",
)

#: the lists of resource candidates (``candidates`` is SkyPilot Benchmark's older key,
#: read as ``any_of``)
_CHOICES = ("any_of", "ordered", "candidates")

#: resources keys read once for the whole task, never per candidate
_NOT_PER_CANDIDATE = ("ports",)

#: a file mount's source that is a bucket (s3://, gs://, r2://, https://...)
_BUCKET = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

#: SkyPilot's other resources keys, which may be null or empty without asking for anything
_KNOWN = (
    "cpus",
    "memory",
    "zone",
    "accelerator_args",
    "disk_tier",
    "network_tier",
    "local_disk",
    "autostop",
    "job_recovery",
    "volumes",
    "priority",
    "priority_class",
    "ephemeral_storage",
)


def _accelerator(gpu: str, count: Any) -> str | None:
    """``NAME:COUNT`` for a whole count of at least 1 (SkyPilot also takes fractions
    of a GPU, which no trainctl provider rents)."""
    if isinstance(count, str):
        try:
            count = float(count)
        except ValueError:
            return None
    if isinstance(count, bool) or not isinstance(count, int | float):
        return None
    if not gpu or not math.isfinite(count) or count < 1 or count != int(count):
        return None
    return f"{gpu}:{int(count)}"


def _gigabytes(value: Any) -> int | None:
    """SkyPilot's disk size: whole GB, or a size with a unit (KB..PB, powers of 1024),
    rounded down to a whole GB as SkyPilot does."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 1 else None
    m = _SIZE.match(value) if isinstance(value, str) else None
    if not m:
        return None
    unit = (m.group(2) or "G")[0].upper()
    gb = int(float(m.group(1)) * _UNIT_GB[unit])
    return gb if gb >= 1 else None


def _port(item: Any) -> str | None:
    """A port as text: ``8888``, or a range that holds one port (``8888-8888``)."""
    if isinstance(item, bool):
        return None
    text = str(item).strip() if isinstance(item, int | str) else ""
    low, sep, high = text.partition("-")
    if not low.isdigit() or sep and (not high.isdigit() or int(high) != int(low)):
        return None
    return str(int(low)) if 1 <= int(low) <= 65535 else None
