"""Where things live at run time: one workspace folder holding data, tokenizers, tokens, Ray and MLflow state."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "MOTIONLAB_WORKSPACE"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike | None = None) -> Workspace:
        """`--workspace` wins, then $MOTIONLAB_WORKSPACE, then ./workspace."""
        chosen = path or os.environ.get(ENV_VAR) or "workspace"
        return cls(Path(chosen).expanduser().resolve())

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tokenizers(self) -> Path:
        return self.root / "tokenizers"

    @property
    def tokens(self) -> Path:
        return self.root / "tokens"

    @property
    def ray_storage(self) -> Path:
        return self.root / "ray"

    @property
    def mlflow_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.root / 'mlflow.db'}"

    @property
    def mlflow_artifacts(self) -> str | None:
        """Artifact root for experiments created in the workspace's own store (a server decides its own)."""
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return None
        return (self.root / "mlartifacts").as_uri()

    def ensure(self) -> Workspace:
        for sub in (self.data, self.tokenizers, self.tokens, self.ray_storage):
            sub.mkdir(parents=True, exist_ok=True)
        return self
