"""Shared fixtures: a small real local Ray, generated Penn Action data, and the real data in ../shared."""

from __future__ import annotations

import os
import shutil
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


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """One small local Ray per test module (start-up costs seconds): 2 CPUs, 200 MB object store."""
    import ray

    from motionlab.raycluster import init_ray

    # A short temp path: Ray's unix sockets must fit in 107 characters.
    temp = Path(tempfile.mkdtemp(prefix="mlray", dir="/tmp"))
    init_ray(num_cpus=2, object_store_mb=200, temp_dir=temp)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


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
