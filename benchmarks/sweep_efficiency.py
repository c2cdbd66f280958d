"""Optuna TPE with ASHA against random search with the same trial budget, on the smoke problem.

Both sweeps tune M4's Dirichlet alphas and learning rate on the same prepared data (the workspace's M4
tokens, generated and prepared first when absent), in one run, one after the other, with the same seed.
Printed: the best eval loss each found, wall time of each, their ratios; the last line reads
`tpe_best=<x> random_best=<y> time_ratio=<z>` (time_ratio = TPE+ASHA time / random time).

    .venv/bin/python benchmarks/sweep_efficiency.py --trials 8
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from motionlab.cli import prepared_data
from motionlab.config import load_config
from motionlab.raycluster import init_ray
from motionlab.tuning.sweep import SweepSettings, run_sweep
from motionlab.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=os.environ.get("MOTIONLAB_WORKSPACE", "workspace"))
    parser.add_argument("--trials", type=int, default=8, help="trial budget of each sweep")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the m4 smoke config")
    args = parser.parse_args()

    workspace = Workspace.resolve(args.workspace).ensure()
    cfg = load_config("m4", preset="smoke", overrides=args.overrides)
    init_ray(include_dashboard=True)
    ns = argparse.Namespace(data=None)
    data = prepared_data(ns, workspace, cfg)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for label, search, scheduler in (("TPE + ASHA", "tpe", "asha"), ("random, no early stopping", "random", "fifo")):
        # no base-config trial: every trial is the search strategy's own pick
        settings = SweepSettings(name=f"bench-{search}-{stamp}", num_samples=args.trials, seed=args.seed,
                                 search=search, scheduler=scheduler, start_points=())
        t0 = time.perf_counter()
        outcome = run_sweep(cfg, data, workspace, settings)
        rows.append((label, outcome.best_loss, time.perf_counter() - t0, outcome.errored))
    print()
    print(f"smoke problem: M4 smoke preset, {cfg.total_tokens}M tokens per trial, {args.trials} trials per sweep, "
          f"data {Path(data.root)}; machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'sweep':<28}{'best eval/loss':>16}{'wall s':>10}{'failed':>8}")
    for label, best, seconds, errored in rows:
        print(f"{label:<28}{best:>16.4f}{seconds:>10.1f}{errored:>8}")
    (_, tpe_best, tpe_s, _), (_, random_best, random_s, _) = rows
    print(f"tpe_best={tpe_best:.4f} random_best={random_best:.4f} time_ratio={tpe_s / random_s:.2f}")


if __name__ == "__main__":
    main()
