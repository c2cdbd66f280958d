"""Test-split evaluation of a trained 4M model, and the artifacts that make a run readable.

Metrics: per-modality cross-entropy and token accuracy under fixed 4M masks (the training objective on
held-out videos); for each "next" modality, a single-pass argmax prediction from every current modality,
scored against the "copy the current frame / pose" baseline: token accuracy (`next_acc_*`), MPJPE (pixels
on the crop canvas) and PCK@0.05 for poses, SSIM of decoded frames for images. A model that cannot beat
copying has learned no motion.

The forecast gives the model every current token (103 in M4-tiny). That stays inside what training
taught: the configs that forecast (`forecast_share > 0`) must admit the whole current frame in
`input_tokens_range` (the schema checks it), and their forecasting samples are exactly this task. A
config without forecasting samples (the full M1-M4 values of the run reports) is evaluated the same way,
on more inputs than it may have trained with.

Artifacts: loss curves, skeleton and frame GIFs of MaskGIT roll-outs, the model.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.tracking import MlflowClient

from motionlab import modalities as registry
from motionlab.config import ExperimentConfig
from motionlab.generation.limits import token_limits
from motionlab.masking import MaskingSpec, mask_batch, whole_modality_batch
from motionlab.modalities import Kind
from motionlab.models.fourm import FourM, FourMConfig
from motionlab.tokenizers.pose import PoseQuantizer
from motionlab.training.checkpoint import load_model_state, read_state
from motionlab.training.data import PreparedData, token_arrays, valid_lengths
from motionlab.training.loop import EVAL_SEED_OFFSET, to_tensors
from motionlab.training.metrics import frame_ssim, pose_errors

EVAL_BATCH = 64
MAX_DECODED_FRAMES = 64  # frames decoded through the image tokenizer for SSIM: enough for a stable mean


@dataclass(frozen=True)
class NextPair:
    """A predicted modality and the current modality it continues (same kind), e.g. coords_next <- coords."""

    target: str
    current: str
    kind: Kind


def next_pairs(cfg: ExperimentConfig) -> list[NextPair]:
    """Pairs found through the registry (kind and temporal), never by name."""
    mods = [registry.get(n) for n in cfg.modalities]
    pairs = []
    for m in mods:
        if m.temporal != "next":
            continue
        current = [c for c in mods if c.kind is m.kind and c.temporal == "current"]
        if current:
            pairs.append(NextPair(m.name, current[0].name, m.kind))
    return pairs


def load_model(checkpoint: Path) -> FourM:
    state = read_state(checkpoint)
    model = FourM(FourMConfig.from_dict(state.model_config))
    model.load_state_dict(load_model_state(checkpoint))
    return model.eval()


def _tokens(frame: pd.DataFrame, names: list[str]) -> dict[str, np.ndarray]:
    return token_arrays({n: frame[n].to_numpy() for n in names}, names)


@torch.no_grad()
def masked_losses(model: FourM, cfg: ExperimentConfig, test: pd.DataFrame, eos: int | None) -> dict[str, float]:
    """Per-modality CE and token accuracy on the test split, fixed masks, weighted by target counts."""
    spec = MaskingSpec.from_config(cfg)
    rng = np.random.default_rng(cfg.data.seed + 2 * EVAL_SEED_OFFSET)
    sums: dict[str, np.ndarray] = {}
    for start in range(0, len(test), EVAL_BATCH):
        tokens = _tokens(test.iloc[start : start + EVAL_BATCH], list(cfg.modalities))
        t = to_tensors(mask_batch(tokens, spec, rng, valid_lengths(tokens, eos)).as_dict(), torch.device("cpu"))
        _, losses, accs = model.compute_loss(t)
        for name in losses:
            count = float(((t["dec_mod"] == cfg.modality_index(name)) & ~t["dec_pad"]).sum())
            sums.setdefault(name, np.zeros(3))
            sums[name] += (float(losses[name]) * count, float(accs[name]) * count, count)
    out = {}
    for name, (loss, acc, count) in sums.items():
        out[f"test/loss_{name}"] = loss / count
        out[f"test/acc_{name}"] = acc / count
    return out


@torch.no_grad()
def predict_next(model: FourM, cfg: ExperimentConfig, tokens: dict[str, np.ndarray], target: str,
                 eos: int | None) -> np.ndarray:
    """Argmax of `target` (B, L) given every non-next modality in full; ids kept inside the tokenizer's range."""
    spec = MaskingSpec.from_config(cfg)
    inputs = [n for n in cfg.modalities if registry.get(n).temporal != "next"]
    batch = whole_modality_batch(tokens, spec, inputs, [target], valid_lengths(tokens, eos))
    t = to_tensors(batch.as_dict(), torch.device("cpu"))
    logits = model.modality_logits(model(t), cfg.modality_index(target), t["dec_pos"])  # (B, N_tgt, V)
    limits = torch.from_numpy(token_limits(cfg, target))  # (L,)
    positions = t["dec_pos"].clamp(max=len(limits) - 1)  # (B, N_tgt)
    allowed = torch.arange(logits.shape[-1]) < limits[positions].unsqueeze(-1)  # (B, N_tgt, V)
    pred = logits.masked_fill(~allowed, float("-inf")).argmax(-1)  # (B, N_tgt)
    out = np.zeros((pred.shape[0], cfg.lengths()[target]), dtype=np.int64)
    keep = ~t["dec_pad"].numpy()
    for b in range(out.shape[0]):
        out[b, t["dec_pos"][b].numpy()[keep[b]]] = pred[b].numpy()[keep[b]]
    return out


