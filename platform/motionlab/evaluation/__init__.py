"""Evaluation of text-to-motion models in a learned text-motion embedding space (protocol of Guo et al., CVPR 2022).

The evaluator is trained by this project, not the published one: see `EVALUATOR_NOTE`.
"""

from motionlab.evaluation.metrics import (
    diversity,
    fid,
    frechet_distance,
    metrics_table,
    mm_distance,
    r_precision,
    split_rows,
    text_motion_metrics,
)
from motionlab.evaluation.text_motion import (
    EVALUATOR_NOTE,
    EvaluatorConfig,
    TextMotionEvaluator,
    dataset_fingerprint,
    evaluator_cache_dir,
    load_or_train_evaluator,
    train_evaluator,
)

__all__ = [
    "EVALUATOR_NOTE", "EvaluatorConfig", "TextMotionEvaluator", "dataset_fingerprint", "diversity",
    "evaluator_cache_dir", "fid", "frechet_distance", "load_or_train_evaluator", "metrics_table", "mm_distance",
    "r_precision", "split_rows", "text_motion_metrics", "train_evaluator",
]
