"""The graph with the other backends (Cosmos TorchScript, BLIP) and over frames drawn from real labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import shared_dataset
from motionlab.config import load_config
from motionlab.datasets.penn_action import list_video_ids, read_label
from motionlab.datasets.synth_penn import synth_penn_action
from motionlab.pipelines.penn_action import PipelineSettings, prepare_penn_action
from motionlab.tokenizers.cosmos import CosmosTokenizer
from motionlab.tokenizers.text import TextTokenizer
from motionlab.workspace import Workspace
from tiny_models import write_tiny_blip, write_tiny_cosmos

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def read_all(out: Path) -> pd.DataFrame:
    files = sorted(out.glob("*/*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files if f.parent.name != "_stage"], ignore_index=True)


def test_cosmos_tokens_and_blip_captions(ray_local, penn_source: Path, workspace: Workspace, tmp_path: Path) -> None:
    cosmos = write_tiny_cosmos(tmp_path / "cosmos")
    blip = write_tiny_blip(tmp_path / "blip")
    cfg = load_config("m1", preset="tiny", overrides=[
        "data.image_tokenizer=cosmos", f"data.image_tokenizer_path={cosmos}", "global_vars.image_downsample=16",
        "vocab_sizes=[64000,1024,1024]", "data.captioner=blip", f"data.captioner_path={blip}",
    ])
    out = tmp_path / "m1"
    manifest = prepare_penn_action(penn_source, cfg, out, workspace, PipelineSettings())
    assert manifest["tokenizers"]["image"]["kind"] == "cosmos"
    df = read_all(out)
    assert len(df) == manifest["samples"]["total"] > 0
    assert (df["tok_rgb"].map(len) == 16).all()  # 64 px at 16 px per token: a 4 x 4 grid
    # The actor pool's tokens are exactly what the tokenizer gives for the row's frame.
    row = df.iloc[0]
    label = read_label(penn_source, row.video_id)
    from motionlab.datasets.penn_action import frame_paths, read_frame
    from motionlab.pipelines.geometry import crop_frame

    frame = crop_frame(read_frame(frame_paths(penn_source, row.video_id)[row.frame - 1], min_side=64),
                       label.width, label.height, 64)
    expected = CosmosTokenizer(cosmos).encode(frame[None]).reshape(-1)
    assert np.array_equal(np.asarray(row.tok_rgb), expected)
    # BLIP captions (random tiny weights: words from its vocabulary) were tokenised into `captions`.
    assert df["caption"].map(len).gt(0).all()
    text = TextTokenizer.load(out / "text_tokenizer.json")
    lengths = text.lengths(list(df["caption"]))
    assert (df["captions_truncated"] == (lengths > 32)).all()
    assert manifest["truncated"] == {"captions": int((lengths > 32).sum())}
    for r in df.itertuples():
        decoded, caption = text.decode(list(r.captions)), " ".join(r.caption.split())
        assert decoded == caption if not r.captions_truncated else caption.startswith(decoded)


def test_frames_rendered_from_real_labels(ray_local, workspace: Workspace, fsq_steps: int, tmp_path: Path) -> None:
    labels = shared_dataset("penn_action", "labels")
    source = tmp_path / "real"
    synth_penn_action(source, videos=3, labels=labels)
    cfg = load_config("m4", preset="tiny")
    out = tmp_path / "m4"
    manifest = prepare_penn_action(source, cfg, out, workspace, PipelineSettings(fsq_steps=fsq_steps))
    assert manifest["quarantined"] == 0
    assert manifest["samples"]["total"] > 0
    df = read_all(out)
    real_sizes = {(read_label(source, v).height, read_label(source, v).width) for v in list_video_ids(source)}
    assert all(h >= 200 and w >= 200 for h, w in real_sizes)  # real frame sizes, not the test's small ones
    assert set(df["action"]) <= {read_label(source, v).action for v in list_video_ids(source)}
