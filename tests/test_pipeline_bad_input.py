"""Bad input is quarantined with its reason and the rest finishes: every case the issue lists."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.io as sio

from motionlab.config import load_config
from motionlab.pipelines.penn_action import PipelineSettings, prepare_penn_action, sample_spec
from motionlab.pipelines.video_samples import video_to_samples
from motionlab.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _edit_label(root: Path, vid: str, **fields) -> None:
    path = root / "labels" / f"{vid}.mat"
    mat = {k: v for k, v in sio.loadmat(path).items() if not k.startswith("__")}
    mat.update(fields)
    sio.savemat(path, mat)


@pytest.fixture(scope="module")
def broken_source(penn_source: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A copy of the generated data with one defect per video; returns the defect of each broken video."""
    root = tmp_path_factory.mktemp("broken") / "penn_action"
    shutil.copytree(penn_source, root)
    # Frame-level defects go to videos with at least two samples, so "the video keeps the rest" is testable.
    spec = sample_spec(load_config("m4", preset="tiny"), penn_source)
    counts = {p.stem: len(video_to_samples({"video_id": p.stem, "split": "train"}, spec))
              for p in sorted((root / "labels").glob("*.mat"))}
    rich = [v for v, n in counts.items() if n >= 3][:3]
    ids = [v for v in counts if v not in rich][:4]
    ids = ids[:3] + rich + ids[3:]
    defects = {}
    # corrupt .mat
    (root / "labels" / f"{ids[0]}.mat").write_bytes(b"MATLAB 5.0 MAT-file, this is not one" + os.urandom(64))
    defects[ids[0]] = "corrupt"
    # missing .mat (frames without a label)
    (root / "labels" / f"{ids[1]}.mat").unlink()
    defects[ids[1]] = "missing label"
    # a missing frame: label rows != frames
    frames = sorted((root / "frames" / ids[2]).glob("*.jpg"))
    frames[-1].unlink()
    defects[ids[2]] = "rows"
    # an unreadable frame in the middle of a clip
    frames = sorted((root / "frames" / ids[3]).glob("*.jpg"))
    frames[5].write_bytes(b"\xff\xd8\xff garbage")
    defects[ids[3]] = "frame"
    # NaN coordinates in one frame, negative coordinates in another
    mat = sio.loadmat(root / "labels" / f"{ids[4]}.mat")
    x = mat["x"].astype(np.float64)
    x[3, 2] = np.nan
    _edit_label(root, ids[4], x=x)
    defects[ids[4]] = "nan"
    mat = sio.loadmat(root / "labels" / f"{ids[5]}.mat")
    y = mat["y"].astype(np.float64)
    y[4, 7] = -12.0
    _edit_label(root, ids[5], y=y)
    defects[ids[5]] = "negative"
    # an empty video: no frames on disk
    shutil.rmtree(root / "frames" / ids[6])
    (root / "frames" / ids[6]).mkdir()
    defects[ids[6]] = "empty"
    return root, defects


def test_every_bad_input_is_quarantined_and_the_rest_finishes(
    ray_local, broken_source, workspace: Workspace, fsq_steps: int, tmp_path: Path
) -> None:
    root, defects = broken_source
    ids = list(defects)
    cfg = load_config("m4", preset="tiny")
    out = tmp_path / "tokens"
    manifest = prepare_penn_action(root, cfg, out, workspace, PipelineSettings(fsq_steps=fsq_steps))
    q = pd.read_parquet(out / "quarantine.parquet")
    by_video = {v: " | ".join(g["reason"]) for v, g in q.groupby("video_id")}

    assert set(by_video) == set(ids)  # exactly the broken videos, nothing else
    assert "labels/" + ids[0] in by_video[ids[0]] and "fix:" in by_video[ids[0]]
    assert "labels/" + ids[1] in by_video[ids[1]]
    assert "rows" in by_video[ids[2]] and f"frames/{ids[2]}" in by_video[ids[2]]
    assert f"frames/{ids[3]}/" in by_video[ids[3]]
    assert (q[q.video_id == ids[3]]["frame"] == 6).all()  # only the unreadable frame
    assert "nan" in by_video[ids[4]].lower() and (q[q.video_id == ids[4]]["frame"] == 4).all()
    assert "-12" in by_video[ids[5]] and (q[q.video_id == ids[5]]["frame"] == 5).all()
    assert "no frames" in by_video[ids[6]]
    for reason in q["reason"]:
        assert "fix:" in reason, reason

    kept_videos = set()
    for split in ("train", "eval", "test"):
        for f in (out / split).glob("*.parquet"):
            kept_videos |= set(pd.read_parquet(f)["video_id"])
    # the frame-level defects lose one frame, not the video; the rest of the dataset is all there
    assert {ids[3], ids[4], ids[5]} <= kept_videos
    assert not {ids[0], ids[1], ids[2], ids[6]} & kept_videos
    assert len(kept_videos) == 24 - 4
    assert manifest["quarantined"] == len(q)


def test_entry_point_script_reports_kept_and_quarantined(broken_source, workspace: Workspace, tmp_path: Path) -> None:
    """The thin `pipelines/` script under its own Ray: exit 0 and one summary line."""
    root, defects = broken_source
    env = {**os.environ, "MOTIONLAB_WORKSPACE": str(workspace.root)}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run(
        [sys.executable, str(REPO / "pipelines" / "tokenize_penn_action.py"), "--source", str(root),
         "--config", "m1", "--preset", "tiny", "--out", str(tmp_path / "m1"), "--num-cpus", "2"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = [line for line in proc.stdout.splitlines() if line.startswith("prepared m1/tiny")]
    assert summary and "quarantined" in summary[0]
    q = pd.read_parquet(tmp_path / "m1" / "quarantine.parquet")
    assert set(q["video_id"]) == set(defects)
