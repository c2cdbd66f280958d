"""The Penn Action graph end to end on a real local Ray, over generated data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from motionlab.config import ConfigError, load_config
from motionlab.datasets.penn_action import read_label
from motionlab.pipelines.geometry import SquareCrop
from motionlab.pipelines.penn_action import PipelineSettings, prepare_penn_action
from motionlab.tokenizers.pose import VIS_VISIBLE, PoseQuantizer
from motionlab.tokenizers.text import TextTokenizer
from motionlab.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]



def read_split(out: Path, split: str) -> pd.DataFrame:
    files = sorted((out / split).glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()


@pytest.fixture(scope="module")
def m4_out(ray_local, penn_source: Path, workspace: Workspace, fsq_steps: int, tmp_path_factory) -> tuple[Path, dict]:
    cfg = load_config("m4", preset="tiny")
    out = tmp_path_factory.mktemp("m4") / "tokens"
    settings = PipelineSettings(chunk_videos=10, fsq_steps=fsq_steps)
    manifest = prepare_penn_action(penn_source, cfg, out, workspace, settings)
    return out, manifest


def test_m4_tiny_layout_counts_and_manifest(m4_out, penn_source: Path) -> None:
    out, manifest = m4_out
    cfg = load_config("m4", preset="tiny")
    frames = {s: read_split(out, s) for s in ("train", "eval", "test")}
    assert all(len(df) > 0 for df in frames.values())
    assert manifest["samples"] == {**{s: len(df) for s, df in frames.items()},
                                   "total": sum(len(df) for df in frames.values())}
    assert manifest["quarantined"] == 0 and len(pd.read_parquet(out / "quarantine.parquet")) == 0
    assert manifest["chunks"] == {"total": 3, "reused": 0, "processed": 3}
    assert manifest["videos"] == {"train": 19, "eval": 2, "test": 3}  # 80/10/10 of 24 videos
    assert len(manifest["video_ids"]) == 24
    df = frames["train"]
    expected_cols = {*cfg.modalities, "video_id", "frame", "next_frame", "action", "caption", "split"}
    assert expected_cols <= set(df.columns)
    for name, length in cfg.lengths().items():
        lengths = df[name].map(len)
        assert (lengths == length).all(), name
        stacked = np.stack(df[name].to_numpy())
        assert stacked.dtype == np.int32 and stacked.min() >= 0 and stacked.max() < cfg.vocab()[name]
    assert (df["next_frame"] > df["frame"]).all()  # a successor always comes later
    assert (df["split"] == "train").all()
    # Several keyframes per video: SSIM chains advance through the clips.
    assert df.groupby("video_id").size().max() >= 2


def test_splits_are_leak_free_by_video(m4_out) -> None:
    out, _ = m4_out
    videos = {s: set(read_split(out, s)["video_id"]) for s in ("train", "eval", "test")}
    assert not videos["train"] & videos["eval"]
    assert not videos["train"] & videos["test"]
    assert not videos["eval"] & videos["test"]


def test_pose_tokens_dequantise_onto_the_transformed_label(m4_out, penn_source: Path) -> None:
    out, _ = m4_out
    cfg = load_config("m4", preset="tiny")
    quantizer = PoseQuantizer(bins=cfg.data.pose_bins, canvas=cfg.data.image_size)
    half_bin = cfg.data.image_size / cfg.data.pose_bins / 2
    df = read_split(out, "train").head(12)
    checked = 0
    for row in df.itertuples():
        label = read_label(penn_source, row.video_id)
        crop = SquareCrop.centred(label.width, label.height, cfg.data.image_size)
        for col, frame in (("coords", row.frame), ("coords_next", row.next_frame)):
            x, y, state = quantizer.decode(np.asarray(getattr(row, col)))
            lx, ly = crop.joints(label.x[frame - 1], label.y[frame - 1])
            ok = state == VIS_VISIBLE
            assert np.all(np.abs(x[ok] - lx[ok]) <= half_bin + 1e-9)
            assert np.all(np.abs(y[ok] - ly[ok]) <= half_bin + 1e-9)
            checked += int(ok.sum())
    assert checked > 100


def test_each_chunk_holds_only_its_own_videos(m4_out) -> None:
    out, manifest = m4_out
    # one graph streams all three chunks; each is cut from the stream as soon as a later chunk's rows arrive
    assert manifest["chunks"] == {"total": 3, "reused": 0, "processed": 3}
    staged: set[str] = set()
    for k in range(3):
        chunk = out / "_stage" / f"chunk-{k:05d}"
        videos = json.loads((chunk / "_SUCCESS").read_text())["videos"]
        assert videos == manifest["video_ids"][10 * k : 10 * (k + 1)]
        held = set(pd.read_parquet(chunk / "part-0.parquet", columns=["video_id"])["video_id"])
        assert held and held <= set(videos)
        staged |= held
    assert staged >= {*read_split(out, "train")["video_id"], *read_split(out, "test")["video_id"]}


def test_second_run_resumes_instead_of_restarting(m4_out, penn_source: Path, workspace: Workspace) -> None:
    out, first = m4_out
    cfg = load_config("m4", preset="tiny")
    lines: list[str] = []
    again = prepare_penn_action(penn_source, cfg, out, workspace, PipelineSettings(chunk_videos=10), log=lines.append)
    assert again["created"] == first["created"] and any("nothing to do" in line for line in lines)

    # An interrupted run: the manifest and one chunk are gone; only that chunk is redone.
    before = read_split(out, "train").sort_values(["video_id", "frame"]).reset_index(drop=True)
    (out / "manifest.json").unlink()
    shutil.rmtree(out / "_stage" / "chunk-00001")
    resumed = prepare_penn_action(penn_source, cfg, out, workspace, PipelineSettings(chunk_videos=10))
    assert resumed["chunks"] == {"total": 3, "reused": 2, "processed": 1}
    after = read_split(out, "train").sort_values(["video_id", "frame"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(before, after)


def test_other_config_on_same_output_is_refused(m4_out, penn_source: Path, workspace: Workspace) -> None:
    out, _ = m4_out
    cfg = load_config("m4", preset="tiny", overrides=["data.ssim_threshold=0.8"])
    with pytest.raises(ConfigError, match="--overwrite"):
        prepare_penn_action(penn_source, cfg, out, workspace, PipelineSettings(chunk_videos=10))


def test_m2_tiny_six_future_frames_and_caption_tokens(ray_local, penn_source: Path, workspace: Workspace,
                                                      tmp_path: Path) -> None:
    cfg = load_config("m2", preset="tiny")
    out = tmp_path / "m2"
    manifest = prepare_penn_action(penn_source, cfg, out, workspace)  # one chunk: chunking is tested on M4
    df = pd.concat([read_split(out, s) for s in ("train", "eval", "test")], ignore_index=True)
    assert len(df) == manifest["samples"]["total"] > 0
    for name, length in cfg.lengths().items():
        assert (df[name].map(len) == length).all(), name
    text = TextTokenizer.load(out / "text_tokenizer.json")
    assert text.vocab_size <= cfg.data.text_vocab_size
    for row in df.head(5).itertuples():
        assert text.decode(list(row.captions)) == " ".join(row.caption.split())
