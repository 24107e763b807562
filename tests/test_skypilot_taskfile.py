"""`trainctl run -f` with task files in SkyPilot's format (its YAML spec: a
`resources:` block, `setup:`/`run:` scripts, `envs:` and `secrets:`)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from cli_helpers import trainctl
from trainctl.cli import skypilot, taskfile
from trainctl.errors import BadInput

TRAIN = """\
name: train-gpt
workdir: .

resources:
  infra: aws/us-east-1
  accelerators: A100:2
  use_spot: true
  disk_size: 256
  image_id: docker:pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime
  ports: 6006
  labels:
    team: ml

envs:
  MODEL_SIZE: 13b
  EPOCHS: 3
  LR: 0.001
  WANDB_PROJECT: null

secrets:
  HF_TOKEN: null
  WANDB_API_KEY: inline-value

setup: |
  echo "Begin setup."
  pip install -r requirements.txt
  echo "Setup complete."

run: |
  echo "Begin run."
  python train.py --epochs ${EPOCHS}
"""


def write(tmp_path: Path, text: str, name: str = "sky.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def load(tmp_path: Path, text: str) -> dict:
    """The `run` values, without the SkyPilot-only part (see ``sky``)."""
    values = taskfile.load(write(tmp_path, text))
    task = values.pop("skypilot", None)
    assert task is None or isinstance(task, skypilot.SkyTask)
    return values


def sky(tmp_path: Path, text: str) -> skypilot.SkyTask:
    return taskfile.load(write(tmp_path, text))["skypilot"]


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(BadInput) as e:
        load(tmp_path, text)
    return str(e.value)


def test_the_documented_fields_become_run_values(tmp_path):
    values = load(tmp_path, TRAIN)
    assert values == {
        "name": "train-gpt",
        "workdir": str(tmp_path.resolve()),
        "provider": "aws",
        "region": "us-east-1",
        "gpu": "A100:2",
        "spot": True,
        "disk_gb": 256,
        "image": "pytorch/pytorch:2.3.0-cuda12.1-cudnn8-runtime",
        "ports": ("6006",),
        "tags": ("team=ml",),
        # numbers become strings; a null is required and comes from this environment
        "envs": (
            "MODEL_SIZE=13b",
            "EPOCHS=3",
            "LR=0.001",
            "WANDB_PROJECT",
            "HF_TOKEN",
            "WANDB_API_KEY=inline-value",
        ),
        "setup": 'echo "Begin setup."\npip install -r requirements.txt\necho "Setup complete."\n',
        # SkyPilot runs `run` as a bash script
        "command": ("bash", "-c", 'echo "Begin run."\npython train.py --epochs ${EPOCHS}\n'),
    }


def test_other_documented_forms(tmp_path):
    values = load(
        tmp_path,
        "workdir: ../code\n"
        "resources:\n  cloud: RunPod\n  region: EU-RO-1\n  accelerators: {H100: 8}\n"
        "  instance_type: gpu-1x\n  disk_size: 1TB\n  ports: [8888, 10022-10022]\n"
        "  max_hourly_cost: 2.5\n  use_spot: false\n"
        "num_nodes: 1\nenvs:\n  FLAG: true\nrun: python train.py\n",
    )
    assert values["workdir"] == str(tmp_path.resolve() / "../code")
    assert values["provider"] == "runpod" and values["region"] == "EU-RO-1"
    assert values["gpu"] == "H100:8" and values["instance_type"] == "gpu-1x"
    assert values["disk_gb"] == 1024 and values["ports"] == ("8888", "10022")
    assert values["max_price"] == 2.5 and values["spot"] is False
    assert values["envs"] == ("FLAG=True",)  # str(), as SkyPilot converts it
    assert load(tmp_path, "resources:\n  accelerators: [L4:1]\n")["gpu"] == "L4:1"
    assert load(tmp_path, "num_nodes: 3\nrun: torchrun train.py\n")["nodes"] == 3
    assert load(tmp_path, "resources:\n  accelerators: {A100:4}\n")["gpu"] == "A100:4"
    assert load(tmp_path, "resources:\n  accelerators: V100\n")["gpu"] == "V100:1"
    assert load(tmp_path, "resources:\n  disk_size: 1500MB\n")["disk_gb"] == 1  # floored
    ssh = load(tmp_path, "resources:\n  infra: ssh/gpu-box\nrun: nvidia-smi\n")
    assert ssh["provider"] == "ssh" and ssh["host"] == "gpu-box"
    anywhere = load(tmp_path, "resources:\n  infra: '*/us-west-2'\nrun: 'true'\n")
    assert "provider" not in anywhere and anywhere["region"] == "us-west-2"
    # null and empty fields are SkyPilot's defaults: nothing asked for
    assert load(tmp_path, "resources:\n  cpus: null\n  image_id: null\nfile_mounts: {}\n") == {}


def test_what_trainctl_cannot_honour_is_named_in_one_error(tmp_path):
    err = refused(
        tmp_path,
        "resources:\n  accelerators: A100\n  cpus: 4+\n  memory: 32+\n  zone: us-east-1a\n"
        "  ordered:\n    - infra: aws/us-west-2\n    - infra: gcp/us-central1\n"
        "file_mounts:\n  /data: s3://my-bucket\n"
        "volumes:\n  /mnt/v: my-volume\n"
        "service:\n  readiness_probe: /health\n"
        "config:\n  docker:\n    run_options: --shm-size=1g\n"
        "event_callback: echo done\n"
        "bogus: 1\n"
        "run: python train.py\n",
    )
    assert err.startswith("task file ") and "(SkyPilot format): cannot honour " in err
    for key in (
        "resources.cpus",
        "resources.memory",
        "resources.zone",
        "file_mounts /data (bucket s3://my-bucket)",
        # a provider trainctl lacks is an error listing the ones it has
        "resources.ordered[2].infra: trainctl has no provider 'gcp' (it has aws, ",
        "volumes",
        "service",
        "config",
        "event_callback",
        "bogus",
    ):
        assert key in err
    assert "\n" not in err


def test_a_misspelt_key_is_named_with_the_nearest_one(tmp_path):
    err = refused(tmp_path, "resoures:\n  acelerators: A100\nrun: x\n")
    assert "cannot honour resoures (not a SkyPilot key; did you mean resources?)" in err
    err = refused(tmp_path, "resources:\n  acelerators: A100\n  colour: red\nrun: x\n")
    assert "resources.acelerators (not a SkyPilot key; did you mean accelerators?)" in err
    assert "resources.colour (not a SkyPilot key)" in err
    assert "volumes" in refused(tmp_path, "volumes: {/mnt: v}\nrun: x\n")  # known, unsupported


@pytest.mark.parametrize(
    "text, expected",
    [
        ("resources:\n  accelerators: [A100:1, V100:1]\n  ordered: [{}]\n", "cannot go with"),
        ("resources:\n  any_of: [{cpus: 4}]\n", "resources.any_of[1].cpus"),
        ("resources:\n  any_of: [{ports: 22}]\n", "any_of[1].ports (give it outside"),
        ("resources:\n  any_of: [{ordered: [{}]}]\n", "cannot hold candidates"),
        ("resources:\n  any_of: [{}]\n  ordered: [{}]\n", "one of any_of, ordered, not"),
        ("resources:\n  any_of: T4\n", "resources.any_of must be a list of mappings"),
        ("file_mounts:\n  /d: {name: my-bucket}\n", "file_mounts /d (a bucket or volume)"),
        ("file_mounts:\n  /d: r2://bucket/x\n", "file_mounts /d (bucket r2://bucket/x)"),
        ("file_mounts:\n  /d: ./missing\n", "file_mounts /d: ./missing is missing"),
        ("file_mounts:\n  /d: sky.yaml\n", "is a file (only directories are synced)"),
        ("file_mounts:\n  ~bob/d: .\n", "must be a path such as /data"),
        ("resources:\n  accelerators: A100:0.5\n", "not NAME or NAME:COUNT"),
        ("resources:\n  infra: k8s\n", "trainctl has no provider Kubernetes"),
        ("resources:\n  cloud: gcp\n", "trainctl has no provider 'gcp'"),
        ("resources:\n  infra: aws/us-east-1/us-east-1a\n", "resources.infra (a zone)"),
        ("resources:\n  infra: aws\n  region: us-east-1\n", "either infra or cloud"),
        ("resources:\n  ports: 10020-10040\n", "'10020-10040' is not a port"),
        ("resources:\n  image_id: ami-0868a20f5a3bf9702\n", "image_id (only docker:IMAGE)"),
        ("resources:\n  image_id: {us-east-1: ami-1}\n", "image_id (only docker:IMAGE)"),
        ("resources:\n  disk_size: lots\n", "disk_size must be a size in GB"),
        ("resources:\n  use_spot: maybe\n", "use_spot must be true or false"),
        ("resources: [a]\n", "resources must be a mapping"),
        ("workdir:\n  url: https://github.com/org/repo\nrun: x\n", "workdir (a git repository)"),
        ("run: [python, train.py]\n", "run must be a string"),
        ("envs:\n  1BAD: x\n", "'1BAD' is not a variable name"),
        ("secrets: [my-managed-secret]\n", "secrets (SkyPilot-managed secrets)"),
    ],
)
def test_each_refusal(tmp_path, text, expected):
    err = refused(tmp_path, text)
    assert "(SkyPilot format)" in err and expected in err, err


def test_candidates_carry_the_tasks_fields_and_skypilots_order(tmp_path):
    """Fields outside any_of/ordered are every candidate's defaults; a candidate's own
    win. An accelerator list is ordered, a set cheapest first (SkyPilot's yaml spec)."""
    text = (
        "resources:\n  accelerators: H100:8\n  use_spot: true\n  region: us-east-1\n"
        "  any_of:\n    - infra: aws\n    - infra: runpod\n      accelerators: A100:8\n"
    )
    task = sky(tmp_path, text)
    assert task.choices == [{"provider": "aws"}, {"provider": "runpod", "gpu": "A100:8"}]
    assert not task.ordered
    assert load(tmp_path, text)["gpu"] == "H100:8" and load(tmp_path, text)["spot"] is True
    ordered = sky(tmp_path, text.replace("any_of", "ordered"))
    assert ordered.ordered and ordered.choices == task.choices
    listed = sky(tmp_path, "resources:\n  accelerators: [T4:4, V100:4]\n")
    assert listed.ordered and listed.choices == [{"gpu": "T4:4"}, {"gpu": "V100:4"}]
    unordered = sky(tmp_path, "resources:\n  accelerators: {A100:1, V100:1}\n")
    assert not unordered.ordered and unordered.choices == [{"gpu": "A100:1"}, {"gpu": "V100:1"}]
    # several accelerators with any_of: each candidate with each accelerator
    both = sky(tmp_path, "resources:\n  accelerators: {A100, V100}\n  any_of: [{infra: aws}]\n")
    assert [c["gpu"] for c in both.choices] == ["A100:1", "V100:1"]
    # SkyPilot Benchmark's older key, read as any_of
    bench = sky(tmp_path, "resources:\n  candidates:\n    - {accelerators: T4:4}\n"
                "    - {accelerators: V100:4}\n")  # fmt: skip
    assert not bench.ordered and [c["gpu"] for c in bench.choices] == ["T4:4", "V100:4"]
    # one candidate is no choice: its fields are the task's
    assert load(tmp_path, "resources:\n  any_of: [{infra: runpod}]\n")["provider"] == "runpod"
    assert sky(tmp_path, "resources:\n  any_of: [{infra: runpod}]\n").choices == []


def test_local_file_mounts_and_what_was_ignored(tmp_path):
    (tmp_path / "data").mkdir()
    task = sky(
        tmp_path,
        "file_mounts:\n  /remote/data: ./data\n  ~/home-data: data\n"
        "resources:\n  cpus: null\n  accelerators: null\nvolumes: {}\n",
    )
    data = str((tmp_path / "data").resolve())
    assert task.mounts == [(data, "/remote/data"), (data, "~/home-data")]
    assert task.ignored == ["resources.cpus", "resources.accelerators", "volumes"]
    assert task.required == [] and task.choices == []


def test_secret_values_are_never_shown(tmp_path):
    err = refused(tmp_path, "secrets:\n  TOKEN: {nested: hunter2-secret}\nnum_nodes: 0\n")
    assert "TOKEN" in err and "hunter2" not in err


def test_a_document_mixing_the_two_formats_is_refused(tmp_path):
    err = refused(
        tmp_path, "name: x\nsetup: pip install .\nrun: python a.py\ngpu: A100\nspot: true\n"
    )
    assert "mixes SkyPilot's format (run) with trainctl's (gpu: SkyPilot's is " in err
    assert "resources.accelerators; spot: SkyPilot's is resources.use_spot)" in err
    # each provider's flags are trainctl-format keys only
    err = refused(tmp_path, "resources:\n  infra: ssh\nhost: me@box\nrun: x\n")
    assert "with trainctl's (host)" in err


def test_trainctl_format_reads_setup_and_ports(tmp_path):
    values = load(tmp_path, 'setup: pip install .\nports: [6006, "8888:9999"]\ncommand: [x]\n')
    assert values["setup"] == "pip install ." and values["ports"] == ("6006", "8888:9999")
    assert load(tmp_path, "ports: 6006\n")["ports"] == ("6006",)
    with pytest.raises(BadInput, match="not a port"):
        load(tmp_path, "ports: [70000]\n")


def test_200_mutated_skypilot_files_load_or_are_bad_input(tmp_path):
    rng = random.Random(20261207)
    for i in range(200):
        text = list(TRAIN)
        for _ in range(rng.randint(1, 5)):
            pos = rng.randrange(len(text))
            text[pos : pos + rng.randint(0, 4)] = rng.choice(
                ["", "[", "{", ": ", "- ", "\n  ", "null", "1", "'", "*", "x:y", "\t"]
            )
        try:
            load(tmp_path, "".join(text))
        except BadInput:
            pass
        except Exception as e:  # pragma: no cover - the failure message
            raise AssertionError((i, "".join(text))) from e


def test_run_reads_a_skypilot_task_end_to_end(tmp_path, monkeypatch):
    (tmp_path / "code").mkdir()
    write(
        tmp_path / "code",
        "name: hello\nworkdir: .\n"
        "envs:\n  GREETING: hi\n  WHO: null\n"
        "run: |\n"
        '  echo "$GREETING $WHO from $0" > out.txt\n',
    )
    monkeypatch.setenv("WHO", "there")
    task = str(tmp_path / "code" / "sky.yaml")
    r = trainctl("run", "-f", task, "-p", "local", "-o", "out.txt", "-e", "WHO", cwd=tmp_path)
    assert r.code == 0, r.err
    (out,) = (tmp_path / "trainctl-runs").glob("*/out.txt")
    assert out.read_text() == "hi there from bash\n"


def test_a_required_env_missing_here_is_an_error(tmp_path, monkeypatch):
    path = write(tmp_path, "envs:\n  WHO: null\nrun: echo $WHO\n")
    monkeypatch.delenv("WHO", raising=False)
    r = trainctl("run", "-f", path, "-p", "local", "--no-sync", cwd=tmp_path)
    assert r.code == 2 and "WHO must be given" in r.err and "Traceback" not in r.err


def test_a_skypilot_setup_runs_before_the_run_script(tmp_path):
    path = write(
        tmp_path,
        "setup: |\n  echo installing\n  echo \"ready=$READY\"\nrun: |\n  echo training\n"
        "envs:\n  READY: go\n",
    )
    r = trainctl("run", "-f", path, "-p", "local", "--checkpoint-sync", "off", cwd=tmp_path)
    assert r.code == 0, r.err
    assert r.out.splitlines() == [
        "[trainctl] setup: running",
        "installing",
        "ready=go",
        "[trainctl] setup: done; starting the command",
        "training",
    ]
