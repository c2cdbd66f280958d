"""The experiment report and the MLflow UI, checked on a real MLflow store and in a real headless browser.

The store holds what trainings and sweeps log (same tags, params and metric keys), written with MlflowClient,
so the report is tested against the conventions of `motionlab.tracking.runs`, not against a mock.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from PIL import Image

from browser import dump_dom, ensure_chromium
from motionlab.tracking.report import ReportError, write_report
from motionlab.tracking.runs import KIND_TAG, PARENT_TAG, RUN_NAME_TAG, SWEEP_TAG

SECTIONS = ("runs", "loss-curves", "sweeps", "best-configs", "gifs")
M2_MODALITIES = ["tok_rgb", "coords"]
M4_MODALITIES = ["tok_rgb", "coords", "tok_rgb_next", "coords_next"]
STEPS = (10, 20, 30, 40, 50)
SWEEP = "m4-alphas"
# (run name, input alphas, target alphas, lr, eval losses per step or None for a failed trial)
TRIALS = [
    ("trial-0", [1.0, 1.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], "0.001", [3.0, 2.6, 2.41]),
    ("trial-1", [2.0, 0.5, 0.5, 1.0], [0.5, 1.0, 2.0, 0.5], "0.0031", [2.9, 2.2, 1.87]),
    ("trial-2", [0.5, 2.0, 1.0, 0.5], [1.0, 0.5, 0.5, 2.0], "0.0002", [3.1, 2.95]),  # stopped early
    ("trial-3", [1.5, 1.5, 1.5, 1.5], [1.5, 1.5, 1.5, 1.5], "0.01", None),  # failed before its first eval
]
TRIAL_TAGS = {"trial-2": {"motionlab.stopped_early": "at step 20 of 50"},
              "trial-3": {"motionlab.failure": "FloatingPointError: train loss is nan at step 3"}}
BEST_TRIAL = TRIALS[1]
BEST_CONFIG_YAML = "variant: M4\nlr: 0.0031\ninput_alphas: [2.0, 0.5, 0.5, 1.0]\n"


@dataclass
class Store:
    uri: str
    root: Path
    experiment_id: str
    run_names: list[str] = field(default_factory=list)
    final_eval: dict[str, float] = field(default_factory=dict)


def _gif(path: Path, frames: int = 4, size: int = 24) -> Path:
    """A tiny moving-square animation, the shape of what generation logs."""
    images = []
    for i in range(frames):
        img = Image.new("RGB", (size, size), (20, 20, 40))
        img.paste((250, 200, 0), (i * 4, i * 4, i * 4 + 8, i * 4 + 8))
        images.append(img)
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


def _params(modalities: list[str], inputs: list[float], targets: list[float], lr: str, variant: str) -> list[Param]:
    """The flattened config's shape: lists as JSON strings, numbers as strings."""
    flat = {"variant": variant, "modalities": json.dumps(modalities), "input_alphas": json.dumps(inputs),
            "target_alphas": json.dumps(targets), "lr": lr, "batch_size": "16"}
    return [Param(k, v) for k, v in flat.items()]


