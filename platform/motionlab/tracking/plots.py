"""Figures logged as run artifacts; matplotlib's Agg canvas, so plotting works on headless workers."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

FIGSIZE = (7.0, 4.5)  # inches
DPI = 100


def loss_curves_png(
    histories: dict[str, list[tuple[int, float]]], path: Path | str, title: str = "", xlabel: str = "step"
) -> Path:
    """One line per series of (step, value) points, written as a PNG.

    The y axis is logarithmic when every value is positive, because losses fall over orders of
    magnitude and a linear axis flattens everything after the first few hundred steps. Non-finite
    values (a diverged step) are left out rather than breaking the whole figure.
    """
    # A bare Figure, not pyplot: no global state, safe in threads and in Ray workers.
    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    finite: dict[str, tuple[list[float], list[float]]] = {}
    for name, points in histories.items():
        kept = [(float(s), float(v)) for s, v in points if math.isfinite(float(v))]
        finite[name] = ([s for s, _ in kept], [v for _, v in kept])
    values = [v for _, ys in finite.values() for v in ys]
    for name, (xs, ys) in finite.items():
        ax.plot(xs, ys, label=name, marker="." if len(xs) < 20 else None)
    if values and min(values) > 0:
        ax.set_yscale("log")
    if not values:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("value")
    if title:
        ax.set_title(title)
    if finite:
        ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
