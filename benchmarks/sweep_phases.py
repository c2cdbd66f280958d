"""Where a smoke sweep trial's wall time goes: a TorchTrainer per trial (the previous way) against trials trained
in their own Tune process, in one run, on the same data, seed and trial budget.

`--task alphas` sweeps M4's alphas and lr on the smoke preset's prepared tokens (generated and prepared first
when absent); `--task physics` sweeps PhysicsSSM's lambda_physics and lr on the generated KIT-ML-layout motions.
Both arms use the CLI's searcher (TPE, the base config as the first trial) and, by default, FIFO, so every trial
runs its whole schedule and the two arms do the same optimizer steps (`--scheduler asha` for early stopping).

`--ablation` adds the two changes alone: a TorchTrainer per trial in reused trial processes (torch and the project
imported once), and in-process trials each in a new process.

Printed: per phase (`tuning.trial_times.PHASES`) the mean seconds per trial and the share of trial wall time in
each arm, the sweep's wall time, the time between trials, and the share of trial wall time spent in optimizer
steps (their batches included) and evaluation. The last line reads `train_share=<x> sweep_time_ratio=<new/old>`
(train_share of the in-process arm; sweep wall time in-process / with a TorchTrainer per trial).

    .venv/bin/python benchmarks/sweep_phases.py --trials 8
    .venv/bin/python benchmarks/sweep_phases.py --task physics --trials 8
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from motionlab.raycluster import init_ray
from motionlab.tuning.sweep import SweepOutcome, SweepSettings, run_sweep
from motionlab.tuning.trial_times import PHASES, TRAINING_PHASES
from motionlab.workspace import Workspace

# (label, launch, reuse_actors): the previous way first, the new default last
ARMS = (("trainer", "trainer", False), ("in-process", "auto", True))
# --ablation: each change alone
ABLATION = (("trainer", "trainer", False), ("trainer+reuse", "trainer", True), ("process-new", "process", False),
            ("in-process", "auto", True))


@dataclass
class Arm:
    label: str
    outcome: SweepOutcome
    seconds: float  # the sweep's wall time


def totals(trials: tuple[dict[str, float], ...]) -> dict[str, float]:
    """Seconds per phase (and "wall") summed over the trials."""
    out = {key: 0.0 for key in (*PHASES, "wall")}
    for trial in trials:
        for key in out:
            out[key] += trial.get(key, 0.0)
    return out


def share(trials: tuple[dict[str, float], ...]) -> float:
    """Share of all trials' wall time spent in optimizer steps and evaluation."""
    t = totals(trials)
    return sum(t[p] for p in TRAINING_PHASES) / max(t["wall"], 1e-9)


def table(arms: list[Arm]) -> list[str]:
    """The per-phase table: mean seconds per trial and share of trial wall time, one column pair per arm."""
    head = f"{'phase':<16}" + "".join(f"{a.label + ' s':>16}{'%':>7}" for a in arms)
    lines = [head]
    sums = [totals(a.outcome.trial_times) for a in arms]
    counts = [max(len(a.outcome.trial_times), 1) for a in arms]
    for phase in (*PHASES, "wall"):
        cells = "".join(f"{s[phase] / n:>16.2f}{100 * s[phase] / max(s['wall'], 1e-9):>6.1f}%"
                        for s, n in zip(sums, counts, strict=True))
        lines.append(f"{phase:<16}{cells}")
    return lines


def summary(arms: list[Arm]) -> str:
    old, new = arms[0], arms[-1]
    return f"train_share={share(new.outcome.trial_times):.2f} sweep_time_ratio={new.seconds / old.seconds:.2f}"


def sweep_inputs(task: str, workspace: Workspace, overrides: list[str]):
    """(config, data, search space) of the smoke problem; the config implies the sweep task."""
    if task == "alphas":
        from motionlab.cli import prepared_data
        from motionlab.config import load_config
        from motionlab.tuning.space import SearchSpace

        cfg = load_config("m4", preset="smoke", overrides=overrides)
        return cfg, prepared_data(argparse.Namespace(data=None), workspace, cfg), SearchSpace()
    from motionlab.config import load_motion_config
    from motionlab.training.motion_data import MotionData, default_motion_root
    from motionlab.tuning.space import PhysicsSpace

    cfg = load_motion_config("physics", preset="smoke", overrides=overrides)
    return cfg, MotionData.open(default_motion_root(workspace, cfg), cfg), PhysicsSpace()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=os.environ.get("MOTIONLAB_WORKSPACE", "workspace"))
    parser.add_argument("--task", choices=["alphas", "physics"], default="alphas")
    parser.add_argument("--trials", type=int, default=8, help="trial budget of each sweep")
    parser.add_argument("--scheduler", choices=["fifo", "asha"], default="fifo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ablation", action="store_true",
                        help="also a TorchTrainer per trial in reused trial processes, and in-process trials in a "
                             "new process each")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the smoke config")
    args = parser.parse_args()

    workspace = Workspace.resolve(args.workspace).ensure()
    init_ray(include_dashboard=True)
    cfg, data, space = sweep_inputs(args.task, workspace, args.overrides)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    arms = []
    for label, launch, reuse in ABLATION if args.ablation else ARMS:
        settings = SweepSettings(name=f"phases-{args.task}-{label}-{stamp}", num_samples=args.trials, seed=args.seed,
                                 scheduler=args.scheduler, space=space, launch=launch, reuse_actors=reuse)
        t0 = time.perf_counter()
        outcome = run_sweep(cfg, data, workspace, settings)
        arms.append(Arm(label, outcome, time.perf_counter() - t0))

    print()
    print(f"smoke sweep of {args.task} ({cfg.run_label}, smoke preset), {args.trials} trials per arm, TPE + "
          f"{args.scheduler}, data {Path(data.root)}; machine: {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}")
    print("\n".join(table(arms)))
    for arm in arms:
        walls = sum(t["wall"] for t in arm.outcome.trial_times)
        print(f"{arm.label}: sweep {arm.seconds:.0f} s, {len(arm.outcome.trial_times)} trials "
              f"({arm.outcome.errored} failed), between trials {arm.seconds - walls:.0f} s, best {arm.outcome.metric} "
              f"{arm.outcome.best_loss:.4f}, steps and evaluation {100 * share(arm.outcome.trial_times):.0f}% "
              f"of trial wall time")
    print(summary(arms))


if __name__ == "__main__":
    main()
