"""`ray job submit --working-dir . -- python experiments/sweep_alphas.py --preset smoke` against a real Ray head
started with `ray start --head` in its own process group (stopped by killing that group, never `ray stop`)."""

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

from motionlab.tracking.runs import KIND_TAG, SWEEP_TAG
from motionlab.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[1]
QUICK = ["total_tokens=0.03", "warmup_tokens=0.003", "eval_freq=0.01", "save_ckpt_freq=0.03"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_job_submit_runs_the_smoke_sweep(ray_local, prepared_tokens, tmp_path: Path) -> None:
    tokens = prepared_tokens("m4", "smoke").root
    ws = tmp_path / "ws"
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
    log = (tmp_path / "head.log").open("w")
    head = subprocess.Popen(head_cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from ray.job_submission import JobStatus, JobSubmissionClient

        address = f"http://127.0.0.1:{dashboard}"
        deadline = time.time() + 120
        client = None
        while client is None:
            try:
                client = JobSubmissionClient(address)
            except Exception:
                if time.time() > deadline or head.poll() is not None:
                    raise AssertionError((tmp_path / "head.log").read_text()[-3000:]) from None
                time.sleep(1)
        # two Rays on this machine now: a worker of this module's Ray still names its own cluster (Train's
        # placement-group cleaner finds the State API through RAY_ADDRESS; discovery fails with two clusters)
        import ray

        @ray.remote(num_cpus=0)
        def own_address() -> str | None:
            return os.environ.get("RAY_ADDRESS")

        assert ray.get(own_address.remote()) == ray.get_runtime_context().gcs_address
        entrypoint = (f"python experiments/sweep_alphas.py --workspace {ws} --preset smoke --data {tokens} "
                      f"--name job-sweep --num-samples 1 --scheduler fifo " + " ".join(QUICK))
        job = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(REPO)})
        deadline = time.time() + 600
        while client.get_job_status(job) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
            assert time.time() < deadline, client.get_job_logs(job)[-3000:]
            time.sleep(2)
        logs = client.get_job_logs(job)
        assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs[-4000:]
        # the entry point joined the head (RAY_ADDRESS) instead of starting a Ray of its own
        assert "Connecting to existing Ray cluster" in logs or "Connected to Ray cluster" in logs, logs[-2000:]
        assert "sweep job-sweep: 1 trials (0 failed)" in logs
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)
    mlflow = MlflowClient(Workspace(ws).mlflow_uri)
    exp = mlflow.get_experiment_by_name("multimodal")
    runs = mlflow.search_runs([exp.experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = 'job-sweep'")
    kinds = sorted((r.data.tags[KIND_TAG], r.info.status) for r in runs)
    assert kinds == [("sweep", "FINISHED"), ("trial", "FINISHED")]
