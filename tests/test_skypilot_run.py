"""SkyPilot task files run unchanged: SKYPILOT_* variables, resource candidates tried in
SkyPilot's order, null envs given with --env, local file mounts, --dryrun. Each task
mirrors one of SkyPilot's published examples (its distributed PyTorch example, its
benchmark candidates, its env-var examples), written here in its format."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli_helpers import trainctl
from sshd import free_port
from trainctl.cli import plan
from trainctl.cli.skypilot import SkyTask
from trainctl.errors import BadInput, NoCapacity, OperationFailed
from trainctl.runtime import launch
from trainctl.store import Store
from trainctl.types import CreateResourceOptions

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ddp.py"

#: SkyPilot's multi-node PyTorch example, on CPU: no GPU, so one process per node
DISTRIBUTED = """\
name: resnet-distributed-app
num_nodes: 2
workdir: .

run: |
  echo "node $SKYPILOT_NODE_RANK of $SKYPILOT_NUM_NODES, task $SKYPILOT_TASK_ID"
  MASTER_ADDR=$(echo "$SKYPILOT_NODE_IPS" | head -n1)
  NPROC=$SKYPILOT_NUM_GPUS_PER_NODE
  if [ "$NPROC" -eq 0 ]; then NPROC=1; fi
  torchrun \\
    --nnodes=$SKYPILOT_NUM_NODES \\
    --master_addr=$MASTER_ADDR \\
    --nproc_per_node=$NPROC \\
    --node_rank=${SKYPILOT_NODE_RANK} \\
    --master_port=MASTER_PORT \\
    ddp.py