def _training(client: MlflowClient, exp: str, name: str, variant: str, modalities: list[str], scale: float,
              status: str, tmp: Path, test: bool = False, gif: bool = False) -> tuple[str, float]:
    tags = {"variant": variant, KIND_TAG: "train", RUN_NAME_TAG: name}
    run_id = client.create_run(exp, run_name=name, tags=tags).info.run_id
    client.log_batch(run_id, params=_params(modalities, [1.0] * len(modalities), [1.0] * len(modalities),
                                            "0.002", variant))
    metrics = []
    final = 0.0
    for i, step in enumerate(STEPS):
        per = {m: scale * (4.0 - 0.5 * i) * (1 + 0.1 * j) for j, m in enumerate(modalities)}
        final = sum(per.values()) / len(per)
        # tokens_seen only where the train log fell, not at every evaluation, as the loop logs it
        tokens = {"tokens_seen": step * 1000.0} if step % 20 == 0 else {}
        values = {"train/loss": final + 0.1, "eval/loss": final, "lr": 0.002, **tokens,
                  **{f"train/loss_{m}": v + 0.1 for m, v in per.items()},
                  **{f"eval/loss_{m}": v for m, v in per.items()},
                  **{f"eval/acc_{m}": 0.1 * i for m in per}}
        metrics += [Metric(k, v, 1_700_000_000_000 + step, step) for k, v in values.items()]
    if test:
        metrics += [Metric(f"test/loss_{m}", 1.5, 0, STEPS[-1]) for m in modalities]
    client.log_batch(run_id, metrics=metrics)
    if gif:
        for k in range(2):
            client.log_artifact(run_id, str(_gif(tmp / f"sample_{name}_{k}.gif")), "gifs")
    client.set_terminated(run_id, status=status)
    return run_id, final


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Two M2 trainings (an older finished one, a newer one still running), one M4 training with GIFs and
    test metrics, and an M4 sweep: a parent with best_config.yaml and four trials, one of them failed."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("multimodal", artifact_location=(root / "artifacts").as_uri())
    client.create_experiment("empty", artifact_location=(root / "empty").as_uri())
    found = Store(uri, root, exp)
    for name, variant, modalities, scale, status, extra in (
        ("M2-old", "M2", M2_MODALITIES, 1.0, "FINISHED", {}),
        ("M2-running", "M2", M2_MODALITIES, 1.2, "RUNNING", {}),
        ("M4-tiny", "M4", M4_MODALITIES, 0.8, "FINISHED", {"test": True, "gif": True}),
    ):
        _, final = _training(client, exp, name, variant, modalities, scale, status, root, **extra)
        found.run_names.append(name)
        found.final_eval[name] = final
        time.sleep(0.01)  # distinct start times: "latest" is well defined
    parent = client.create_run(exp, run_name=f"sweep-{SWEEP}",
                               tags={"variant": "M4", KIND_TAG: "sweep", SWEEP_TAG: SWEEP}).info.run_id
    client.log_text(parent, BEST_CONFIG_YAML, "best_config.yaml")
    found.run_names.append(f"sweep-{SWEEP}")
    for name, inputs, targets, lr, losses in TRIALS:
        tags = {"variant": "M4", KIND_TAG: "trial", SWEEP_TAG: SWEEP, PARENT_TAG: parent}
        run_id = client.create_run(exp, run_name=name, tags=tags).info.run_id
        client.log_batch(run_id, params=_params(M4_MODALITIES, inputs, targets, lr, "M4"),
                         metrics=[Metric("eval/loss", v, 0, STEPS[i]) for i, v in enumerate(losses or [])],
                         tags=[RunTag(k, v) for k, v in {RUN_NAME_TAG: name, **TRIAL_TAGS.get(name, {})}.items()])
        client.set_terminated(run_id, status="FAILED" if losses is None else "FINISHED")
        found.run_names.append(name)
    client.log_metric(parent, "best/eval/loss", BEST_TRIAL[4][-1])
    client.set_terminated(parent)
    return found


