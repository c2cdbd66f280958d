"""Optuna TPE with ASHA against random search with the same trial budget, on the smoke problem, over seeds.

Both sweeps tune M4's Dirichlet alphas and learning rate on the same prepared data (the workspace's M4
tokens, generated and prepared first when absent), one after the other, with the same seed; a third,
one-trial sweep trains the base config itself (its own alphas and lr) as the reference a sweep must beat.
`--seeds N` repeats the three with sampler seed k and training seed data.seed + k (weights, batch order,
masks), k = 0 .. N-1.

Printed per seed: the best eval loss of each sweep, the base config's, the spread of eval loss across the
random sweep's trials (every trial runs to the end; min, max, standard deviation) and across TPE's trials
that ASHA let finish, and the wall time of each sweep; then the means over the seeds. The last line reads
`tpe_best=<x> random_best=<y> time_ratio=<z>` (means over the seeds; time_ratio = TPE+ASHA time / random time).

    .venv/bin/python benchmarks/sweep_efficiency.py --trials 8 --seeds 3
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from motionlab.cli import prepared_data
from motionlab.config import load_config
from motionlab.raycluster import init_ray
from motionlab.tuning.sweep import SweepOutcome, SweepSettings, run_sweep
from motionlab.workspace import Workspace


def finished_losses(outcome: SweepOutcome, metric: str) -> list[float]:
    """The metric of the trials that reached the last step of any trial (the ones early stopping let finish)."""
    last = max((r["step"] for r in outcome.trial_reports), default=-1)
    return [r[metric] for r in outcome.trial_reports if r["step"] == last and np.isfinite(r[metric])]


def spread(losses: list[float]) -> str:
    if not losses:
        return "no finished trial"
    return f"{min(losses):.4f} .. {max(losses):.4f} (sd {np.std(losses):.4f}, {len(losses)} trials)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=os.environ.get("MOTIONLAB_WORKSPACE", "workspace"))
    parser.add_argument("--trials", type=int, default=8, help="trial budget of each sweep")
    parser.add_argument("--seeds", type=int, default=3, help="repetitions with sampler seed k and training seed")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the m4 smoke config")
    args = parser.parse_args()

    workspace = Workspace.resolve(args.workspace).ensure()
    base_cfg = load_config("m4", preset="smoke", overrides=args.overrides)
    init_ray(include_dashboard=True)
    data = prepared_data(argparse.Namespace(data=None), workspace, base_cfg)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    per_seed = []
    for k in range(args.seeds):
        cfg = load_config("m4", preset="smoke", overrides=[*args.overrides, f"seed={base_cfg.data.seed + k}"])
        row: dict[str, object] = {"seed": k}
        for label, search, scheduler, trials, starts in (
            ("tpe", "tpe", "asha", args.trials, ()),  # no base-config trial: every trial is the strategy's own
            ("random", "random", "fifo", args.trials, ()),
            ("base", "random", "fifo", 1, None),  # None: the one trial is the base config's own alphas and lr
        ):
            settings = SweepSettings(name=f"bench-{label}-s{k}-{stamp}", num_samples=trials, seed=k, search=search,
                                     scheduler=scheduler, start_points=starts)
            t0 = time.perf_counter()
            outcome = run_sweep(cfg, data, workspace, settings)
            row[label] = outcome
            row[f"{label}_s"] = time.perf_counter() - t0
        per_seed.append(row)

    metric = per_seed[0]["tpe"].metric
    print()
    print(f"smoke problem: M4 smoke preset, {base_cfg.total_tokens}M tokens per trial, {args.trials} trials per sweep, "
          f"{args.seeds} seed(s), data {Path(data.root)}; machine: {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'seed':<6}{'TPE+ASHA best':>15}{'random best':>13}{'base config':>13}{'TPE s':>8}{'random s':>10}"
          "  spread of random's trials | of TPE's finished trials")
    for row in per_seed:
        tpe, rnd, base = row["tpe"], row["random"], row["base"]
        print(f"{row['seed']:<6}{tpe.best_loss:>15.4f}{rnd.best_loss:>13.4f}{base.best_loss:>13.4f}"
              f"{row['tpe_s']:>8.0f}{row['random_s']:>10.0f}  {spread(finished_losses(rnd, metric))} | "
              f"{spread(finished_losses(tpe, metric))}")
    tpe_best = float(np.mean([r["tpe"].best_loss for r in per_seed]))
    random_best = float(np.mean([r["random"].best_loss for r in per_seed]))
    base_loss = float(np.mean([r["base"].best_loss for r in per_seed]))
    ratio = float(np.mean([r["tpe_s"] for r in per_seed])) / float(np.mean([r["random_s"] for r in per_seed]))
    print(f"{'mean':<6}{tpe_best:>15.4f}{random_best:>13.4f}{base_loss:>13.4f}")
    print(f"best trial against the base config: TPE {tpe_best - base_loss:+.4f}, random {random_best - base_loss:+.4f}")
    print(f"tpe_best={tpe_best:.4f} random_best={random_best:.4f} time_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
