"""The `motionlab` command as a user runs it: config show, synth, train image-tokenizer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from motionlab.datasets.penn_action import list_video_ids, read_label


def motionlab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "motionlab.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_config_show_resolves_preset_and_overrides_anywhere() -> None:
    proc = motionlab("config", "show", "m4", "--preset", "tiny", "model.dim=96")
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown["model"]["dim"] == 96 and shown["max_seq_lens"] == [64, 39, 64, 39]
    assert shown["lr"] == 0.002


def test_config_error_is_one_line_with_exit_code_2() -> None:
    proc = motionlab("config", "show", "m4", "input_alphas=[1,1,-1,1]")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "input_alphas" in lines[0] and "fix:" in lines[0]


def test_synth_penn_action_writes_the_official_layout(tmp_path: Path) -> None:
    proc = motionlab("synth", "penn-action", "--out", str(tmp_path / "penn"), "--videos", "3")
    assert proc.returncode == 0, proc.stderr
    ids = list_video_ids(tmp_path / "penn")
    assert ids == ["0001", "0002", "0003"]
    label = read_label(tmp_path / "penn", ids[0])
    assert len(sorted((tmp_path / "penn" / "frames" / ids[0]).glob("*.jpg"))) == label.num_frames


def test_train_image_tokenizer_reports_reconstruction_ssim(penn_source: Path, tmp_path: Path) -> None:
    out = tmp_path / "fsq"
    proc = motionlab("train", "image-tokenizer", "--source", str(penn_source), "--config", "m4", "--preset", "tiny",
                     "--out", str(out), "--steps", "20", "--max-frames", "64")
    assert proc.returncode == 0, proc.stderr
    assert "reconstruction SSIM" in proc.stdout or "recon_ssim" in proc.stdout
    saved = json.loads((out / "config.json").read_text())
    assert 0.0 < saved["recon_ssim"] <= 1.0 and (out / "model.pt").exists()


def test_short_image_tokenizer_run_does_not_break_the_schedule(penn_source: Path, tmp_path: Path) -> None:
    proc = motionlab("train", "image-tokenizer", "--source", str(penn_source), "--config", "m4", "--preset", "tiny",
                     "--out", str(tmp_path / "fsq"), "--steps", "5", "--max-frames", "32")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "fsq" / "model.pt").exists()


def test_train_multimodal_names_a_folder_that_is_not_a_prepared_dataset(tmp_path: Path) -> None:
    proc = motionlab("--workspace", str(tmp_path / "ws"), "train", "multimodal", "--config", "m4", "--preset", "tiny",
                     "--data", str(tmp_path))
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert f"{tmp_path.resolve()}: manifest.json: missing" in line and "fix: run `motionlab prepare" in line


def test_generate_refuses_a_run_that_never_finished_training(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from motionlab.workspace import Workspace

    ws = Workspace(tmp_path / "ws").ensure()
    client = MlflowClient(f"sqlite:///{ws.root / 'mlflow.db'}")
    run = client.create_run(client.create_experiment("multimodal", artifact_location=ws.mlflow_artifacts))
    proc = motionlab("--workspace", str(ws.root), "generate", "--run", run.info.run_id)
    assert proc.returncode == 2
    assert "lacks checkpoint, data_dir" in proc.stderr and "fix:" in proc.stderr
