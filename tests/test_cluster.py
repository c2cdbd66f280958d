"""cluster.yaml: Ray's own validator accepts it, it keeps every listener off the internet, and its node types
autoscale (a GPU demand brings up a GPU worker, a CPU demand a CPU worker, both go away when idle).

The autoscaling test runs Ray's `fake_multinode` provider on this machine: the autoscaler "launches" a node by
starting another raylet here with that node type's resources, so no cloud account is needed.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"

HEAD = "ray.head.default"
GPU_WORKER = "ray.worker.gpu"
CPU_WORKER = "ray.worker.cpu"
COMMAND_KEYS = ("setup_commands", "head_setup_commands", "worker_setup_commands",
                "head_start_ray_commands", "worker_start_ray_commands")
WORLD = ("0.0.0.0/0", "::/0")


def raw_config() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


@pytest.fixture(scope="module")
def prepared() -> dict:
    """The config as `ray up` sees it: merged with the AWS defaults, then validated against Ray's schema.

    Both calls are private Ray APIs (`ray.autoscaler._private.util`); this test pins their behaviour for 2.60.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(raw_config())
    validate_config(config)
    return config


def commands(config: dict) -> list[str]:
    return [cmd for key in COMMAND_KEYS for cmd in config[key]]


def test_ray_validator_accepts_cluster_yaml(prepared: dict) -> None:
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] == HEAD
    assert set(prepared["available_node_types"]) == {HEAD, GPU_WORKER, CPU_WORKER}
    # prepare_config caps the head at 0 workers of its own type; the others keep their own caps.
    assert prepared["available_node_types"][HEAD]["max_workers"] == 0


def test_node_types_scale_from_zero(prepared: dict) -> None:
    types = prepared["available_node_types"]
    for name, node_type in types.items():
        for key, value in node_type["resources"].items():
            assert isinstance(value, int), f"{name}.resources.{key} must be an integer, got {value!r}"
    gpu, cpu = types[GPU_WORKER], types[CPU_WORKER]
    assert gpu["min_workers"] == 0 and gpu["resources"]["GPU"] >= 1
    assert cpu["min_workers"] == 0 and cpu["resources"]["CPU"] >= 1 and not cpu["resources"].get("GPU")
    assert types[HEAD]["resources"] == {"CPU": 0}, "the head keeps its cores for the GCS, drivers and MLflow"
    for node_type in (gpu, cpu):
        assert 1 <= node_type["max_workers"] <= prepared["max_workers"]
    assert 0 < prepared["idle_timeout_minutes"] <= 30


def test_commands_are_explicit_and_pinned(prepared: dict) -> None:
    import ray

    raw = raw_config()
    for key in (*COMMAND_KEYS, "initialization_commands"):
        assert key in raw, f"cluster.yaml must set {key}: an omitted key takes the AWS defaults wholesale"
    text = "\n".join(commands(prepared))
    assert "ray-wheels" not in text and "dev0" not in text, "the AWS default setup (a nightly Ray) leaked in"

    pyproject = (REPO / "pyproject.toml").read_text()
    ray_pin = re.search(r'"(ray\[[a-z,]+\]==[\d.]+)"', pyproject).group(1)
    torch_pin = re.search(r'"(torch==[\d.]+)"', pyproject).group(1)
    assert ray_pin == f"ray[default,train,tune,data]=={ray.__version__}" == "ray[default,train,tune,data]==2.60.0"
    setup = "\n".join(raw["setup_commands"])
    assert f'"{ray_pin}"' in setup and torch_pin in setup
    assert "-e ~/motionlab" in setup and '-e "$HOME/motionlab[gpu]"' in setup
    assert any("ray start --head" in cmd for cmd in raw["head_start_ray_commands"])
    assert any("ray start --address=$RAY_HEAD_IP:6379" in cmd for cmd in raw["worker_start_ray_commands"])
    for cmd in commands(prepared):
        check = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
        assert check.returncode == 0, f"{cmd}\n{check.stderr}"


