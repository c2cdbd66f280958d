"""Which embeddings let M4-tiny forecast? Old and new embeddings and the pose-coordinate variants, beside copying.

One data set (the workspace's M4-tiny tokens of the generated Penn Action look-alike, prepared first when
absent), one budget (the tiny preset's 489 steps), three arms, `--seeds` training seeds each (`seed`: weights,
batch order, masks; the data and its splits stay the same):

- `old embeddings`: one learned position row per modality position, one token table and untied head per
  modality, plain pose rows (`model.posemb=learned model.share_embeddings=modality model.pose_embedding=table`);
- `new, plain pose rows`: positions by kind, tables and tied heads by tokenizer, plain pose rows
  (`model.pose_embedding=table`);
- `new (default)`: the same with value-aware pose coordinates (`model.pose_embedding=value`).
Everything else is the tiny preset's (width-scaled initialisation, the aligned cross-attention bias, the token
loss, forecasting samples). Each arm is trained and evaluated as `motionlab train multimodal` does (Ray Train,
the test split), and is an MLflow run in experiment `multimodal` tagged `ablation=<name>`.

Printed per arm and seed, then as means: next-frame token accuracy given every current token
(`test/next_acc_tok_rgb_next`, and the 4M-masked `test/acc_tok_rgb_next`), `test/mpjpe_px_coords_next`,
`test/pck_coords_next`, `test/ssim_tok_rgb_next`, each beside its copy-the-current-frame baseline; the last
line, for the new default's means:
`mpjpe_vs_copy=<model/copy> pck=<x> ssim_gap=<model-copy> next_token_acc=<x>`.

    .venv/bin/python benchmarks/fourm_ablation.py --seeds 3
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from motionlab.config import load_config
from motionlab.raycluster import init_ray
from motionlab.training.runner import TrainSettings, fit
from motionlab.workspace import Workspace

PAIRS = (  # (model metric, copy-baseline metric or None)
    ("test/next_acc_tok_rgb_next", "test/next_acc_tok_rgb_next_copy"),
    ("test/acc_tok_rgb_next", None),
    ("test/mpjpe_px_coords_next", "test/mpjpe_px_coords_next_copy"),
    ("test/pck_coords_next", "test/pck_coords_next_copy"),
    ("test/ssim_tok_rgb_next", "test/ssim_tok_rgb_next_copy"),
)
HEADERS = ("next acc", "masked acc", "MPJPE px", "PCK", "SSIM")


@dataclass(frozen=True)
class Arm:
    label: str
    overrides: tuple[str, ...]


ARMS = (
    Arm("old embeddings", ("model.posemb=learned", "model.share_embeddings=modality", "model.pose_embedding=table")),
    Arm("new, plain pose rows", ("model.pose_embedding=table",)),
    Arm("new (default)", ()),
)


def cell(m: dict[str, float], key: str, copy: str | None) -> str:
    return f"{m[key]:.3f}" + (f" / {m[copy]:.3f}" if copy else "")


def row(label: str, m: dict[str, float], seconds: float | None = None) -> str:
    cells = "".join(f"{cell(m, k, c):>17}" for k, c in PAIRS)
    return f"{label:<34}{cells}" + (f"{seconds:>8.0f}" if seconds is not None else "")


def last_line(m: dict[str, float]) -> str:
    return (f"mpjpe_vs_copy={m['test/mpjpe_px_coords_next'] / m['test/mpjpe_px_coords_next_copy']:.3f} "
            f"pck={m['test/pck_coords_next']:.3f} "
            f"ssim_gap={m['test/ssim_tok_rgb_next'] - m['test/ssim_tok_rgb_next_copy']:.3f} "
            f"next_token_acc={m['test/next_acc_tok_rgb_next']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=os.environ.get("MOTIONLAB_WORKSPACE", "workspace"))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds per arm (seed = data.seed + k)")
    parser.add_argument("--arms", type=int, nargs="*", default=None, help="indices into the arms (default all)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every arm")
    args = parser.parse_args()

    from motionlab.cli import prepared_data

    workspace = Workspace.resolve(args.workspace).ensure()
    base = load_config("m4", preset=args.preset, overrides=args.overrides)
    init_ray(include_dashboard=True)
    data = prepared_data(argparse.Namespace(data=None), workspace, base)
    name = f"fourm-ablation-{time.strftime('%Y%m%d-%H%M%S')}"
    arms = [ARMS[i] for i in args.arms] if args.arms is not None else list(ARMS)
    runs: dict[str, list[dict[str, float]]] = {arm.label: [] for arm in arms}
    rows = []
    for k in range(args.seeds):
        seed = base.data.seed + k
        for i, arm in enumerate(arms):
            cfg = load_config("m4", preset=args.preset, overrides=[*args.overrides, *arm.overrides, f"seed={seed}"])
            t0 = time.perf_counter()
            outcome = fit(cfg, data, workspace, TrainSettings(run_name=f"{name}-{i}-seed{seed}", samples=0,
                                                              extra_tags={"ablation": name, "arm": arm.label}))
            runs[arm.label].append(outcome.metrics)
            rows.append((f"{arm.label} seed {seed}", outcome.metrics, time.perf_counter() - t0))
    means = {label: {k: float(np.mean([r[k] for r in rs])) for k in rs[0]} for label, rs in runs.items()}
    print()
    print(f"4M ablation {name}: M4 {args.preset}, {base.total_tokens:g}M tokens a run, {args.seeds} seed(s), data "
          f"{Path(data.root)}; machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("each cell: model / copy-the-current-frame baseline")
    print(f"{'':<34}" + "".join(f"{h:>17}" for h in HEADERS) + f"{'train s':>8}")
    for label, m, seconds in rows:
        print(row(label, m, seconds))
    for label, m in means.items():
        print(row(f"{label} mean", m))
    default = means.get("new (default)") or next(iter(means.values()))
    print(last_line(default))


if __name__ == "__main__":
    main()
