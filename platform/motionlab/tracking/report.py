"""One self-contained HTML page comparing the runs of an experiment: variants, modalities, sweeps, GIFs.

The MLflow UI answers questions about single runs; this page answers "which variant and which mixture of
modalities won", and it must still open when mailed or copied off a cluster. So every figure is a PNG drawn
with matplotlib and every GIF is embedded as a base64 data URI: no server, no JavaScript library, no network.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from motionlab.tracking.plots import DPI, loss_curves_png
from motionlab.tracking.runs import EXPERIMENT_MULTIMODAL, KIND_TAG, PARENT_TAG, RUN_NAME_TAG, SWEEP_TAG

EVAL_LOSS = "eval/loss"
TRAIN_LOSS = "train/loss"
TOKENS_SEEN = "tokens_seen"
BEST_EVAL_LOSS = "best/eval/loss"  # logged on a sweep's parent run when the sweep ends
STOPPED_TAG = "motionlab.stopped_early"  # on a trial the scheduler stopped: "at step N of M"
FAILURE_TAG = "motionlab.failure"  # on a failed trial or sweep: the error's last line
MAX_GIFS_PER_VARIANT = 4  # a glance at the samples, not an archive: the page stays small enough to mail
MAX_GIF_BYTES = 4 * 1024 * 1024  # a larger GIF would make the page too heavy; the run keeps it
PARALLEL_FIGSIZE = (10.0, 4.8)  # inches: room for a dozen axes
_PROGRESS_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


class ReportError(ValueError):
    """The report cannot be written; the message names what is missing and the fix."""


@dataclass(frozen=True)
class _Trial:
    run: Run
    axes: dict[str, float]  # axis name -> real value (alphas, lr)
    loss: float | None  # final eval/loss; None for a trial that never evaluated (failed)


def _name(run: Run) -> str:
    return run.info.run_name or run.data.tags.get(RUN_NAME_TAG) or run.info.run_id[:8]


def _kind(run: Run) -> str:
    """Runs logged before the kind tag existed are trainings unless MLflow nests them under a parent."""
    tags = run.data.tags
    return tags.get(KIND_TAG) or ("trial" if PARENT_TAG in tags else "train")


def _final(run: Run, key: str = EVAL_LOSS) -> float | None:
    value = run.data.metrics.get(key)
    return float(value) if value is not None and math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def _json_list(run: Run, key: str) -> list | None:
    raw = run.data.params.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) else None


def _float_param(run: Run, key: str) -> float | None:
    try:
        return float(run.data.params[key])
    except (KeyError, ValueError):
        return None


def _alphas(run: Run) -> dict[str, float]:
    """`in:<modality>` / `tgt:<modality>` -> Dirichlet alpha, read from the flattened config's JSON lists."""
    modalities = _json_list(run, "modalities") or []
    out: dict[str, float] = {}
    for prefix, key in (("in", "input_alphas"), ("tgt", "target_alphas")):
        for modality, alpha in zip(modalities, _json_list(run, key) or [], strict=False):
            try:
                out[f"{prefix}:{modality}"] = float(alpha)
            except (TypeError, ValueError):
                continue
    return out


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data: bytes, mime: str, alt: str, cls: str = "figure", attrs: str = "") -> str:
    return f'<img class="{cls}"{attrs} src="{_data_uri(data, mime)}" alt="{html.escape(alt)}">'


def _all_runs(client: MlflowClient, experiment_id: str) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, order_by=["attributes.start_time DESC"],
                                  page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _latest_training(runs: list[Run]) -> dict[str, Run]:
    """Per variant, the newest finished training (the newest of any status when none has finished)."""
    chosen: dict[str, Run] = {}
    for run in sorted(runs, key=lambda r: r.info.start_time or 0, reverse=True):  # newest first
        variant = run.data.tags.get("variant", "?")
        current = chosen.get(variant)
        if current is None or (current.info.status != "FINISHED" and run.info.status == "FINISHED"):
            chosen[variant] = run
    return dict(sorted(chosen.items()))


def _history(client: MlflowClient, run: Run, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))


def _tokens_per_step(client: MlflowClient, run: Run) -> float | None:
    """The run's constant tokens per optimizer step, read off its `tokens_seen` history; None if it varies."""
    ratios = [t / s for s, t in _history(client, run, TOKENS_SEEN) if s > 0]
    if not ratios or max(ratios) - min(ratios) > 1e-6 * max(ratios):
        return None
    return ratios[-1]


