"""Frames per second of the Ray Data Penn Action pipeline against a plain sequential loop.

Both do the same work with the same models on the same data and machine: decode and crop every
frame, SSIM successor chains, captions, image tokens (the same trained FSQ tokenizer), pose tokens,
text tokens, validation, Parquet splits. The image tokenizer is trained once beforehand and is not
timed; neither is Ray's start-up (the graph's actor pool start is).

    .venv/bin/python benchmarks/pipeline_throughput.py [--videos 768] [--config m4 --preset tiny]

768 videos (three of the pipeline's 256-video chunks, under half of Penn Action) by default: the graph pays
a fixed start of its actor pool (about 8 s on 2 cores: worker processes importing torch and loading the
tokenizer) that weighs on a run of a few dozen videos and not on a dataset.

Data: frames rendered from the real Penn Action labels in ../shared/datasets (real frame sizes and
joint motion) when present, else generated look-alike videos at 360 x 480. The last line reads
`speedup=<x>`, the
Ray graph's frames per second over the loop's (with `--rounds N`, the median of N loop/graph pairs whose
order alternates). A last line, for reference, runs the same per-video work over plain worker processes (one
per CPU), to show how much the machine's cores give this workload.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import pyarrow as pa
import ray
import torch

from motionlab.config import load_config
from motionlab.datasets.penn_action import list_video_ids, read_label
from motionlab.datasets.synth_penn import synth_penn_action
from motionlab.modalities import Kind
from motionlab.pipelines.image_tokenizer import ensure_image_tokenizer
from motionlab.pipelines.penn_action import (
    PipelineSettings,
    _modalities,
    _write_outputs,
    assign_splits,
    prepare_penn_action,
    sample_spec,
)
from motionlab.pipelines.stages import CaptionStage, FinalSpec, ImageTokenStage, finalize, pose_tokens
from motionlab.pipelines.video_samples import rows_to_columns, video_to_samples
from motionlab.raycluster import init_ray
from motionlab.tokenizers.text import train_bpe
from motionlab.workspace import Workspace

SHARED_LABELS = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "penn_action" / "labels"


def make_data(root: Path, videos: int) -> tuple[Path, str]:
    source = root / "penn_action"
    if SHARED_LABELS.is_dir():
        synth_penn_action(source, videos=videos, labels=SHARED_LABELS)
        return source, f"{videos} videos rendered from real Penn Action labels (real sizes)"
    synth_penn_action(source, videos=videos, size=(360, 480), frames=(40, 80))
    return source, f"{videos} generated look-alike videos at 360x480"


class VideoWork:
    """The per-video work of the graph, in one process: decode ... image and pose tokens."""

    def __init__(self, cfg, source: Path, image_tok: Path) -> None:
        self.cfg, self.spec, self.mods = cfg, sample_spec(cfg, source), _modalities(cfg)
        self.captioner = CaptionStage(cfg.data.captioner, cfg.data.captioner_path)
        self.imager = ImageTokenStage(cfg.data.image_tokenizer, str(image_tok), self.mods) \
            if any(m.kind is Kind.IMAGE for m in self.mods) else None

    def __call__(self, vid: str, split: str) -> dict | None:
        rows = video_to_samples({"video_id": vid, "split": split}, self.spec)
        if not rows:  # a clip with no successor frame yields nothing, as in the graph
            return None
        batch = self.captioner(rows_to_columns(rows, self.spec))
        if self.imager is not None:
            batch = self.imager(batch)
        return pose_tokens(batch, self.mods, self.cfg.data.pose_bins, self.cfg.data.image_size)


def write_outputs(cfg, staged: list[dict], out: Path) -> int:
    """Text tokens, validation and Parquet splits: the graph's own second phase, on the same staged batches."""
    mods = _modalities(cfg)
    text = None
    if any(m.kind is Kind.TEXT for m in mods):
        captions = sorted({c for b in staged for c in b["caption"] if c})
        train_bpe(captions, cfg.data.text_vocab_size, out / "text_tokenizer.json")
        text = str(out / "text_tokenizer.json")
    table = pa.concat_tables([finalize(b, FinalSpec(tuple(mods), cfg.lengths(), cfg.vocab(), text)) for b in staged])
    kept, _ = _write_outputs(table, out)
    return len(kept)


def sequential(cfg, source: Path, image_tok: Path, out: Path) -> int:
    """The plain loop: one video after another through the same stage code, then the same outputs."""
    ids = list_video_ids(source)
    splits = assign_splits(cfg, source, ids)
    work = VideoWork(cfg, source, image_tok)
    staged = [b for b in (work(v, splits[v]) for v in ids) if b is not None]
    return write_outputs(cfg, staged, out)