"""


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_two_node_torchrun_from_a_skypilot_task_reading_only_its_variables(sshd, tmp_path):
    python = os.environ.get("TRAINCTL_TEST_NODE_PYTHON")
    if not python or not os.access(python, os.X_OK):
        pytest.skip("TRAINCTL_TEST_NODE_PYTHON names no Python with torch (make test builds it)")
    project = tmp_path / "project"
    project.mkdir()
    (project / "ddp.py").write_text(EXAMPLE.read_text())
    task = write(project / "sky.yaml", DISTRIBUTED.replace("MASTER_PORT", str(free_port())))
    hosts = [a for _ in range(2) for a in ("--host", sshd.new_machine().target)]
    r = trainctl(
        "run", "-f", task, "-p", "ssh", *hosts, "--key", str(sshd.client_key),
        # where torchrun is on these machines, and quiet warnings: the task is unchanged
        "--env", f"PATH={Path(python).parent}:/usr/bin:/bin", "-e", "PYTHONWARNINGS=ignore",
        "--checkpoint-sync", "off",
        cwd=tmp_path, timeout=240,
    )  # fmt: skip
    assert r.code == 0, r.out[-4000:] + r.err[-2000:]
    job = next(line.split()[1] for line in r.err.splitlines() if "running on 2 nodes" in line)
    assert f"[node 0] node 0 of 2, task {job}" in r.out
    assert f"[node 1] node 1 of 2, task {job}" in r.out
    ranks = sorted(line.split()[3] for line in r.out.splitlines() if " checksum " in line)
    assert ranks == ["0/2", "1/2"], r.out
    digests = {line.split()[-1] for line in r.out.splitlines() if " checksum " in line}
    assert len(digests) == 1  # both ranks ended with the same weights
    assert Store().resources() == [] and Store().groups() == []


def test_skypilot_variables_on_one_machine_and_setup_without_errexit(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "rows.txt").write_text("7 rows\n")
    mounted = tmp_path / "machine" / "data"
    task = write(
        tmp_path / "sky.yaml",
        f"file_mounts:\n  {mounted}: data\n"
        "setup: |\n  false\n  echo set up anyway\n"
        "run: |\n"
        '  echo "rank=$SKYPILOT_NODE_RANK nodes=$SKYPILOT_NUM_NODES"'
        ' "gpus=$SKYPILOT_NUM_GPUS_PER_NODE"\n'
        '  echo "ips=$SKYPILOT_NODE_IPS setup_rank=$SKYPILOT_SETUP_NODE_RANK"\n'
        '  echo "info=$SKYPILOT_CLUSTER_INFO"\n',
    )
    r = trainctl("run", "-f", task, "-p", "local", "-n", "box", "--checkpoint-sync", "off",
                 cwd=tmp_path)  # fmt: skip
    assert r.code == 0, r.err
    lines = r.out.splitlines()
    # SkyPilot runs setup with plain bash: a failing line does not stop it
    assert "set up anyway" in lines and "[trainctl] setup: done; starting the command" in lines
    assert "rank=0 nodes=1 gpus=0" in lines and "ips=127.0.0.1 setup_rank=0" in lines
    (info,) = [json.loads(x[len("info=") :]) for x in lines if x.startswith("info=")]
    assert info == {"cluster_name": "box", "cloud": "local", "region": None, "zone": None}
    assert (mounted / "rows.txt").read_text() == "7 rows\n"  # an absolute target


def test_trainctls_own_setup_still_stops_at_the_first_failure(tmp_path):
    r = trainctl(
        "run", "-p", "local", "--no-sync", "--checkpoint-sync", "off",
        "--setup", "false\necho must not run", "--", "echo", "never",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.code == 1 and "must not run" not in r.out and "never" not in r.out
    r = trainctl(
        "run", "-p", "local", "--no-sync", "--checkpoint-sync", "off",
        "--", "sh", "-c", "echo $SKYPILOT_NODE_RANK.",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.code == 0 and r.out == ".\n"  # no SkyPilot variables outside its task files


def test_null_envs_must_be_given_and_env_overrides_the_file(tmp_path, monkeypatch):
    task = write(
        tmp_path / "sky.yaml",
        "envs:\n  MODEL: llama-7b\n  WANDB_API_KEY: null\nsecrets:\n  HF_TOKEN: null\n"
        'run: echo "$MODEL ${#WANDB_API_KEY} ${#HF_TOKEN}"\n',
    )
    for name in ("WANDB_API_KEY", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    r = trainctl("run", "-f", task, "-p", "local", "--no-sync", cwd=tmp_path)
    assert r.code == 2 and "Traceback" not in r.err
    assert r.err.splitlines()[-1].startswith("error: task file ")
    assert "WANDB_API_KEY, HF_TOKEN must be given" in r.err and "--env NAME=VALUE" in r.err
    monkeypatch.setenv("HF_TOKEN", "hf-secret-from-this-shell")
    # set in this shell but not asked for: not taken
    r = trainctl("run", "-f", task, "-p", "local", "--no-sync", "--env", "WANDB_API_KEY=w",
                 cwd=tmp_path)  # fmt: skip
    assert r.code == 2 and "HF_TOKEN must be given" in r.err, r.err
    r = trainctl(
        "run", "-f", task, "-p", "local", "--no-sync", "--checkpoint-sync", "off",
        "--env", "WANDB_API_KEY=wandb-secret-1", "--env", "MODEL=llama-65b", "-e", "HF_TOKEN",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.code == 0, r.err
    assert r.out == f"llama-65b {len('wandb-secret-1')} {len('hf-secret-from-this-shell')}\n"
    assert "secret" not in r.err
    home = Path(os.environ["TRAINCTL_HOME"])  # the state store and the runs kept at home
    kept = [p for p in home.rglob("*") if p.is_file() and "local" not in p.relative_to(home).parts]
    assert kept and not [p for p in kept if b"secret" in p.read_bytes()]


def run_without(fake, gpu: str, tmp_path: Path, text: str):
    """`run -f` of this task on the RunPod fake while it has no capacity for ``gpu``;
    it must succeed."""
    fake.knobs.no_capacity_gpus = {gpu}
    task = write(tmp_path / "sky.yaml", text)
    r = trainctl(
        "run", "-f", task, "--no-sync", "--checkpoint-sync", "off", cwd=tmp_path, timeout=200
    )  # fmt: skip
    assert r.code == 0, r.out + r.err
    return r


def test_a_candidate_without_capacity_moves_on_to_the_next(runpod_cli, tmp_path):
    """SkyPilot's benchmark candidates (any_of's older key), cheapest first: RunPod has
    no RTX 4090 now, so the L40S is rented and the job runs there."""
    r = run_without(
        runpod_cli,
        "NVIDIA GeForce RTX 4090",
        tmp_path,
        "resources:\n  candidates:\n    - {accelerators: L40S:1}\n    - {accelerators: RTX4090:1}\n"
        'run: echo "on $SKYPILOT_NUM_GPUS_PER_NODE GPU, $SKYPILOT_CLUSTER_INFO"\n',
    )
    tried = [line for line in r.err.splitlines() if line.strip().startswith("trying ")]
    assert "NVIDIA GeForce RTX 4090 (community), candidate 2" in tried[0]
    assert "NVIDIA GeForce RTX 4090 (secure), candidate 2" in tried[1]
    assert "NVIDIA L40S (community), candidate 1" in tried[2] and tried[2].endswith("(3 of 4)")
    assert len(tried) == 3
    assert r.err.count("no capacity on runpod (candidate 2)") == 2
    assert len(runpod_cli.created) == 1 and "renting 1x NVIDIA L40S" in r.err
    assert runpod_cli.pods == {}  # released after the run
    assert r.out.startswith('on 1 GPU, {"cluster_name": ')
    assert '"cloud": "runpod"' in r.out


def test_ordered_candidates_keep_their_order_and_dryrun_rents_nothing(runpod_cli, tmp_path):
    text = (
        "resources:\n  ordered:\n    - {accelerators: L40S:1}\n    - {accelerators: RTX4090:1}\n"
        "    - {accelerators: TPU-v4:8}\n"
        "file_mounts:\n  ~/data: .\n"
        "envs:\n  LR: 0.1\nrun: python train.py\n"
    )
    task = write(tmp_path / "sky.yaml", text)
    r = trainctl("run", "-f", task, "--dryrun", "--json", cwd=tmp_path)
    assert r.code == 0, r.err
    plan = r.json()
    assert plan["order"] == "as listed" and plan["rented"] is False
    assert [(t["candidate"], t["offer"]) for t in plan["tries"]] == [
        (1, "NVIDIA L40S (community)"),
        (1, "NVIDIA L40S (secure)"),
        (2, "NVIDIA GeForce RTX 4090 (community)"),
        (2, "NVIDIA GeForce RTX 4090 (secure)"),
    ]
    (unknown,) = plan["cannot_rent"]  # named, not dropped
    assert unknown.startswith("candidate 3 (TPU-v4:8 on any provider): unknown GPU 'TPU-v4'")
    assert plan["mounts"] == [{"source": str(tmp_path.resolve()), "target": "~/data"}]
    assert plan["setup"] is None and plan["env"] == ["LR"] and plan["skypilot_variables"]
    cheapest = write(tmp_path / "any.yaml", text.replace("ordered:", "any_of:"))
    r = trainctl("run", "-f", cheapest, "--dryrun", cwd=tmp_path)
    assert r.code == 0, r.err
    assert r.out.splitlines()[1] == "would try, cheapest first:"
    assert "RTX 4090 (community), candidate 2" in r.out.splitlines()[2]
    assert "nothing was rented (--dryrun)" in r.err
    # a flag wins over every candidate: here they all become one
    r = trainctl("run", "-f", task, "--dryrun", "--json", "--gpu", "RTX4090", cwd=tmp_path)
    assert r.code == 0, r.err
    assert r.json()["order"] is None and r.json()["cannot_rent"] == []
    assert {t["offer"] for t in r.json()["tries"]} == {
        "NVIDIA GeForce RTX 4090 (community)",
        "NVIDIA GeForce RTX 4090 (secure)",
    }
    assert runpod_cli.created == [] and Store().resources() == []


@pytest.mark.parametrize(
    "mount, named",
    [
        ("/data: s3://my-awesome-dataset", "file_mounts /data (bucket s3://my-awesome-dataset)"),
        ("/ckpt:\n    source: gs://bucket\n    mode: MOUNT", "file_mounts /ckpt (mode: MOUNT)"),
    ],
)
def test_a_bucket_mount_is_refused_before_anything_is_rented(runpod_cli, tmp_path, mount, named):
    task = write(
        tmp_path / "sky.yaml",
        f"resources:\n  infra: runpod\n  accelerators: RTX4090:1\nfile_mounts:\n  {mount}\n"
        "run: python train.py\n",
    )
    for extra in ([], ["--dryrun"]):
        r = trainctl("run", "-f", task, *extra, cwd=tmp_path)
        assert r.code == 2 and "Traceback" not in r.err
        assert f"(SkyPilot format): cannot honour {named}" in r.err
    assert runpod_cli.created == []
    assert not [entry for entry in runpod_cli.log if entry[0] == "POST"]
    assert Store().resources() == []


def test_a_local_file_mount_is_synced_to_its_path_on_the_machine(ssh_machine, sshd, tmp_path):
    data = tmp_path / "dataset"
    (data / "train").mkdir(parents=True)
    (data / "train" / "part-0.txt").write_text("42 rows\n")
    code = tmp_path / "code"
    code.mkdir()
    task = write(
        code / "sky.yaml",
        "workdir: .\nfile_mounts:\n  ~/datasets/mine: ../dataset\n"
        'run: cat ~/datasets/mine/train/part-0.txt; echo "home=$HOME"\n',
    )
    r = trainctl(
        "run", "-f", task, "-p", "ssh", "--host", ssh_machine.target,
        "--key", str(sshd.client_key), "--checkpoint-sync", "off",
        cwd=tmp_path,
    )  # fmt: skip
    assert r.code == 0, r.err
    assert r.out == f"42 rows\nhome={ssh_machine.home}\n"
    assert (ssh_machine.home / "datasets" / "mine" / "train" / "part-0.txt").is_file()


def test_a_group_released_for_want_of_capacity_moves_on_but_a_made_machine_does_not():
    """A group's create fails whole (``node 1 of 2 could not be made: ...``, from the
    provider's NoCapacity): nothing is left, so the next candidate is tried. Once a
    machine was made, a later no-capacity error ends the run."""
    found = [("local", CreateResourceOptions(region="a")), ("local", CreateResourceOptions())]
    sky = SkyTask("sky.yaml", choices=[{}, {}], ordered=True)
    seen, said = [], []

    def run(provider, options, on_created):
        seen.append(options.region)
        if len(seen) == 1:
            try:
                raise NoCapacity("RunPod has no RTX 4090 now")
            except NoCapacity as e:
                raise OperationFailed("node 1 of 2 (g-1) could not be made: ...") from e
        return 7

    assert plan.launch(found, sky, None, run, lambda _r: None, said.append) == 7
    assert seen == ["a", None]
    assert "no capacity on local (candidate 1): node 1 of 2 (g-1) could not be made" in said[1]

    def made_then_no_capacity(provider, options, on_created):
        on_created("a record")
        raise NoCapacity("no capacity to recover")

    with pytest.raises(OperationFailed) as e:
        plan.launch(found, sky, None, made_then_no_capacity, lambda _r: None, said.append)
    assert not isinstance(e.value, NoCapacity)

    def refused(provider, options, on_created):
        raise BadInput(f"not in region {options.region}")

    with pytest.raises(BadInput) as refusal:
        plan.launch(found, sky, None, refused, lambda _r: None, said.append)
    assert str(refusal.value) == (
        "no candidate could be rented (candidate 1 on local: not in region a; "
        "candidate 2 on local: not in region None)"
    )


def test_a_setup_without_errexit_is_remembered_apart():
    assert launch.setup_key("pip install .", "/w", errexit=False) != launch.setup_key(
        "pip install .", "/w"
    )


def test_an_env_file_also_overrides_the_task_file(tmp_path):
    task = write(tmp_path / "sky.yaml", "envs:\n  LR: '0.1'\n  TOKEN: null\nrun: echo $LR $TOKEN\n")
    env_file = tmp_path / "my.env"
    env_file.write_text("LR=0.5\nTOKEN=abc\n")
    r = trainctl(
        "run", "-f", task, "-p", "local", "--no-sync", "--checkpoint-sync", "off",
        "--env-file", str(env_file), cwd=tmp_path,
    )  # fmt: skip
    assert r.code == 0, r.err
    assert r.out == "0.5 abc\n"


def test_a_candidate_that_cannot_place_the_nodes_together_is_named(tmp_path):
    task = write(
        tmp_path / "sky.yaml",
        "num_nodes: 2\nresources:\n  ordered:\n    - infra: local\n    - infra: ssh\nrun: x\n",
    )
    r = trainctl("run", "-f", task, "--dryrun", "--json", cwd=tmp_path)
    assert r.code == 0, r.err
    plan_doc = r.json()
    assert [(t["candidate"], t["provider"], t["nodes"]) for t in plan_doc["tries"]] == [
        (2, "ssh", 2)
    ]
    (named,) = plan_doc["cannot_rent"]
    assert named.startswith("candidate 1 on local: provider 'local' cannot rent several")


def test_a_two_node_task_falls_back_to_its_second_candidate_as_a_runpod_cluster(
    runpod_cli, tmp_path
):
    """Each try is a whole group: an offer a cluster cannot take (the community cloud)
    is named and passed over, one without capacity too; the second candidate's cluster
    is rented and both nodes read SkyPilot's variables."""
    r = run_without(
        runpod_cli,
        "NVIDIA L40S",
        tmp_path,
        "num_nodes: 2\nresources:\n  ordered:\n    - {accelerators: L40S:1}\n"
        "    - {accelerators: A100-80GB:1}\n"
        'run: echo "rank $SKYPILOT_NODE_RANK of $SKYPILOT_NUM_NODES:" $SKYPILOT_NODE_IPS\n',
    )
    assert "refused it: a RunPod cluster cannot be asked for on the community cloud" in r.err
    assert "no capacity on runpod (candidate 1): RunPod has no cluster of 2x" in r.err
    (cluster_id,) = runpod_cli.made_clusters
    assert runpod_cli.clusters == {} and runpod_cli.pods == {}  # released after the run
    ips = [line.split(":", 1)[1].split() for line in r.out.splitlines() if "rank " in line]
    assert len(ips) == 2 and ips[0] == ips[1] and len(ips[0]) == 2
    assert "[node 1] rank 1 of 2:" in r.out


