"""Shared fixtures: a small real local Ray, generated Penn Action data, and the real data in ../shared."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def shared_dataset(*parts: str) -> Path:
    """A folder of the real data beside the repository, or a skip that says why."""
    path = SHARED_DATASETS.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data {path} is absent (a fresh clone has no ../shared); generated data covers this path")
    return path


def load_benchmark(name: str):
    """A script of benchmarks/ as a module, so tests can check its pure functions (summary lines, arms)."""
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a driver started in its own session and every process under it (its Ray's raylet and workers
    among them), and wait until all are gone: a worker left alive a moment longer could still write a checkpoint."""
    import psutil

    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        tree = []
    os.killpg(proc.pid, signal.SIGKILL)
    for child in tree:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)
    psutil.wait_procs(tree, timeout=60)


def run_script(script: Path, args: list[str]) -> int:
    """An entry script run as `python script args` would run it, but in this process (on its Ray, without a
    second interpreter's start-up); returns its exit status."""
    import runpy

    argv = sys.argv
    sys.argv = [str(script), *args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as done:
        return int(done.code or 0)
    finally:
        sys.argv = argv
    return 0


def printed_until(capfd: pytest.CaptureFixture, text: str, seconds: float = 30) -> str:
    """What this process printed since the last read, waiting for `text`: Ray workers' lines reach the driver
    through Ray's log monitor a moment after they are written."""
    import time

    out = ""
    deadline = time.time() + seconds
    while True:
        captured = capfd.readouterr()
        out += captured.out + captured.err
        if text in out or time.time() > deadline:
            return out
        time.sleep(0.5)


@pytest.fixture(scope="session")
def _session_ray() -> Iterator[None]:
    """One small local Ray for the whole run, started by the first module that needs it: 2 CPUs, a 200 MB object
    store, and the dashboard (Tune stops Train runs early and Train V2 cleans their placement groups up through
    its State API). Each start costs 5 to 8 s and a run has a dozen Ray modules; later modules also find worker
    processes that have already imported Ray Data."""
    import ray

    from motionlab.raycluster import init_ray

    # A short temp path: Ray's unix sockets must fit in 107 characters.
    temp = Path(tempfile.mkdtemp(prefix="mlray", dir="/tmp"))
    init_ray(num_cpus=2, object_store_mb=200, temp_dir=temp, include_dashboard=True)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_local(_session_ray) -> Iterator[None]:
    """The session's Ray, checked idle at the end of each module: an actor or placement group a module leaves
    behind would hold CPUs the next module's runs wait for."""
    yield
    _assert_idle()


@pytest.fixture(scope="module")
def ray_with_dashboard(ray_local) -> Iterator[None]:
    """The same Ray (it always has its dashboard); the name says what the module relies on."""
    yield


def _assert_idle(timeout: float = 60.0) -> None:
    import time

    import ray

    deadline = time.time() + timeout
    while (free := ray.available_resources().get("CPU", 0.0)) < ray.cluster_resources().get("CPU", 0.0) - 1e-6:
        if time.time() > deadline:
            raise AssertionError(f"a test module left Ray busy: {free} of {ray.cluster_resources()['CPU']} CPUs free")
        time.sleep(0.5)


@pytest.fixture
def torch_one_thread() -> Iterator[None]:
    """Tiny models run fastest on one thread; on busy shared cores two threads were 50x slower (spin-waits)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def penn_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 generated Penn Action look-alike videos (every action at least once), small frames for speed."""
    from motionlab.datasets.synth_penn import synth_penn_action

    root = tmp_path_factory.mktemp("penn") / "penn_action"
    synth_penn_action(root, videos=24, seed=3, size=(120, 160), frames=(16, 28))
    return root


# Few FSQ steps: the tests check the pipeline's plumbing, not the tokenizer's reconstruction quality.
TEST_FSQ_STEPS = 60


@pytest.fixture(scope="session")
def fsq_steps() -> int:
    return TEST_FSQ_STEPS


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    """One workspace for the session, so the tiny FSQ tokenizer is trained once and reused."""
    from motionlab.workspace import Workspace

    return Workspace(tmp_path_factory.mktemp("workspace")).ensure()


@pytest.fixture(scope="session")
def prepared_tokens(penn_source: Path, workspace, fsq_steps: int, tmp_path_factory):
    """Tokens of the session's generated videos, prepared once per data fingerprint and shared by the modules
    that train on them (M3 and M4 tiny and smoke share one layout; M1 trains on M2's, a superset).
    The calling module must have a Ray running (`ray_local` or `ray_with_dashboard`)."""
    from motionlab.config import load_config
    from motionlab.pipelines.penn_action import PipelineSettings, prepare_penn_action
    from motionlab.training.data import PreparedData

    made: dict[str, Path] = {}

    def get(name: str, preset: str = "tiny") -> PreparedData:
        cfg = load_config(name, preset=preset)
        source_cfg = load_config("m2", preset=preset) if name == "m1" else cfg
        key = source_cfg.fingerprint("data")
        if key not in made:
            out = tmp_path_factory.mktemp(f"tokens-{source_cfg.name}") / "tokens"
            prepare_penn_action(penn_source, source_cfg, out, workspace, PipelineSettings(fsq_steps=fsq_steps))
            made[key] = out
        return PreparedData.open(made[key], cfg)

    return get