def test_listeners_stay_private(prepared: dict) -> None:
    text = "\n".join(commands(prepared))
    assert "0.0.0.0" not in text and "--host ::" not in text, "nothing binds every interface"
    head_start = "\n".join(prepared["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start

    mlflow = re.search(r"mlflow server (.*?)'", head_start, re.S)
    assert mlflow, "the head starts the MLflow server"
    host = re.search(r"--host\s+(\S+)", mlflow.group(1)).group(1)
    assert host == '"$MOTIONLAB_HEAD_IP"', f"MLflow binds the head's private address, not {host}"
    assert "--port 5000" in mlflow.group(1)
    assert "--artifacts-destination \"s3://" in mlflow.group(1)
    # Every node, head and workers, points MLflow clients at that address and port.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("MLFLOW_TRACKING_URI=http://%s:5000" in cmd for cmd in prepared[key]), key


def test_no_port_open_to_the_internet(prepared: dict) -> None:
    # A group the launcher creates itself always gets SSH from 0.0.0.0/0, so every node type names its own.
    for name, node_type in prepared["available_node_types"].items():
        assert node_type["node_config"].get("SecurityGroupIds"), f"{name} must name the cluster's security group"
    rules = prepared["provider"].get("security_group", {}).get("IpPermissions", [])
    assert not any(world in json.dumps(rules) for world in WORLD)
    values = json.dumps(prepared)  # the parsed config: comments may explain 0.0.0.0/0, values may not use it
    assert not any(world in values for world in WORLD)


def test_shared_storage_and_token_auth(prepared: dict) -> None:
    setup = "\n".join(prepared["setup_commands"])
    assert "export MOTIONLAB_WORKSPACE=/mnt/shared/workspace" in setup
    assert re.search(r"mount -t nfs4 .*/mnt/shared", setup)
    assert "export RAY_AUTH_MODE=token" in setup
    assert prepared["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    # The node's own settings reach Ray's processes because `ray start` runs after they are sourced.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any(". ~/motionlab.env" in cmd and "ray start" in cmd for cmd in prepared[key]), key


def test_worker_environment_points_at_the_head(prepared: dict, tmp_path: Path) -> None:
    """The first setup command and the worker's start commands, run as the launcher runs them (a shell that
    sources ~/.bashrc first), in a scratch home: what a Ray worker process on that node inherits."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# the AMI's own\n")
    env = {"HOME": str(home), "PATH": os.environ["PATH"], "RAY_HEAD_IP": "10.0.3.7"}

    def launcher_runs(cmd: str) -> str:
        done = subprocess.run(["bash", "-c", f"source ~/.bashrc; ({cmd})"], env=env, capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, f"{cmd}\n{done.stderr}"
        return done.stdout

    for _ in range(2):  # `ray up` on a running cluster runs the setup again
        launcher_runs(prepared["setup_commands"][0])
    node_env = next(cmd for cmd in prepared["worker_start_ray_commands"] if "motionlab-node.env" in cmd)
    launcher_runs(node_env)
    assert (home / ".bashrc").read_text().count(". ~/motionlab.env") == 1
    seen = dict(line.split("=", 1) for line in launcher_runs("env").splitlines() if "=" in line)
    assert seen["MLFLOW_TRACKING_URI"] == "http://10.0.3.7:5000"
    assert seen["MOTIONLAB_HEAD_IP"] == "10.0.3.7"
    assert seen["MOTIONLAB_WORKSPACE"] == "/mnt/shared/workspace"
    assert seen["RAY_AUTH_MODE"] == "token"
    assert seen["PATH"].startswith(f"{home}/venv/bin:")


# ---------------------------------------------------------------------------------------------------------
# Autoscaling with the fake_multinode provider

IDLE_TIMEOUT_MIN = 0.1  # 6 s: the cluster's node types, with an idle timeout a test can wait for
FAKE_OBJECT_STORE = 100 * 1024 * 1024  # bytes per fake node; not part of the cluster's node types

DRIVER = """
import json, sys, time
import ray

ray.init(address=sys.argv[1], log_to_driver=False)
head = ray.get_runtime_context().get_node_id()


@ray.remote(num_cpus=1)
def cpu_stage():
    return ray.get_runtime_context().get_node_id()


@ray.remote(num_gpus=1)
def gpu_step():
    return ray.get_runtime_context().get_node_id(), ray.get_gpu_ids()


def workers(alive_only=True):
    return {n["NodeID"]: n["Resources"] for n in ray.nodes()
            if n["NodeID"] != head and (n["Alive"] or not alive_only)}


# One demand at a time, so each launch is the autoscaler's choice for that demand alone.
t0 = time.monotonic()
cpu_node = ray.get(cpu_stage.remote(), timeout=120)
out = {"cpu_node": cpu_node, "cpu_up_s": time.monotonic() - t0, "cpu_resources": workers()[cpu_node]}
t0 = time.monotonic()
gpu_node, gpu_ids = ray.get(gpu_step.remote(), timeout=120)
out.update(gpu_node=gpu_node, gpu_ids=gpu_ids, gpu_up_s=time.monotonic() - t0, gpu_resources=workers()[gpu_node])
t0 = time.monotonic()
while workers() and time.monotonic() - t0 < float(sys.argv[2]):
    time.sleep(0.5)
out.update(idle_gone_s=time.monotonic() - t0, left=list(workers()), ever_joined=list(workers(alive_only=False)))
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def fake_config(prepared: dict, gcs_address: str) -> dict:
    """cluster.yaml's node types and scaling settings with the AWS specifics swapped for the fake provider."""
    config = copy.deepcopy(prepared)
    config["provider"] = {
        "type": "fake_multinode",
        "use_node_id_as_ip": True,
        "disable_node_updaters": True,
        "disable_launch_config_check": True,
        "gcs_address": gcs_address,
    }
    config["idle_timeout_minutes"] = IDLE_TIMEOUT_MIN
    config["auth"] = {}
    config["file_mounts"] = {}  # nothing to sync: the fake nodes share this machine
    for key in (*COMMAND_KEYS, "initialization_commands"):
        config[key] = []
    for name, node_type in config["available_node_types"].items():
        node_type["node_config"] = {}
        if name != HEAD:
            node_type["resources"]["object_store_memory"] = FAKE_OBJECT_STORE
    return config


def processes_mentioning(marker: str) -> list[int]:
    """Pids whose command line contains marker (this test's own temp dir), the test's process excluded."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def session_logs(temp: Path, head_log: Path) -> str:
    """The head's own log, the autoscaler's log and the raylets' fatal lines, for a failure message."""
    parts = [head_log.read_text(errors="replace")[-1500:]]
    for path in sorted(temp.glob("session_latest/logs/*")):
        text = path.read_text(errors="replace") if path.is_file() else ""
        if path.name == "monitor.log":
            parts.append(f"== {path.name}\n{text[-1500:]}")
        elif path.name.startswith("raylet"):
            parts += [f"== {path.name}: {line}" for line in text.splitlines() if " C " in line or "FATAL" in line]
    return "\n".join(parts)


def stop_cluster(head: subprocess.Popen | None, marker: str) -> list[int]:
    """Stop the head's process group, then any fake node process it left; returns what had to be killed."""
    for sig, wait_s in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)) if head else ():
        try:
            os.killpg(head.pid, sig)
        except ProcessLookupError:
            break
        try:
            head.wait(timeout=wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    stragglers = processes_mentioning(marker)
    for pid in stragglers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return stragglers


def start_head(prepared: dict, temp: Path, env: dict) -> tuple[subprocess.Popen, str, Path, float]:
    """`ray start --head --block` with the fake config, in its own process group; returns once Ray is up.

    On a loaded 2-core machine a raylet whose agents start too slowly aborts the start; one retry covers that.
    """
    from ray.util import get_node_ip_address

    ray_cli = str(Path(sys.executable).parent / "ray")
    head_cpus = prepared["available_node_types"][HEAD]["resources"].get("CPU", 0)
    for attempt in (1, 2):
        port = free_port()
        gcs_address = f"{get_node_ip_address()}:{port}"
        config_path, log_path = temp / f"fake_cluster_{attempt}.yaml", temp / f"head_{attempt}.log"
        config_path.write_text(yaml.safe_dump(fake_config(prepared, gcs_address)))
        cmd = [ray_cli, "start", "--head", "--block", f"--port={port}", f"--temp-dir={temp}",
               f"--autoscaling-config={config_path}", f"--num-cpus={head_cpus}", "--num-gpus=0",
               f"--object-store-memory={FAKE_OBJECT_STORE}", "--include-dashboard=false",
               # Explicit free ports: another Ray on this machine may hold the defaults.
               f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
               f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
               f"--metrics-export-port={free_port()}"]
        started = time.monotonic()
        with open(log_path, "w") as log:
            head = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        while "Ray runtime started" not in log_path.read_text():
            if head.poll() is not None or time.monotonic() - started > 90:
                break
            time.sleep(0.5)
        else:
            return head, gcs_address, log_path, time.monotonic() - started
        failure = session_logs(temp, log_path)
        stop_cluster(head, str(temp))
    pytest.fail(f"the fake cluster's head did not start twice; last attempt:\n{failure}")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_gpu_demand_brings_up_a_gpu_worker_that_goes_away_when_idle(prepared: dict) -> None:
    types = prepared["available_node_types"]
    # A short path: Ray's unix sockets live under it and must fit in 107 characters.
    temp = Path(tempfile.mkdtemp(prefix="mlfk", dir="/tmp"))
    (temp / "driver.py").write_text(DRIVER)
    env = {**os.environ, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1", "RAY_AUTH_MODE": "disabled",
           "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    head = None
    try:
        head, gcs_address, head_log, head_up_s = start_head(prepared, temp, env)
        idle_bound_s = IDLE_TIMEOUT_MIN * 60 + 30
        driver = subprocess.run([sys.executable, str(temp / "driver.py"), gcs_address, str(idle_bound_s)],
                                env=env, capture_output=True, text=True, timeout=200)
        assert driver.returncode == 0, f"{driver.stderr[-3000:]}\n{session_logs(temp, head_log)}"
        out = json.loads(driver.stdout.strip().splitlines()[-1])
        print(f"\nhead up {head_up_s:.1f} s; CPU worker up and task done {out['cpu_up_s']:.1f} s; "
              f"GPU worker up and task done {out['gpu_up_s']:.1f} s; idle workers gone {out['idle_gone_s']:.1f} s "
              f"after the last task (idle timeout {IDLE_TIMEOUT_MIN * 60:.0f} s)")

        # The workers are cluster.yaml's node types: the CPU task on a CPU worker (the autoscaler keeps GPU
        # nodes for GPU work), the GPU task on a GPU worker, and nothing else was launched.
        assert sorted(out["ever_joined"]) == sorted({out["cpu_node"], out["gpu_node"]}), out
        assert out["gpu_node"] != out["cpu_node"]
        gpu_resources, cpu_resources = out["gpu_resources"], out["cpu_resources"]
        assert gpu_resources["GPU"] == types[GPU_WORKER]["resources"]["GPU"] == 1
        assert gpu_resources["CPU"] == types[GPU_WORKER]["resources"]["CPU"]
        assert cpu_resources["CPU"] == types[CPU_WORKER]["resources"]["CPU"] and "GPU" not in cpu_resources
        assert len(out["gpu_ids"]) == 1
        assert out["left"] == [], f"idle workers still up after {idle_bound_s:.0f} s: {out['left']}"
    finally:
        stragglers = stop_cluster(head, str(temp))
        shutil.rmtree(temp, ignore_errors=True)
    assert processes_mentioning(str(temp)) == []
    print(f"processes killed one by one after the head's group was stopped: {len(stragglers)}")