def _copy_baseline(current: np.ndarray, length: int) -> np.ndarray:
    """The current row repeated over the next modality's frames: (B, L_cur) -> (B, L_next)."""
    reps = length // current.shape[1]
    return np.tile(current, (1, reps))


def image_tokenizer(data: PreparedData):
    from motionlab.tokenizers.image import load_image_tokenizer

    info = data.manifest["tokenizers"]["image"]
    return load_image_tokenizer(info["kind"], Path(info["path"]))


def _decode_frames(tokenizer: Any, rows: np.ndarray, cfg: ExperimentConfig) -> np.ndarray:
    """(B, F*h*w) image tokens -> (B*F, H, W, 3) uint8 frames."""
    side = cfg.data.image_size // cfg.data.image_downsample
    return tokenizer.decode(rows.reshape(-1, side, side))


def next_frame_metrics(model: FourM, cfg: ExperimentConfig, data: PreparedData, test: pd.DataFrame,
                       eos: int | None) -> dict[str, float]:
    """MPJPE/PCK and frame SSIM of predicted next modalities against the copy-the-current baseline."""
    out: dict[str, float] = {}
    pairs = next_pairs(cfg)
    if not pairs or test.empty:
        return out
    tokens = _tokens(test, list(cfg.modalities))
    quantizer = PoseQuantizer(cfg.data.pose_bins, cfg.data.image_size)
    tokenizer = None
    for pair in pairs:
        true = tokens[pair.target]
        pred = np.concatenate([predict_next(model, cfg, {k: v[s : s + EVAL_BATCH] for k, v in tokens.items()},
                                            pair.target, eos) for s in range(0, len(true), EVAL_BATCH)])
        copy = _copy_baseline(tokens[pair.current], true.shape[1])
        out[f"test/next_acc_{pair.target}"] = float((pred == true).mean())
        out[f"test/next_acc_{pair.target}_copy"] = float((copy == true).mean())
        if pair.kind is Kind.POSE:
            model_err, copy_err = pose_errors(pred, true, quantizer), pose_errors(copy, true, quantizer)
            out.update({f"test/mpjpe_px_{pair.target}": model_err["mpjpe_px"],
                        f"test/pck_{pair.target}": model_err["pck"],
                        f"test/mpjpe_px_{pair.target}_copy": copy_err["mpjpe_px"],
                        f"test/pck_{pair.target}_copy": copy_err["pck"]})
        elif pair.kind is Kind.IMAGE:
            tokenizer = tokenizer or image_tokenizer(data)
            n = min(len(true), MAX_DECODED_FRAMES)
            truth = _decode_frames(tokenizer, true[:n], cfg)
            out[f"test/ssim_{pair.target}"] = frame_ssim(_decode_frames(tokenizer, pred[:n], cfg), truth)
            out[f"test/ssim_{pair.target}_copy"] = frame_ssim(_decode_frames(tokenizer, copy[:n], cfg), truth)
    return out


def evaluate_checkpoint(cfg: ExperimentConfig, data: PreparedData, checkpoint: Path) -> dict[str, float]:
    """Every test metric of one checkpoint (see the module docstring)."""
    return evaluate_model(load_model(checkpoint), cfg, data)


def evaluate_model(model: FourM, cfg: ExperimentConfig, data: PreparedData) -> dict[str, float]:
    """Every test metric of a loaded model."""
    test = data.read_pandas("test")
    eos = data.text_eos()
    return {**masked_losses(model, cfg, test, eos), **next_frame_metrics(model, cfg, data, test, eos)}


def loss_curve_artifacts(client: MlflowClient, run_id: str, folder: Path) -> list[Path]:
    """Train and eval loss curves from the run's own metric history (so a resumed run draws whole)."""
    from motionlab.tracking.plots import loss_curves_png

    keys = [k for k in client.get_run(run_id).data.metrics if k.startswith(("train/loss", "eval/loss"))]
    histories = {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in sorted(keys)}
    paths = []
    for prefix in ("train", "eval"):
        series = {k: sorted(v) for k, v in histories.items() if k.startswith(prefix)}
        if series:
            paths.append(loss_curves_png(series, folder / f"{prefix}_loss.png", title=f"{prefix} loss per modality"))
    return paths


def finish_run(cfg: ExperimentConfig, data: PreparedData, checkpoint: Path, uri: str, run_id: str,
               samples: int = 8) -> dict[str, float]:
    """Evaluate the final checkpoint and log metrics, plots, GIFs and the model to the run."""
    import mlflow

    from motionlab.generation.samples import write_sample_gifs

    client = MlflowClient(uri)
    state = read_state(checkpoint)
    model = load_model(checkpoint)  # once: metrics, GIFs and the logged model share it
    metrics = evaluate_model(model, cfg, data)
    finite = {k: v for k, v in metrics.items() if np.isfinite(v)}
    from motionlab.tracking.runs import RunLogger, using_tracking_uri

    RunLogger(uri, run_id).metrics(finite, state.step)
    print("test " + " | ".join(f"{k.removeprefix('test/')} {v:.4f}" for k, v in sorted(finite.items())))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for path in loss_curve_artifacts(client, run_id, folder):
            client.log_artifact(run_id, str(path), "plots")
        for path in write_sample_gifs(model, cfg, data, folder / "gifs", samples=samples):
            client.log_artifact(run_id, str(path), "gifs")
    with using_tracking_uri(uri), mlflow.start_run(run_id=run_id):
        # pickle: the pt2 default would trace forward() over a dict of tensors it needs an example for
        mlflow.pytorch.log_model(model, name="model", serialization_format="pickle",
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "motionlab"],
                                 step=state.step)
    return finite
