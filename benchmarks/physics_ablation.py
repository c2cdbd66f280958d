"""Does the physics term make motions more plausible? PhysicsSSM at its swept lambda against lambda = 0 and MotionSSM.

One run, one data set, one budget:
1. a lambda_physics sweep (`motionlab sweep physics`: Optuna TPE over lambda and lr, ranked by
   eval/mse + w x eval/physics_total on the val split) picks the best lambda and lr; `--lambda` skips it;
2. three trainings from scratch with that lr, the same epochs and generated KIT-ML look-alike, for each of
   `--seeds` seeds (`data.seed`: weight init, batch order, caption draws): PhysicsSSM at the best lambda,
   PhysicsSSM at lambda = 0 (the branch and gate without the loss), MotionSSM;
3. each is evaluated on the test split as every motion run is (`training.motion_evaluation`): feature MSE and the
   physics metrics of the generated motions, with the real test motions as the floor.
Every training is an MLflow run in experiment `motion`, tagged `ablation=<name>`.

Printed: a row per arm and seed, the mean over seeds, the relative changes of the means against both
baselines, and as the last line (against lambda = 0)
`skating_reduction=<x> penetration_reduction=<y> mse_increase=<z>`: reductions are 1 - best/baseline (0.3 is
30% lower), the increase is best/baseline - 1 (0.05 is 5% higher). The target: both reductions >= 0.30 at an
increase <= 0.05.

    .venv/bin/python benchmarks/physics_ablation.py --seeds 3        # tiny preset, 256 motions, 6-trial sweep
    .venv/bin/python benchmarks/physics_ablation.py --lambda 0.5     # no sweep
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass

import numpy as np

from motionlab.config import MotionConfig, load_motion_config
from motionlab.raycluster import init_ray
from motionlab.training.motion_data import MotionData, default_motion_root
from motionlab.training.motion_evaluation import MotionEvalSettings
from motionlab.training.motion_runner import MotionTrainSettings, fit_motion
from motionlab.tuning.space import PhysicsSpace
from motionlab.tuning.sweep import SweepSettings, run_sweep
from motionlab.tuning.tasks import DEFAULT_OBJECTIVE_WEIGHT, MotionTask, Objective
from motionlab.workspace import Workspace

COLUMNS = ("test/mse", "test/skating_ratio", "test/penetration_m", "test/floating_m", "test/jerk_mps3")
REAL = ("test/real_skating_ratio", "test/real_penetration_m", "test/real_floating_m", "test/real_jerk_mps3")
WIDTHS = (12, 10, 11, 12, 11)


@dataclass(frozen=True)
class Arm:
    label: str
    config: str  # motion config file stem
    lambda_physics: float


def relative_change(value: float, baseline: float) -> float:
    """value / baseline - 1; NaN when the baseline is 0 (no change can be expressed against nothing)."""
    return value / baseline - 1.0 if baseline > 0 else math.nan


def ablation_line(best: dict[str, float], baseline: dict[str, float]) -> str:
    """The benchmark's last line: reductions of skating and penetration, increase of feature MSE."""
    skating = -relative_change(best["test/skating_ratio"], baseline["test/skating_ratio"])
    penetration = -relative_change(best["test/penetration_m"], baseline["test/penetration_m"])
    mse = relative_change(best["test/mse"], baseline["test/mse"])
    return f"skating_reduction={skating:.3f} penetration_reduction={penetration:.3f} mse_increase={mse:.3f}"


def arm_config(arm: Arm, preset: str, lr: float, seed: int, overrides: list[str]) -> MotionConfig:
    return load_motion_config(arm.config, preset=preset, overrides=[
        *overrides, f"lr={lr:.6g}", f"lambda_physics={arm.lambda_physics:.6g}", f"data.seed={seed}"])


