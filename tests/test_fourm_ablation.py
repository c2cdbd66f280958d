"""The 4M ablation (benchmarks/fourm_ablation.py): every arm is a valid config that differs from the default only in
its embeddings, and the last line reads MPJPE as a ratio to copying and SSIM as a gap to it."""

from __future__ import annotations

from conftest import load_benchmark
from motionlab.config import load_config


def load_script():
    return load_benchmark("fourm_ablation")


def test_arms_change_only_the_embeddings() -> None:
    ablation = load_script()
    default = load_config("m4", preset="tiny").model
    models = [load_config("m4", preset="tiny", overrides=list(arm.overrides)).model for arm in ablation.ARMS]
    keys = ("posemb", "share_embeddings", "pose_embedding")
    assert [tuple(getattr(m, k) for k in keys) for m in models] == [
        ("learned", "modality", "table"), ("sincos", "tokenizer", "table"), ("sincos", "tokenizer", "value")]
    for m in models:  # nothing else moves
        assert m.model_dump(exclude=set(keys)) == default.model_dump(exclude=set(keys))


def test_the_last_line_reads_ratio_gap_and_accuracy() -> None:
    ablation = load_script()
    m = {"test/mpjpe_px_coords_next": 2.5, "test/mpjpe_px_coords_next_copy": 2.0, "test/pck_coords_next": 0.8,
         "test/ssim_tok_rgb_next": 0.87, "test/ssim_tok_rgb_next_copy": 0.91, "test/next_acc_tok_rgb_next": 0.6}
    assert ablation.last_line(m) == "mpjpe_vs_copy=1.250 pck=0.800 ssim_gap=-0.040 next_token_acc=0.600"
