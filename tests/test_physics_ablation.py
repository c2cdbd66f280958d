"""The physics ablation's summary line (benchmarks/physics_ablation.py): reductions and the MSE increase are read
the way the issue states its target (0.30 = 30% lower, 0.05 = 5% higher), and a zero baseline says so (nan)."""

from __future__ import annotations

from conftest import load_benchmark


def load_script():
    return load_benchmark("physics_ablation")


def test_the_last_line_reads_reductions_and_the_mse_increase() -> None:
    ablation = load_script()
    best = {"test/skating_ratio": 0.07, "test/penetration_m": 0.002, "test/mse": 1.05}
    baseline = {"test/skating_ratio": 0.10, "test/penetration_m": 0.008, "test/mse": 1.00}
    assert ablation.ablation_line(best, baseline) == \
        "skating_reduction=0.300 penetration_reduction=0.750 mse_increase=0.050"
    worse = {"test/skating_ratio": 0.12, "test/penetration_m": 0.0, "test/mse": 0.9}
    assert ablation.ablation_line(worse, baseline) == \
        "skating_reduction=-0.200 penetration_reduction=1.000 mse_increase=-0.100"
    # nothing penetrates in the baseline: no reduction can be stated
    assert "penetration_reduction=nan" in ablation.ablation_line(best, {**baseline, "test/penetration_m": 0.0})