_WORK: VideoWork | None = None


def _init_worker(cfg, source: Path, image_tok: Path) -> None:
    global _WORK
    torch.set_num_threads(1)
    _WORK = VideoWork(cfg, source, image_tok)


def _one_video(args: tuple[str, str]) -> dict | None:
    return _WORK(*args)


def processes(cfg, source: Path, image_tok: Path, out: Path, n: int) -> int:
    """A reference, not the baseline: the same work over n plain worker processes, showing what the
    machine's cores give without any framework."""
    ids = list_video_ids(source)
    splits = assign_splits(cfg, source, ids)
    with get_context("spawn").Pool(n, initializer=_init_worker, initargs=(cfg, source, image_tok)) as pool:
        staged = [b for b in pool.imap_unordered(_one_video, [(v, splits[v]) for v in ids]) if b is not None]
    return write_outputs(cfg, staged, out)


def time_loop(cfg, source: Path, image_tok: Path, out: Path) -> tuple[float, int]:
    t = time.perf_counter()
    kept = sequential(cfg, source, image_tok, out)
    return time.perf_counter() - t, kept


def time_graph(cfg, source: Path, workspace: Workspace, out: Path, num_cpus: int) -> tuple[float, dict]:
    """The graph on a fresh local Ray (started and stopped untimed), so every round pays the same start-up."""
    init_ray(num_cpus=num_cpus, temp_dir=Path(tempfile.mkdtemp(prefix="mlray", dir="/tmp")))
    try:
        t = time.perf_counter()
        manifest = prepare_penn_action(source, cfg, out, workspace, PipelineSettings(), log=lambda m: None)
        return time.perf_counter() - t, manifest
    finally:
        ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=768)
    parser.add_argument("--config", default="m4")
    parser.add_argument("--preset", default=None, help="e.g. tiny; default: the full 256 px config")
    parser.add_argument("--fsq-steps", type=int, default=100, help="image tokenizer training (not timed)")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count())
    parser.add_argument("--rounds", type=int, default=1,
                        help="loop/graph pairs, alternating which goes first; speedup is the median pair's ratio")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="motionlab-bench-"))
    try:
        cfg = load_config(args.config, preset=args.preset)
        source, what = make_data(root, args.videos)
        ids = list_video_ids(source)
        frames = sum(read_label(source, v).num_frames for v in ids)
        workspace = Workspace(root / "workspace").ensure()
        image_tok = ensure_image_tokenizer(cfg, source, ids, workspace, log=lambda m: None, steps=args.fsq_steps)
        print(f"data: {what}, {frames} frames; config {cfg.name}{'/' + cfg.preset if cfg.preset else ''} "
              f"({cfg.data.image_size} px); {args.num_cpus} CPUs")

        ratios = []
        for r in range(args.rounds):
            # a shared machine's speed drifts over minutes: alternate the order so neither path always goes last
            if r % 2:
                ray_s, manifest = time_graph(cfg, source, workspace, root / f"ray{r}", args.num_cpus)
                loop_s, kept_loop = time_loop(cfg, source, image_tok, root / f"loop{r}")
            else:
                loop_s, kept_loop = time_loop(cfg, source, image_tok, root / f"loop{r}")
                ray_s, manifest = time_graph(cfg, source, workspace, root / f"ray{r}", args.num_cpus)
            if manifest["samples"]["total"] != kept_loop:
                raise SystemExit(f"the two paths disagree: loop kept {kept_loop}, "
                                 f"Ray kept {manifest['samples']['total']}")
            ratios.append(loop_s / ray_s)
            tag = f"[round {r + 1}/{args.rounds}] " if args.rounds > 1 else ""
            print(f"{tag}sequential loop : {loop_s:7.1f} s  {frames / loop_s:7.1f} frames/s  ({kept_loop} samples)")
            print(f"{tag}ray data graph  : {ray_s:7.1f} s  {frames / ray_s:7.1f} frames/s  "
                  f"({manifest['samples']['total']} samples; stage {manifest['timings_s']['stage']:.1f} s, "
                  f"finalize {manifest['timings_s']['finalize']:.1f} s; ratio {loop_s / ray_s:.2f})", flush=True)

        t = time.perf_counter()
        kept_mp = processes(cfg, source, image_tok, root / "mp", args.num_cpus)
        mp_s = time.perf_counter() - t
        print(f"{args.num_cpus} plain processes: {mp_s:7.1f} s  {frames / mp_s:7.1f} frames/s  ({kept_mp} samples; "
              f"the machine's own scaling for this work: {loop_s / mp_s:.2f}x against the last loop)", flush=True)
        print(f"speedup={statistics.median(ratios):.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