def test_setup_and_run_get_skypilots_preamble_so_conda_activate_works(tmp_path):
    """SkyPilot's task script sources ~/.bashrc and conda's shell functions before a
    task's setup and run; a task that does `conda activate` in `run` needs them."""
    home = Path(os.environ["HOME"])
    (home / ".bashrc").write_text("export FROM_BASHRC=yes\n")  # no interactive guard
    base = tmp_path / "conda"
    (base / "etc" / "profile.d").mkdir(parents=True)
    (base / "etc" / "profile.d" / "conda.sh").write_text(
        'conda() { if [ "$1" = activate ]; then export CONDA_DEFAULT_ENV="$2"; fi; }\n'
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "conda"  # `conda info --base`, before conda.sh defines the function
    fake.write_text(f"#!/bin/sh\necho {base}\n")
    fake.chmod(0o755)
    task = write(
        tmp_path / "sky.yaml",
        "setup: |\n  conda activate built\n  echo \"setup env=$CONDA_DEFAULT_ENV\"\n"
        "run: |\n  conda activate train\n"
        '  echo "run env=$CONDA_DEFAULT_ENV bashrc=$FROM_BASHRC unbuffered=$PYTHONUNBUFFERED"\n',
    )
    path = f"{bin_dir}:{os.environ['PATH']}"
    r = trainctl("run", "-f", task, "-p", "local", "--checkpoint-sync", "off",
                 "-e", f"PATH={path}", cwd=tmp_path)  # fmt: skip
    assert r.code == 0, r.err
    assert "setup env=built" in r.out.splitlines(), r.out
    assert "run env=train bashrc=yes unbuffered=1" in r.out.splitlines(), r.out
    shown = trainctl("run", "-f", task, "-p", "local", "--dryrun", cwd=tmp_path)
    assert "source ~/.bashrc" not in shown.out  # the plan shows the task's own script


@pytest.mark.parametrize(
    "accelerators", ["[{A100: 1, V100: 1}]", "[{}]", "[{A100: 1, V100: 1}, T4]"]
)
def test_an_accelerator_mapping_of_other_than_one_gpu_is_one_error(tmp_path, accelerators):
    task = write(
        tmp_path / "sky.yaml",
        f"resources:\n  infra: local\n  accelerators: {accelerators}\nrun: echo hi\n",
    )
    r = trainctl("run", "-f", task, "--dryrun", cwd=tmp_path)
    assert r.code == 2 and "Traceback" not in r.err and "internal" not in r.err, r.err
    assert "must be NAME or NAME:COUNT" in r.err


def test_an_accelerator_list_cannot_go_with_any_of(tmp_path):
    task = write(
        tmp_path / "sky.yaml",
        "resources:\n  accelerators: [A100, V100]\n  any_of:\n    - infra: local\n"
        "    - infra: ssh\nrun: echo hi\n",
    )
    r = trainctl("run", "-f", task, "--dryrun", cwd=tmp_path)
    assert r.code == 2 and "a list of accelerators (an order) cannot go with any_of" in r.err


def test_a_candidate_on_another_provider_does_not_inherit_the_tasks_region(tmp_path):
    task = write(
        tmp_path / "sky.yaml",
        "resources:\n  infra: aws/us-east-1\n  ordered:\n    - infra: runpod\n"
        "      accelerators: RTX4090:1\n    - accelerators: T4:1\nrun: echo hi\n",
    )
    r = trainctl("run", "-f", task, "--dryrun", "--json", cwd=tmp_path)
    named = r.json()["cannot_rent"]  # no credentials here: each is named, with its region
    assert named[0].startswith("candidate 1 (RTX4090:1 on runpod)"), named
    assert named[1].startswith("candidate 2 (T4:1 on aws in us-east-1)"), named


def test_a_mount_target_docker_cannot_carry_is_refused(tmp_path):
    (tmp_path / "data").mkdir()
    task = write(tmp_path / "sky.yaml", "file_mounts:\n  /data:x: data\nrun: echo hi\n")
    r = trainctl("run", "-f", task, "-p", "local", "--dryrun", cwd=tmp_path)
    assert r.code == 2 and "cannot hold ':' or ','" in r.err, r.err


def test_a_candidate_without_a_gpu_on_a_provider_without_credentials_is_named(tmp_path):
    task = write(
        tmp_path / "sky.yaml",
        "resources:\n  ordered:\n    - infra: aws\n      instance_type: t3.micro\n"
        "    - infra: local\nrun: echo hi\n",
    )
    r = trainctl("run", "-f", task, "--dryrun", "--json", cwd=tmp_path)
    assert r.code == 0, r.err
    doc = r.json()
    assert [t["provider"] for t in doc["tries"]] == ["local"]
    assert doc["cannot_rent"][0].startswith("candidate 1 (no GPU t3.micro on aws)"), doc
