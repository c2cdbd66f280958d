"""Captioners: readable, deterministic label templates offline; BLIP from a local checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from motionlab.tokenizers.captioners import (
    ACTION_PHRASES,
    BlipCaptioner,
    TemplateCaptioner,
    action_phrase,
    build_captioner,
)
from tiny_models import write_tiny_blip

PENN_ACTIONS = [
    "baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk", "golf_swing", "jump_rope",
    "jumping_jacks", "pullup", "pushup", "situp", "squat", "strum_guitar", "tennis_forehand", "tennis_serve",
]  # fmt: skip


def test_every_penn_action_reads_naturally() -> None:
    assert sorted(ACTION_PHRASES) == sorted(PENN_ACTIONS)
    for action in PENN_ACTIONS:
        phrase = action_phrase(action)
        assert "_" not in phrase and phrase == phrase.lower() and len(phrase.split()) >= 1
    assert action_phrase("strum_guitar") == "strumming a guitar"
    assert action_phrase("pullup") == "doing pull-ups"
    assert action_phrase("jumping_jacks") == "performing jumping jacks"
    assert action_phrase("Kick_Scooter") == "performing kick scooter"  # unknown actions still read as one


def test_template_captions_are_sentences_chosen_by_key() -> None:
    cap = TemplateCaptioner()
    out = cap(["jumping_jacks"] * 40, ["front"] * 40, [f"0001:{i}" for i in range(40)])
    assert len(set(out)) >= 3  # several phrasings across samples
    assert all("performing jumping jacks" in s and "front" in s for s in out)
    assert "a person performing jumping jacks, filmed from the front" in out
    # deterministic: same key, same sentence, in any batch and any process (content hash, not hash())
    again = cap(["jumping_jacks"] * 3, ["front"] * 3, ["0001:7", "0001:0", "0001:7"])
    assert again == [out[7], out[0], out[7]]
    back = cap(["strum_guitar"], ["back"], ["k"])[0]
    assert "strumming a guitar" in back and "behind" in back
    assert cap(["pullup"], ["left"], ["k"])[0].count("left") == 1
    assert cap(["squat"], ["side"], ["k"]) == ["a person doing squats, filmed from the side"]
    unknown = cap(["kick_scooter"], [""], ["k"])[0]
    assert "person performing kick scooter" in unknown
    with pytest.raises(ValueError, match="2 actions, 1 viewpoints"):
        cap(["a", "b"], ["front"], ["k", "l"])


def test_build_captioner_kinds_and_errors(tmp_path: Path) -> None:
    assert isinstance(build_captioner("template"), TemplateCaptioner)
    with pytest.raises(ValueError, match="captioner_path"):
        build_captioner("blip")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        build_captioner("blip", tmp_path)
    with pytest.raises(ValueError, match="template, blip"):
        build_captioner("gpt")


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_blip(tmp_path_factory.mktemp("blip"))


def test_blip_captions_each_frame_offline_and_deterministically(blip_dir: Path) -> None:
    assert (blip_dir / "config.json").is_file() and (blip_dir / "model.safetensors").is_file()
    cap = build_captioner("blip", blip_dir, device="cpu")
    assert isinstance(cap, BlipCaptioner) and cap.device.type == "cpu"
    cap.max_new_tokens, cap.batch_size = 6, 2  # two generate batches for three frames
    frames = np.random.default_rng(0).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    args = (["squat"] * 3, ["front"] * 3, ["a", "b", "c"])
    out = cap(*args, frames=frames)
    assert len(out) == 3 and all(isinstance(s, str) for s in out) and any(out)
    assert cap(*args, frames=frames) == out  # greedy decoding
    # batching does not change a frame's caption
    assert cap(args[0][:1], args[1][:1], args[2][:1], frames=frames[:1]) == out[:1]
    # untrained weights give arbitrary words, but only words from the tiny vocabulary, at most 6 of them
    vocab = set((blip_dir / "vocab.txt").read_text().split())
    assert all(len(s.split()) <= 6 and set(s.split()) <= vocab for s in out)
    with pytest.raises(ValueError, match="needs the frames"):
        cap(*args)
    with pytest.raises(ValueError, match="uint8"):
        cap(*args, frames=frames.astype(np.float32))