class _Page(HTMLParser):
    """Element ids, images (alt, src) and elements' data attributes of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.images: list[dict[str, str]] = []
        self.elements: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.elements.append((tag, values))
        if "id" in values:
            self.ids.append(values["id"])
        if tag == "img":
            self.images.append(values)

    def with_class(self, cls: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if cls in a.get("class", "").split()]


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _decode(src: str) -> Image.Image:
    head, data = src.split(",", 1)
    assert head.startswith("data:image/") and head.endswith(";base64"), head[:40]
    img = Image.open(io.BytesIO(base64.b64decode(data)))
    img.load()
    return img


@pytest.fixture(scope="module")
def report(store: Store, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(store.uri, tmp_path_factory.mktemp("report") / "multimodal.html")


@pytest.mark.timeout(120)
def test_report_sections_runs_and_curves(store: Store, report: Path) -> None:
    text = report.read_text()
    page = _parse(text)
    for section in SECTIONS:
        assert section in page.ids, section
    rows = page.with_class("run")
    assert len(rows) == len(store.run_names) == 8
    assert sorted(r["data-kind"] for r in rows) == ["sweep", "train", "train", "train"] + ["trial"] * 4
    for name in store.run_names:
        assert f">{name}<" in text, name
    assert f"{store.final_eval['M4-tiny']:.4g}" in text  # the final eval/loss, as logged at the last step
    assert "loss_tok_rgb 1.5" in text  # test metrics of the M4 run
    # Curves come from the newest *finished* training of each variant, not the newer one still running.
    chosen = re.search(r"Latest finished training run of each variant: (.*?)\.</p>", text).group(1)
    assert "M2: M2-old (FINISHED)" in chosen and "M4: M4-tiny (FINISHED)" in chosen and "M2-running" not in chosen
    alts = [img["alt"] for img in page.images]
    assert "eval/loss per variant" in alts and "train/loss per variant" in alts
    per_modality = [a for a in alts if a.startswith("eval/loss_")]
    assert len(per_modality) == len(M4_MODALITIES)  # the union of both variants' modalities
    # tokens_seen was logged at every other evaluation only; the constant tokens per step still gives the x axis
    assert {img["data-x"] for img in page.images if "per variant" in img["alt"]} == {"tokens_seen"}
    for img in page.images:
        decoded = _decode(img["src"])
        assert decoded.width > 20 and decoded.height > 20, img["alt"]


@pytest.mark.timeout(120)
def test_report_sweep_best_configs_and_gifs(report: Path) -> None:
    text = report.read_text()
    page = _parse(text)
    (sweep,) = page.with_class("sweep")
    assert (sweep["data-sweep"], sweep["data-trials"], sweep["data-failed"]) == (SWEEP, "4", "1")
    assert "4 trials: 3 with an eval loss, 1 failed." in text
    assert '<ul class="failed"><li>trial-3 (FAILED (FloatingPointError: train loss is nan at step 3))</li></ul>' in text
    assert "<td>FINISHED stopped early (at step 20 of 50)</td>" in text  # a scheduler's stop is not a failure
    assert "<td>best 1.87</td>" in text  # the sweep's row carries its best trial's loss
    (plot,) = [img for img in page.images if img["alt"].startswith("parallel coordinates")]
    assert plot["alt"] == f"parallel coordinates of sweep {SWEEP}: 4 trials"
    assert _decode(plot["src"]).width >= 800
    (best,) = page.with_class("best-trial")
    assert best["data-lr"] == BEST_TRIAL[3]
    assert re.search(rf"<td>{SWEEP}</td><td>{BEST_TRIAL[0]}</td><td>in:tok_rgb=2, in:coords=0.5, .*?"
                     rf"</td><td>0.0031</td><td>1.87</td>", text)
    assert "lr: 0.0031" in text and "input_alphas: [2.0, 0.5, 0.5, 1.0]" in text  # the parent's best_config.yaml
    gifs = [img for img in page.images if img.get("class") == "gif"]
    assert [g["alt"].split(" sample ")[0] for g in gifs] == ["M4", "M4"]
    for gif in gifs:
        decoded = _decode(gif["src"])
        assert decoded.format == "GIF" and decoded.n_frames == 4


@pytest.mark.timeout(60)
def test_report_empty_and_missing_experiment(store: Store, tmp_path: Path) -> None:
    page = write_report(store.uri, tmp_path / "empty.html", experiment="empty").read_text()
    assert "Experiment 'empty' has no runs yet." in page
    assert all(f'id="{s}"' in page for s in SECTIONS)
    with pytest.raises(ReportError, match=r"'nope' does not exist .*empty, multimodal.*--experiment NAME"):
        write_report(store.uri, tmp_path / "nope.html", experiment="nope")
    absent = tmp_path / "none" / "mlflow.db"
    with pytest.raises(ReportError, match=r"no MLflow store at .*none/mlflow.db; train or sweep first"):
        write_report(f"sqlite:///{absent}", tmp_path / "none.html")
    assert not absent.parent.exists()  # looking did not create an empty store


@pytest.mark.timeout(120)
def test_cli_report(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    from motionlab.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    assert main(["--workspace", str(tmp_path / "ws"), "report"]) == 0
    out = tmp_path / "ws" / "reports" / "multimodal.html"
    assert capsys.readouterr().out.strip().endswith(str(out))
    assert 'id="sweeps"' in out.read_text()
    custom = tmp_path / "elsewhere" / "e.html"
    assert main(["--workspace", str(tmp_path / "ws"), "report", "--experiment", "empty", "--out", str(custom)]) == 0
    assert "has no runs yet" in custom.read_text()
    assert main(["--workspace", str(tmp_path / "ws"), "report", "--experiment", "nope"]) == 2
    assert "'nope' does not exist" in capsys.readouterr().err


# --- in a real browser ------------------------------------------------------------------------------------


def _non_blank(png: Path) -> float:
    """Share of pixels that differ from the most common one: ~0 for an empty or failed page."""
    img = Image.open(png).convert("L")
    histogram = img.histogram()
    return 1 - max(histogram) / sum(histogram)


@pytest.fixture(scope="module")
def chromium() -> Path:
    return ensure_chromium()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_report_in_headless_chromium(chromium: Path, report: Path, tmp_path: Path) -> None:
    dom = dump_dom(report.as_uri(), budget_ms=3000, png=tmp_path / "report.png")
    page = _parse(dom)
    for section in SECTIONS:
        assert section in page.ids, section
    (check,) = [a for _, a in page.elements if a.get("id") == "image-check"]
    total = len(page.images)
    assert total == 9  # 2 overlays + 4 per-modality curves + 1 parallel plot + 2 GIFs
    assert (check["data-decoded"], check["data-total"]) == (str(total), str(total))  # every naturalWidth > 0
    assert _non_blank(tmp_path / "report.png") > 0.02


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(base: str, server: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        assert server.poll() is None, f"mlflow server exited: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"mlflow server did not answer /health in {seconds} s"
        time.sleep(0.5)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_mlflow_ui_shows_runs(chromium: Path, store: Store, tmp_path: Path) -> None:
    """`make ui`'s server on the store: the experiment page, as a user opens it, lists the runs."""
    port = _free_port()
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", store.uri, "--default-artifact-root", (tmp_path / "a").as_uri()]
    # The server's background job runners (a dozen processes) are not what this test is about; on 2 CPUs they
    # slow the page down a lot.
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = tmp_path / "server.log"
    with log.open("w") as out:
        server = subprocess.Popen(cmd, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=env,
                                  start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(base, server, log)
        # A fresh browser opens an experiment on the GenAI overview; `workflowType=machine_learning` is the
        # UI's own "Model training" switch, which shows the runs table (the choice then sticks in the browser).
        url = f"{base}/#/experiments/{store.experiment_id}?workflowType=machine_learning"
        png = tmp_path / "mlflow-ui.png"
        dom = dump_dom(url, png=png, timeout=180)
        top_level = [n for n in store.run_names if not n.startswith("trial-")]
        missing = [name for name in top_level if name not in dom]
        assert not missing, f"runs not in the UI's runs table: {missing}; server log: {log.read_text()[-2000:]}"
        assert re.search(r"<strong>8</strong>\s*matching runs", dom)  # the 4 trials are folded under the sweep
        assert _non_blank(png) > 0.02
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        try:  # uvicorn and any helper the server started, whether or not they heard the SIGTERM
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait()