def mean_metrics(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each metric averaged over the runs (seeds) of one arm."""
    return {k: float(np.mean([r[k] for r in runs])) for k in (*COLUMNS, *REAL)}


def table_row(label: str, m: dict[str, float], seconds: float | None = None) -> str:
    cells = "".join(f"{m[k]:>{w}.4f}" for k, w in zip(COLUMNS, WIDTHS, strict=True))
    return f"{label:<34}{cells}" + (f"{seconds:>9.0f}" if seconds is not None else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=os.environ.get("MOTIONLAB_WORKSPACE", "workspace"))
    parser.add_argument("--preset", default="tiny", help="preset of the physics and motion configs")
    parser.add_argument("--motions", type=int, default=256, help="generated KIT-ML look-alike motions")
    parser.add_argument("--trials", type=int, default=6, help="trials of the lambda sweep")
    parser.add_argument("--objective-weight", type=float, default=DEFAULT_OBJECTIVE_WEIGHT, metavar="W",
                        help="the sweep ranks trials by eval/mse + W x eval/physics_total")
    parser.add_argument("--lambda", dest="lam", type=float, default=None,
                        help="use this lambda_physics (and the config's lr) instead of sweeping")
    parser.add_argument("--seed", type=int, default=0, help="the sweep's sampler seed")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per arm (data.seed = config's + k)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of both configs (e.g. epochs=60)")
    args = parser.parse_args()

    workspace = Workspace.resolve(args.workspace).ensure()
    overrides = [f"data.generated_motions={args.motions}", *args.overrides]
    base = load_motion_config("physics", preset=args.preset, overrides=overrides)
    init_ray(include_dashboard=True)  # Train's placement-group cleanup asks the dashboard's State API
    data = MotionData.open(default_motion_root(workspace, base), base)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"ablation-{stamp}"
    t0 = time.perf_counter()
    if args.lam is None:
        settings = SweepSettings(name=f"{name}-sweep", num_samples=args.trials, seed=args.seed, space=PhysicsSpace())
        outcome = run_sweep(base, data, workspace, settings, MotionTask(Objective(weight=args.objective_weight)))
        lam, lr = outcome.best_params["lambda_physics"], outcome.best_params["lr"]
        chosen = f"sweep {outcome.name} ({args.trials} trials, {outcome.metric})"
    else:
        lam, lr, chosen = args.lam, base.lr, "--lambda"
    sweep_s = time.perf_counter() - t0

    arms = (Arm(f"PhysicsSSM lambda={lam:.3g}", "physics", lam), Arm("PhysicsSSM lambda=0", "physics", 0.0),
            Arm("MotionSSM", "motion", 0.0))
    runs: dict[str, list[dict[str, float]]] = {arm.label: [] for arm in arms}
    rows: list[tuple[str, dict[str, float], float]] = []
    for k in range(args.seeds):
        seed = base.data.seed + k
        for i, arm in enumerate(arms):
            cfg = arm_config(arm, args.preset, lr, seed, overrides)
            t1 = time.perf_counter()
            result = fit_motion(cfg, data, workspace, MotionTrainSettings(
                run_name=f"{name}-{i}-{cfg.model_kind}-lambda{arm.lambda_physics:.3g}-seed{seed}", log_model=False,
                evaluation=MotionEvalSettings(pybullet_motions=0, gifs=0), extra_tags={"ablation": name}))
            runs[arm.label].append(result.metrics)
            rows.append((f"{arm.label} seed {seed}", result.metrics, time.perf_counter() - t1))

    means = {label: mean_metrics(r) for label, r in runs.items()}
    real = means[arms[0].label]
    print()
    print(f"physics ablation {name}: {args.preset} preset, {base.epochs} epochs, lr {lr:.4g} for every arm, "
          f"{args.seeds} seed(s), {len(data.train)} train / {len(data.val)} val / "
          f"{int(runs[arms[0].label][0]['test/num_samples'])} test motions from {data.root}; lambda from {chosen} "
          f"in {sweep_s:.0f} s; machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print(f"{'':<34}{'feature MSE':>12}{'skating':>10}{'penetr. m':>11}{'floating m':>12}{'jerk m/s3':>11}"
          f"{'train s':>9}")
    print(f"{'real (test set)':<34}{'':>12}" + "".join(f"{real[k]:>{w}.4f}" for k, w in zip(REAL, WIDTHS[1:],
                                                                                             strict=True)))
    for label, m, seconds in rows:
        print(table_row(label, m, seconds))
    for arm in arms:
        print(table_row(f"{arm.label} mean", means[arm.label]))
    best, zero, motion = (means[arm.label] for arm in arms)
    print(f"against MotionSSM: {ablation_line(best, motion)}")
    print(f"against lambda=0:  {ablation_line(best, zero)}")
    print(ablation_line(best, zero))


if __name__ == "__main__":
    main()
