"""`motionlab generate --run RUN_ID`: roll-outs of a finished training, logged to the same MLflow run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from motionlab.config import ConfigError, load_config
from motionlab.generation.samples import write_sample_gifs
from motionlab.training.data import PreparedData
from motionlab.training.evaluation import load_model


def generate_for_run(uri: str, run_id: str, samples: int = 8) -> list[Path]:
    """Find the run's config, checkpoint and data through its tags and artifacts; log GIFs under gifs/."""
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    tags = run.data.tags
    missing = [t for t in ("checkpoint", "data_dir") if t not in tags]
    if missing:
        raise ConfigError(f"MLflow run {run_id}: tags: lacks {', '.join(missing)}, so it never finished a "
                          "training; fix: pass the id of a finished `motionlab train multimodal` run")
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(client.download_artifacts(run_id, "config/resolved.yaml", tmp))
        cfg = load_config(config_file)
        data = PreparedData.open(Path(tags["data_dir"]), cfg)
        model = load_model(Path(tags["checkpoint"]))
        paths = write_sample_gifs(model, cfg, data, Path(tmp) / "gifs", samples=samples)
        for path in paths:
            client.log_artifact(run_id, str(path), "gifs")
    return [Path("gifs") / p.name for p in paths]
