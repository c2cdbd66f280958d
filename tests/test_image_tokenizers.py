"""Image tokenizers: a trained FSQ autoencoder and the Cosmos TorchScript loader behind one interface."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from motionlab.tokenizers.cosmos import CosmosTokenizer
from motionlab.tokenizers.fsq import FSQAutoencoder, FSQTokenizer, idle_cpu_threads, train_fsq_tokenizer
from motionlab.tokenizers.image import ImageTokenizer, load_image_tokenizer
from tiny_models import write_tiny_cosmos

SIZE = 64
DOWNSAMPLE = 8
TRAIN_STEPS = 200  # the default is 300; 200 keeps this file quick and still shows the gap


def textured_frames(n: int, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: two-colour stripes at a random angle and period, plus a disc and a box."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        angle, period = rng.uniform(0, np.pi), rng.uniform(10, 24)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period)
        img = c0 * (1 - t[..., None]) + c1 * t[..., None]
        cx, cy, r = rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(5, 14)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
        bx, by, bw, bh = rng.integers(0, size - 12, 2).tolist() + rng.integers(6, 20, 2).tolist()
        img[by : by + bh, bx : bx + bw] = rng.uniform(0, 255, 3)
        out[i] = np.clip(img, 0, 255).round()
    return out


def mean_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        np.mean(
            [structural_similarity(x, y, channel_axis=-1, data_range=255) for x, y in zip(a, b, strict=True)]
        )
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, float], list[str], float]:
    out = tmp_path_factory.mktemp("fsq")
    lines: list[str] = []
    t0 = time.perf_counter()
    metrics = train_fsq_tokenizer(
        textured_frames(288), out, downsample=DOWNSAMPLE, steps=TRAIN_STEPS, seed=0, log=lines.append
    )
    return out, metrics, lines, time.perf_counter() - t0


def test_fsq_beats_the_mean_colour_baseline_on_held_out_frames(trained) -> None:
    out, metrics, lines, seconds = trained
    # wall time depends on what else runs on the machine, so it is reported, not asserted
    assert set(metrics) == {"recon_ssim", "recon_mse", "seconds"} and 0 < metrics["seconds"] <= seconds
    # frames the tokenizer never saw, from another seed of the same generator
    frames = textured_frames(48, seed=1)
    baseline = np.broadcast_to(frames.mean(axis=(1, 2), keepdims=True).round().astype(np.uint8), frames.shape)
    tok = FSQTokenizer.load(out)
    recon = tok.decode(tok.encode(frames))
    base_ssim, recon_ssim = mean_ssim(frames, baseline), mean_ssim(frames, recon)
    assert recon_ssim > base_ssim + 0.2, (recon_ssim, base_ssim)
    assert metrics["recon_ssim"] > base_ssim + 0.2
    base_mse = np.mean((frames / 255.0 - baseline / 255.0) ** 2)
    assert metrics["recon_mse"] < 0.5 * base_mse
    # the recorded metrics travel with the weights
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["recon_ssim"] == pytest.approx(metrics["recon_ssim"])
    assert (cfg["levels"], cfg["downsample"], cfg["channels"], cfg["image_size"]) == (
        [8, 8, 8, 5, 5, 5],
        DOWNSAMPLE,
        64,
        SIZE,
    )
    # a progress line every ~10% of the steps, with a rate and an ETA, then the summary
    progress = [line for line in lines if "steps/s" in line]
    assert len(progress) == 10 and "eta" in progress[0] and f"{TRAIN_STEPS}/{TRAIN_STEPS}" in progress[-1]
    assert lines[0].startswith(
        f"fsq tokenizer: 259 train / 29 held-out frames of 64x64, {TRAIN_STEPS} steps on cpu"
    )
    assert "SSIM" in lines[-1] and len(lines) == 12


def test_fsq_save_load_round_trip_and_code_space(trained, tmp_path: Path) -> None:
    out, *_ = trained
    tok = load_image_tokenizer("fsq", out)
    assert isinstance(tok, ImageTokenizer) and tok.name == "fsq"
    assert tok.codebook_size == math.prod((8, 8, 8, 5, 5, 5)) == 64000 and tok.downsample == DOWNSAMPLE
    frames = textured_frames(64, seed=2)
    idx = tok.encode(frames)
    assert idx.shape == (64, SIZE // DOWNSAMPLE, SIZE // DOWNSAMPLE) and idx.dtype == np.int32
    assert idx.min() >= 0 and idx.max() < 64000
    assert len(np.unique(idx)) > 200  # the codes are used, not collapsed to a few
    again = FSQTokenizer.load(tok.save(tmp_path / "copy"))
    assert np.array_equal(again.encode(frames), idx)
    assert np.array_equal(again.decode(idx), tok.decode(idx))
    # non-square frames tokenise to a non-square grid
    wide = np.concatenate([frames[:2], frames[2:4]], axis=2)
    assert tok.encode(wide).shape == (2, SIZE // DOWNSAMPLE, 2 * SIZE // DOWNSAMPLE)


def test_idle_cpu_threads_is_within_bounds() -> None:
    assert 1 <= idle_cpu_threads() <= torch.get_num_threads()


def test_fsq_autoencoder_shapes_for_each_downsample() -> None:
    for d in (2, 4, 16):
        model = FSQAutoencoder(downsample=d, channels=32).eval()
        x = torch.rand(2, 3, 32, 64) * 2 - 1
        with torch.no_grad():
            recon, idx = model(x)
            assert recon.shape == x.shape and idx.shape == (2, 32 // d, 64 // d) and idx.dtype == torch.long
            assert recon.abs().max() <= 1
            assert torch.equal(model.encode_indices(x), idx)
            assert torch.allclose(model.decode_indices(idx), recon, atol=1e-5)
    with pytest.raises(ValueError, match="power of 2"):
        FSQAutoencoder(downsample=12)


def test_fsq_rejects_bad_input(trained, tmp_path: Path) -> None:
    tok = FSQTokenizer.load(trained[0])
    with pytest.raises(ValueError, match="uint8"):
        tok.encode(np.zeros((1, 64, 64, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="multiple"):
        tok.encode(np.zeros((1, 60, 64, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="64000"):
        tok.decode(np.full((1, 2, 2), 64000))
    with pytest.raises(FileNotFoundError, match=r"model\.pt.*train_fsq_tokenizer"):
        load_image_tokenizer("fsq", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="square"):
        train_fsq_tokenizer(np.zeros((4, 64, 128, 3), np.uint8), tmp_path / "x", downsample=8, steps=1)


@pytest.fixture(scope="module")
def cosmos_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_cosmos(tmp_path_factory.mktemp("cosmos"))


def test_cosmos_shapes_dtype_range_and_flat_colour_round_trip(cosmos_dir: Path) -> None:
    tok = load_image_tokenizer("cosmos", cosmos_dir)
    assert isinstance(tok, CosmosTokenizer) and isinstance(tok, ImageTokenizer)
    assert (tok.name, tok.downsample, tok.codebook_size) == ("cosmos", 16, 64000)
    assert tok.dtype == torch.float32  # fp32 on CPU
    frames = np.empty((3, 64, 96, 3), dtype=np.uint8)
    for frame, colour in zip(frames, [(200, 30, 90), (0, 255, 128), (17, 17, 240)], strict=True):
        frame[:] = colour
    idx = tok.encode(frames)
    assert idx.shape == (3, 4, 6) and idx.dtype == np.int32
    assert idx.min() >= 0 and idx.max() < 64000
    assert len(np.unique(idx[0])) == 1 and len(np.unique(idx[:, 0, 0])) == 3  # flat frames: one code each
    recon = tok.decode(idx)
    assert recon.shape == frames.shape and recon.dtype == np.uint8
    # 40 levels per channel on [-1, 1]: at most half a step (~3.3 grey levels) off
    assert np.abs(recon.astype(int) - frames.astype(int)).max() <= 4
    # textured frames still give in-range codes of the right grid
    tex = textured_frames(2, size=64)
    assert tok.encode(tex).shape == (2, 4, 4)


def test_cosmos_smaller_code_space_and_errors(tmp_path: Path) -> None:
    tok = CosmosTokenizer(write_tiny_cosmos(tmp_path / "small", codebook_size=1000), codebook_size=1000)
    idx = tok.encode(textured_frames(4, size=32))
    assert idx.shape == (4, 2, 2) and idx.max() < 1000
    with pytest.raises(ValueError, match="1000"):
        tok.decode(np.full((1, 2, 2), 1000))
    with pytest.raises(ValueError, match="multiple of the tokenizer's downsample 16"):
        tok.encode(np.zeros((1, 40, 32, 3), dtype=np.uint8))
    # a tokenizer with another patch size is caught, not silently mis-gridded
    with pytest.raises(ValueError, match="DI16x16"):
        CosmosTokenizer(write_tiny_cosmos(tmp_path / "d8", downsample=8)).encode(
            np.zeros((1, 32, 32, 3), np.uint8)
        )
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "encoder.jit").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"half lacks decoder\.jit.*'fsq'"):
        load_image_tokenizer("cosmos", tmp_path / "half")
    with pytest.raises(ValueError, match="fsq, cosmos"):
        load_image_tokenizer("vqgan", tmp_path)