def _curves_img(client: MlflowClient, chosen: dict[str, Run], key: str, alt: str, tmp: Path) -> str | None:
    """`key` per variant on one axis. The x axis is tokens seen when every run logged it, because variants
    with different batch sizes or sequence lengths reach the same step having seen different amounts of data.
    Evaluations need not fall on the steps that logged `tokens_seen`; the schedule's tokens per step is constant."""
    series = {v: pts for v, run in chosen.items() if (pts := _history(client, run, key))}
    if not series:
        return None
    per_step = {v: _tokens_per_step(client, chosen[v]) for v in series}
    by_tokens = all(r is not None for r in per_step.values())
    xy = {v: [(s * (per_step[v] or 1.0) if by_tokens else s, y) for s, y in pts] for v, pts in series.items()}
    xlabel = TOKENS_SEEN if by_tokens else "step"
    path = loss_curves_png(xy, tmp / f"{key.replace('/', '_')}.png", title=f"{key} per variant", xlabel=xlabel)
    return _img(path.read_bytes(), "image/png", alt, attrs=f' data-x="{xlabel}"')


def _parallel_png(trials: list[_Trial], title: str) -> bytes:
    """Parallel coordinates drawn with matplotlib: each axis normalised to [0, 1] with ticks of real values,
    lr on a log scale, the last axis the final eval loss; lines coloured by that loss, the best one thickest,
    failed trials (no eval loss) dashed grey up to the last axis they have a value on."""
    names = list(dict.fromkeys(a for t in trials for a in t.axes))
    axes = [*names, EVAL_LOSS]
    columns: dict[str, list[float | None]] = {a: [t.axes.get(a) for t in trials] for a in names}
    columns[EVAL_LOSS] = [t.loss for t in trials]
    # lr and the alphas are searched log-uniformly: a log axis spreads the trials the way they were drawn
    logs = {a: a != EVAL_LOSS and all(v is None or v > 0 for v in columns[a]) for a in axes}

    def scaled(axis: str, value: float) -> float:
        return math.log10(value) if logs[axis] else value

    ranges: dict[str, tuple[float, float]] = {}
    for axis in axes:
        present = [scaled(axis, v) for v in columns[axis] if v is not None]
        ranges[axis] = (min(present), max(present)) if present else (0.0, 1.0)

    def norm(axis: str, value: float | None) -> float:
        if value is None:
            return math.nan  # matplotlib breaks the line there
        low, high = ranges[axis]
        return 0.5 if high == low else (scaled(axis, value) - low) / (high - low)

    fig = Figure(figsize=PARALLEL_FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = list(range(len(axes)))
    losses = [t.loss for t in trials if t.loss is not None]
    cmap = colormaps["viridis"]
    low_loss, high_loss = (min(losses), max(losses)) if losses else (0.0, 1.0)
    colour = Normalize(low_loss, high_loss if high_loss > low_loss else low_loss + 1e-9)
    best = min(losses) if losses else None
    legend: dict[str, object] = {}  # label -> line: one entry for the best trial, one for all failed ones
    for trial in sorted(trials, key=lambda t: -(t.loss if t.loss is not None else math.inf)):  # best drawn last
        ys = [norm(a, trial.axes.get(a)) for a in names] + [norm(EVAL_LOSS, trial.loss)]
        if trial.loss is None:
            (line,) = ax.plot(xs, ys, linestyle="--", color="0.6", linewidth=1.2)
            legend.setdefault("failed (no eval/loss)", line)
        else:
            is_best = trial.loss == best
            (line,) = ax.plot(xs, ys, color=cmap(colour(trial.loss)), linewidth=3.0 if is_best else 1.5,
                              marker="o", markersize=3)
            if is_best:
                legend.setdefault(f"best: {_name(trial.run)} ({trial.loss:.4g})", line)
    for x, axis in enumerate(axes):
        ax.axvline(x, color="0.2", linewidth=0.8)
        low, high = ranges[axis]
        for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
            real = low + frac * (high - low)
            real = 10**real if logs[axis] else real
            ax.text(x + 0.03, frac if high > low else 0.5, f"{real:.3g}", fontsize=7, va="center", color="0.25")
            if high == low:
                break  # a constant axis gets one tick: its value
    ax.set_xticks(xs, [f"{a} (log)" if logs[a] else a for a in axes], rotation=25, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    if legend:  # below the axis names, clear of the tick labels
        ax.legend(list(legend.values()), list(legend), loc="upper right", bbox_to_anchor=(1.0, -0.2), ncol=2,
                  fontsize=8, frameon=False)
    if losses:
        fig.colorbar(ScalarMappable(norm=colour, cmap=cmap), ax=ax, label=EVAL_LOSS, pad=0.02)
    ax.set_title(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _artifact_bytes(client: MlflowClient, run_id: str, path: str, tmp: Path) -> bytes | None:
    try:
        local = client.download_artifacts(run_id, path, str(tmp))
    except Exception:  # absent artifact or unreachable artifact store: the page goes on without it
        return None
    return Path(local).read_bytes()


@contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No progress bar per artifact: a report fetches a dozen small files and prints one line, its path."""
    before = os.environ.get(_PROGRESS_ENV)
    os.environ[_PROGRESS_ENV] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_PROGRESS_ENV, None)
        else:
            os.environ[_PROGRESS_ENV] = before


def _table(header: list[str], rows: list[list[str]], attrs: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(f"<tr{(' ' + attrs[i]) if attrs else ''}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>"
                   for i, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _test_metrics(run: Run) -> str:
    items = sorted((k.removeprefix("test/"), v) for k, v in run.data.metrics.items() if k.startswith("test/"))
    return "<br>".join(f"{html.escape(k)} {_fmt(v)}" for k, v in items)


def _status(run: Run) -> str:
    """Status plus why: a trial the scheduler stopped early is a result, a failed one says what failed."""
    notes = [run.data.tags[t] for t in (STOPPED_TAG, FAILURE_TAG) if run.data.tags.get(t)]
    note = f" ({'; '.join(n.splitlines()[0][:200] for n in notes)})" if notes else ""
    return html.escape(run.info.status + (" stopped early" if STOPPED_TAG in run.data.tags else "") + note)


def _loss_cell(run: Run) -> str:
    """A sweep's parent has no eval loss of its own; it carries its best trial's."""
    if _kind(run) == "sweep" and _final(run, BEST_EVAL_LOSS) is not None:
        return f"best {_fmt(_final(run, BEST_EVAL_LOSS))}"
    return _fmt(_final(run))


def _runs_section(runs: list[Run]) -> str:
    order = {"train": 0, "sweep": 1, "trial": 2}
    ranked = sorted(runs, key=lambda r: (order.get(_kind(r), 3), r.data.tags.get("variant", ""),
                                         r.data.tags.get(SWEEP_TAG, ""), -(r.info.start_time or 0)))
    rows = [[html.escape(r.data.tags.get("variant", "")), html.escape(_kind(r)), html.escape(_name(r)),
             html.escape(r.data.tags.get(SWEEP_TAG, "")), _status(r), _loss_cell(r), _test_metrics(r)]
            for r in ranked]
    attrs = [f'class="run" data-run-id="{r.info.run_id}" data-kind="{html.escape(_kind(r))}"' for r in ranked]
    table = _table(["variant", "kind", "run", "sweep", "status", "final eval/loss", "test metrics"], rows, attrs)
    return f'<section id="runs"><h2>Runs</h2><p>{len(runs)} runs.</p>{table}</section>'


def _curves_section(client: MlflowClient, chosen: dict[str, Run], tmp: Path) -> str:
    if not chosen:
        return '<section id="loss-curves"><h2>Loss curves</h2><p>No training runs.</p></section>'
    used = ", ".join(f"{html.escape(v)}: {html.escape(_name(r))} ({html.escape(r.info.status)})"
                     for v, r in chosen.items())
    parts = [f"<p>Latest finished training run of each variant: {used}.</p>",
             '<div id="loss-per-variant" class="figures">']
    for key in (EVAL_LOSS, TRAIN_LOSS):
        img = _curves_img(client, chosen, key, f"{key} per variant", tmp)
        if img is not None:
            parts.append(img)
    parts.append('</div><h3>Per modality</h3><div id="loss-per-modality" class="figures">')
    keys = sorted({k for r in chosen.values() for k in r.data.metrics if k.startswith(EVAL_LOSS + "_")})
    for key in keys:
        modality = key.removeprefix(EVAL_LOSS + "_")
        img = _curves_img(client, chosen, key, f"{key} per variant (modality {modality})", tmp)
        if img is not None:
            parts.append(img)
    if not keys:
        parts.append("<p>No per-modality eval losses logged.</p>")
    parts.append("</div>")
    return '<section id="loss-curves"><h2>Loss curves</h2>' + "".join(parts) + "</section>"


def _sweep_trials(parent: Run, runs: list[Run]) -> list[_Trial]:
    out = []
    for run in runs:
        if run.data.tags.get(PARENT_TAG) != parent.info.run_id:
            continue
        axes = _alphas(run)
        lr = _float_param(run, "lr")
        if lr is not None:
            axes["lr"] = lr
        out.append(_Trial(run, axes, _final(run)))
    return out


def _sweep_label(parent: Run) -> str:
    return parent.data.tags.get(SWEEP_TAG) or _name(parent)


def _sweeps_section(sweeps: list[tuple[Run, list[_Trial]]]) -> str:
    parts = ['<section id="sweeps"><h2>Sweeps</h2>']
    if not sweeps:
        parts.append("<p>No sweeps.</p>")
    for parent, trials in sweeps:
        label = _sweep_label(parent)
        failed = [t for t in trials if t.loss is None]
        parts.append(f'<div class="sweep" data-sweep="{html.escape(label)}" data-trials="{len(trials)}" '
                     f'data-failed="{len(failed)}"><h3>{html.escape(label)}</h3>'
                     f"<p>{len(trials)} trials: {len(trials) - len(failed)} with an eval loss, "
                     f"{len(failed)} failed.</p>")
        if trials:
            png = _parallel_png(trials, f"sweep {label}: alphas and lr against eval loss")
            parts.append(_img(png, "image/png", f"parallel coordinates of sweep {label}: {len(trials)} trials"))
        if failed:
            items = "".join(f"<li>{html.escape(_name(t.run))} ({_status(t.run)})</li>" for t in failed)
            parts.append(f'<p>Failed trials (no eval/loss):</p><ul class="failed">{items}</ul>')
        parts.append("</div>")
    return "".join(parts) + "</section>"


def _config_cells(run: Run) -> list[str]:
    alphas = _alphas(run)
    return [html.escape(", ".join(f"{k}={v:g}" for k, v in alphas.items())),
            html.escape(run.data.params.get("lr", ""))]


def _best_section(client: MlflowClient, training: list[Run], sweeps: list[tuple[Run, list[_Trial]]],
                  tmp: Path) -> str:
    parts = ['<section id="best-configs"><h2>Best configs</h2><h3>Per sweep</h3>']
    if not sweeps:
        parts.append("<p>No sweeps.</p>")
    for parent, trials in sweeps:
        label = _sweep_label(parent)
        scored = [t for t in trials if t.loss is not None]
        if not scored:
            parts.append(f"<p>{html.escape(label)}: no trial reported an eval loss.</p>")
            continue
        best = min(scored, key=lambda t: t.loss or 0.0)
        row = [html.escape(label), html.escape(_name(best.run)), *_config_cells(best.run), _fmt(best.loss)]
        parts.append(_table(["sweep", "best trial", "alphas", "lr", "eval/loss"], [row],
                            [f'class="best-trial" data-lr="{html.escape(best.run.data.params.get("lr", ""))}"']))
        text = _artifact_bytes(client, parent.info.run_id, "best_config.yaml", tmp / parent.info.run_id)
        if text is not None:
            parts.append(f'<p>best_config.yaml of {html.escape(label)}:</p>'
                         f'<pre class="best-config">{html.escape(text.decode("utf-8", "replace"))}</pre>')
    parts.append("<h3>Per variant</h3>")
    by_variant: dict[str, Run] = {}
    for run in training:
        loss = _final(run)
        variant = run.data.tags.get("variant", "?")
        held = by_variant.get(variant)
        if loss is not None and (held is None or loss < (_final(held) or math.inf)):
            by_variant[variant] = run
    if by_variant:
        rows = [[html.escape(v), html.escape(_name(r)), *_config_cells(r), _fmt(_final(r)), _test_metrics(r)]
                for v, r in sorted(by_variant.items())]
        parts.append(_table(["variant", "best run", "alphas", "lr", "eval/loss", "test metrics"], rows))
    else:
        parts.append("<p>No training run reported an eval loss.</p>")
    return "".join(parts) + "</section>"


def _gif_section(client: MlflowClient, training: list[Run], tmp: Path) -> str:
    """A few GIFs per variant, from the newest training run of that variant that logged any."""
    parts = ['<section id="gifs"><h2>Generated samples</h2>']
    seen: set[str] = set()
    count = 0
    for run in sorted(training, key=lambda r: r.info.start_time or 0, reverse=True):
        variant = run.data.tags.get("variant", "?")
        if variant in seen:
            continue
        try:
            files = [f for f in client.list_artifacts(run.info.run_id, "gifs") if f.path.endswith(".gif")]
        except Exception:  # unreachable artifact store: say nothing rather than fail the page
            continue
        images = []
        for info in sorted(files, key=lambda f: f.path)[:MAX_GIFS_PER_VARIANT]:
            if info.file_size is not None and info.file_size > MAX_GIF_BYTES:
                continue
            data = _artifact_bytes(client, run.info.run_id, info.path, tmp / run.info.run_id)
            if data is not None:
                images.append(_img(data, "image/gif", f"{variant} sample {Path(info.path).name} from {_name(run)}",
                                   cls="gif"))
        if images:
            seen.add(variant)
            count += len(images)
            parts.append(f'<div class="variant-gifs" data-variant="{html.escape(variant)}">'
                         f"<h3>{html.escape(variant)} ({html.escape(_name(run))})</h3>{''.join(images)}</div>")
    if not count:
        parts.append("<p>No generated GIFs logged.</p>")
    return "".join(parts) + "</section>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:0.85em;margin:0.5em 0}
td,th{border:1px solid #ccc;padding:0.25em 0.5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}
div.figures{display:flex;flex-wrap:wrap;gap:0.5em}
div.figures img.figure{width:min(100%,640px)}
img.figure{max-width:100%;margin:0.3em}
img.gif{height:160px;margin:0.3em;image-rendering:pixelated;border:1px solid #ddd}
pre{background:#f7f7f7;padding:0.6em;overflow-x:auto}
"""

# Counts the images the browser actually decoded, so a broken embed is visible on the page (and to tests).
_CHECK = """
<script>
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
  var el = document.getElementById("image-check");
  el.textContent = ok + " of " + imgs.length + " images decoded";
  el.setAttribute("data-decoded", ok);
  el.setAttribute("data-total", imgs.length);
});
</script>
"""


def _display_uri(uri: str) -> str:
    """The store's address without any user:password in it: the page gets mailed around."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    return urlunsplit(parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")))


def _page(experiment: str, uri: str, sections: list[str]) -> str:
    title = f"motionlab report: {experiment}"
    stamp = f"{datetime.now():%Y-%m-%d %H:%M}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>Tracking store {html.escape(_display_uri(uri))}, written {stamp}. "
            f'<span id="image-check">images not checked (scripts off)</span></p>'
            + "".join(sections) + _CHECK + "</body></html>")


def write_report(uri: str, out: Path, experiment: str = EXPERIMENT_MULTIMODAL) -> Path:
    """Write the experiment's comparison page to `out` (one HTML file, everything embedded) and return it."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        # Opening a missing store would create an empty one (and run its migrations) only to report nothing.
        raise ReportError(f"no MLflow store at {uri.removeprefix('sqlite:///')}; train or sweep first "
                          "(e.g. `motionlab demo`), or point --workspace / MLFLOW_TRACKING_URI at the store")
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage == "deleted":
        names = sorted(e.name for e in client.search_experiments())
        state = "is deleted" if found is not None else "does not exist"
        raise ReportError(f"MLflow experiment '{experiment}' {state} in {uri} (experiments there: "
                          f"{', '.join(names) or 'none'}); train or sweep first, or pass --experiment NAME")
    runs = _all_runs(client, found.experiment_id)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not runs:
        empty = f"<p>Experiment '{html.escape(experiment)}' has no runs yet.</p>"
        ids = (("runs", "Runs"), ("loss-curves", "Loss curves"), ("sweeps", "Sweeps"),
               ("best-configs", "Best configs"), ("gifs", "Generated samples"))
        sections = [f'<section id="{i}"><h2>{t}</h2>{empty}</section>' for i, t in ids]
        out.write_text(_page(experiment, uri, sections), encoding="utf-8")
        return out
    training = [r for r in runs if _kind(r) == "train"]
    chosen = _latest_training(training)
    parents = [r for r in runs if _kind(r) == "sweep"]
    sweeps = [(p, _sweep_trials(p, runs)) for p in sorted(parents, key=_sweep_label)]
    with tempfile.TemporaryDirectory(prefix="motionlab-report-") as tmp_name, _quiet_downloads():
        tmp = Path(tmp_name)
        sections = [_runs_section(runs), _curves_section(client, chosen, tmp), _sweeps_section(sweeps),
                    _best_section(client, training, sweeps, tmp), _gif_section(client, training, tmp)]
    out.write_text(_page(experiment, uri, sections), encoding="utf-8")
    return out
