"""`ray job submit --working-dir . -- python experiments/sweep_physics.py --preset smoke`, stopped and submitted
again with --resume, against a real Ray head started with `ray start --head` in its own process group (stopped by
killing that group, never `ray stop`). The entry scripts of both sweeps are the same `motionlab sweep` command and
the same sweep driver; the 4M alpha sweep itself is tested in test_sweep.py."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from motionlab.tracking.runs import KIND_TAG, RUN_NAME_TAG, SWEEP_TAG
from motionlab.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def job_client(ray_local, tmp_path_factory):
    """A JobSubmissionClient of a real head on this machine (beside this module's own local Ray)."""
    from ray.job_submission import JobSubmissionClient

    logs = tmp_path_factory.mktemp("head")
    temp = Path(tempfile.mkdtemp(prefix="mljob", dir="/tmp"))  # Ray's socket paths must fit 107 characters
    dashboard = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # `python` in the job is this venv's
    env.pop("RAY_ADDRESS", None)
    head_cmd = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={free_port()}",
                f"--temp-dir={temp}", "--num-cpus=2", "--object-store-memory=200000000",
                "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
                f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
                f"--metrics-export-port={free_port()}"]
    log = (logs / "head.log").open("w")
    head = subprocess.Popen(head_cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        client = None
        while client is None:
            try:
                client = JobSubmissionClient(f"http://127.0.0.1:{dashboard}")
            except Exception:
                if time.time() > deadline or head.poll() is not None:
                    raise AssertionError((logs / "head.log").read_text()[-3000:]) from None
                time.sleep(1)
        yield client
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)


def wait_for(client, job: str, states: set, timeout: float = 600) -> str:
    deadline = time.time() + timeout
    while (status := client.get_job_status(job)) not in states:
        assert time.time() < deadline, client.get_job_logs(job)[-3000:]
        time.sleep(2)
    return status


def sweep_runs(ws: Path, experiment: str, sweep: str) -> list:
    mlflow = MlflowClient(Workspace(ws).mlflow_uri)
    if not (ws / "mlflow.db").exists() or (exp := mlflow.get_experiment_by_name(experiment)) is None:
        return []
    return mlflow.search_runs([exp.experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{sweep}'")


def test_a_stopped_physics_sweep_job_resumes(job_client, tmp_path: Path) -> None:
    """`sweep_physics.py` as a job, stopped (`ray job stop`: its driver and running trial die) once its first
    trial has finished, then submitted again with --resume: it runs only the trial it had not finished."""
    # two Rays on this machine now: a worker of this module's Ray still names its own cluster (Train's
    # placement-group cleaner finds the State API through RAY_ADDRESS; discovery fails with two clusters)
    import ray
    from ray.job_submission import JobStatus

    @ray.remote(num_cpus=0)
    def own_address() -> str | None:
        return os.environ.get("RAY_ADDRESS")

    assert ray.get(own_address.remote()) == ray.get_runtime_context().gcs_address
    ws = tmp_path / "ws"
    # 2 epochs of 56 motions (8 steps, evaluated and checkpointed every 4): the job's life is under test here
    entrypoint = (f"python experiments/sweep_physics.py --workspace {ws} --preset smoke --name job-phys "
                  "--num-samples 2 --scheduler fifo epochs=2 eval_freq=1 save_ckpt_freq=1")
    first = job_client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(REPO)})

    def finished_trials() -> int:
        return sum(1 for r in sweep_runs(ws, "motion", "job-phys")
                   if r.data.tags.get(KIND_TAG) == "trial" and r.info.status == "FINISHED")

    deadline = time.time() + 400
    while finished_trials() < 1 and job_client.get_job_status(first) in {JobStatus.PENDING, JobStatus.RUNNING}:
        assert time.time() < deadline, job_client.get_job_logs(first)[-3000:]
        time.sleep(1)
    logs = job_client.get_job_logs(first)
    # the entry point joined the head (RAY_ADDRESS) instead of starting a Ray of its own
    assert "Connecting to existing Ray cluster" in logs or "Connected to Ray cluster" in logs, logs[-2000:]
    assert job_client.stop_job(first), logs[-3000:]
    assert wait_for(job_client, first, {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}) == JobStatus.STOPPED
    assert "sweep job-phys: 2 trials (" not in job_client.get_job_logs(first)  # stopped before its end

    second = job_client.submit_job(entrypoint=entrypoint + " --resume", runtime_env={"working_dir": str(REPO)})
    status = wait_for(job_client, second, {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED})
    logs = job_client.get_job_logs(second)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    assert "resuming sweep job-phys" in logs and "sweep job-phys: 2 trials (0 failed)" in logs
    runs = sweep_runs(ws, "motion", "job-phys")
    trials = [r for r in runs if r.data.tags[KIND_TAG] == "trial"]
    names = [t.data.tags[RUN_NAME_TAG] for t in trials]
    assert len(names) == len(set(names)) == 2  # one child run per trial: none duplicated, none lost
    assert all(t.info.status == "FINISHED" and t.data.tags["model"] == "PhysicsSSM" for t in trials)
    assert [r.info.status for r in runs if r.data.tags[KIND_TAG] == "sweep"] == ["FINISHED"]
