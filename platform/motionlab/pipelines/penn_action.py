"""Penn Action -> tokenised, split, validated Parquet shards, as a Ray Data graph.

Two phases, so a second run resumes instead of restarting:
  1. one Ray Data graph over the videos of every unfinished chunk (the expensive part): decode, crop, successor
     frames, captions, image and pose tokens. Its output streams back in input order, so each chunk is written
     to OUT/_stage/chunk-NNNNN/ (a temporary folder, renamed when complete) as soon as its last video is
     through, while the same actors go on with the next chunk;
  2. over all chunks (cheap: token lists only), on the driver: text tokenizer, text tokens, validation ->
     OUT/{train,eval,test}/, OUT/quarantine.parquet and OUT/manifest.json.
A chunk whose `_SUCCESS` names the same videos and fingerprint is reused as it is.

The staged tokens are a few KB a sample, so the driver writes each chunk and runs phase 2 itself: Ray tasks for
them cost more than the work (each new worker process imports pyarrow and Ray Data; on 2 cores the 24-video
test chunk took 18 s with Ray's Parquet writer and a block per video, 8 s now).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data.block import BlockAccessor

import motionlab
from motionlab import modalities as registry
from motionlab.config import ConfigError, ExperimentConfig
from motionlab.datasets.penn_action import PennActionError, list_video_ids, read_label
from motionlab.modalities import Kind
from motionlab.pipelines.image_tokenizer import ensure_image_tokenizer, file_digest
from motionlab.pipelines.splits import SPLITS, split_by_ratio, split_official
from motionlab.pipelines.stages import (
    CaptionStage,
    FinalSpec,
    ImageTokenStage,
    VideoTokenStage,
    caption_batch,
    finalize,
    pose_tokens,
)
from motionlab.pipelines.video_samples import SampleSpec, videos_to_samples
from motionlab.raycluster import cluster_cpus, cluster_gpus
from motionlab.tokenizers.text import TextTokenizer, train_bpe
from motionlab.workspace import Workspace

MANIFEST = "manifest.json"
QUARANTINE = "quarantine.parquet"
TEXT_TOKENIZER = "text_tokenizer.json"
LIGHT_CPU = 0.25  # reads, writes and cheap stages: never let them starve an actor pool of CPUs
DECODE_CPU = 0.75  # two decode tasks plus one model actor (0.5) fill a 2-CPU node without oversubscribing
MODEL_CPU = 0.5
FUSED_CPU = 0.875  # one fused actor per CPU, leaving a little for the driver
VIDEOS_PER_BLOCK = 8  # fewer, larger blocks: each block costs the executor more than a small video's work
FINALIZE_ROWS = 512  # rows per finalize batch (text encoding and validation)
FILE_ROWS = 50_000  # samples per output Parquet file, so readers can split a large split across tasks


@dataclass(frozen=True)
class PipelineSettings:
    """How the graph runs, as opposed to what it computes (that is the config)."""

    chunk_videos: int = 256
    actors: int | None = None  # actor-pool size for stateful models; default from the config
    overwrite: bool = False
    fsq_steps: int = 300


def _modalities(cfg: ExperimentConfig) -> list[registry.Modality]:
    return [registry.get(name) for name in cfg.modalities]


def sample_spec(cfg: ExperimentConfig, source: Path) -> SampleSpec:
    """What the per-video stage produces for this config (slots follow the registry's `temporal`)."""
    mods = _modalities(cfg)
    needs_next = any(m.temporal == "next" for m in mods)
    needs_pixels = any(m.kind is Kind.IMAGE for m in mods) or cfg.data.captioner != "template"
    return SampleSpec(str(source), cfg.data.image_size, cfg.data.ssim_threshold,
                      cfg.data.num_next_frames if needs_next else 0, needs_pixels)


def assign_splits(cfg: ExperimentConfig, source: Path, video_ids: list[str]) -> dict[str, str]:
    """Video -> split, by seeded ratio or by the dataset's own train/test flag."""
    d = cfg.data
    if d.split_by == "official":
        flags: dict[str, bool] = {}
        for vid in video_ids:
            try:
                flags[vid] = read_label(source, vid).train
            except PennActionError:
                flags[vid] = True  # quarantined later; its split does not matter
        return split_official(flags, d.split_ratios, d.seed)
    return split_by_ratio(video_ids, d.split_ratios, d.seed)


@contextmanager
def _graph_context() -> Iterator[None]:
    """Let any operator use every free CPU, and keep the output in input order, while this graph runs.

    Ray Data's default reserves a share of the cluster per operator; on a 2-CPU node that leaves the
    decode stage (the bulk of the work) one task at a time, slower than a plain loop (measured by
    benchmarks/pipeline_throughput.py). The fractional CPUs above keep the model actors schedulable.
    Input order lets the driver tell when a chunk's last video is through (see `_staged_chunks`). The
    downstream-capacity backpressure goes: it compares the ordered output queue with what the driver has
    asked for, and idled the actors for seconds at a time over output of a few hundred KB of tokens.
    """
    ctx = ray.data.DataContext.get_current()
    before = (ctx.op_resource_reservation_enabled, ctx.execution_options.preserve_order,
              ctx.downstream_capacity_backpressure_ratio)
    ctx.op_resource_reservation_enabled = False
    ctx.downstream_capacity_backpressure_ratio = None
    ctx.execution_options.preserve_order = True
    try:
        yield
    finally:
        (ctx.op_resource_reservation_enabled, ctx.execution_options.preserve_order,
         ctx.downstream_capacity_backpressure_ratio) = before


def _split_stages(cfg: ExperimentConfig, spec: SampleSpec, ds: ray.data.Dataset, mods: list[registry.Modality],
                  image_tok: Path, actors: int, gpus: float, device: str) -> ray.data.Dataset:
    """Decode in CPU tasks, the models (image tokenizer, BLIP) in actor pools that may hold GPUs.

    Decode, template captions and pose tokens share one resource shape, so Ray Data fuses them into
    one task per video.
    """
    ds = ds.map_batches(videos_to_samples, fn_kwargs={"spec": spec}, num_cpus=DECODE_CPU, batch_size=1,
                        udf_modifying_row_count=True)
    caption_kwargs = {"kind": cfg.data.captioner, "path": cfg.data.captioner_path}
    if cfg.data.captioner == "template":
        ds = ds.map_batches(caption_batch, fn_kwargs=caption_kwargs, num_cpus=DECODE_CPU, batch_size=None)
    ds = ds.map_batches(pose_tokens, num_cpus=DECODE_CPU, batch_size=None,
                        fn_kwargs={"modalities": mods, "bins": cfg.data.pose_bins, "canvas": cfg.data.image_size})
    if cfg.data.captioner != "template":
        ds = ds.map_batches(CaptionStage, fn_constructor_kwargs={**caption_kwargs, "device": device},
                            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, actors)),
                            num_cpus=LIGHT_CPU if gpus else MODEL_CPU, num_gpus=gpus, batch_size=16)
    if any(m.kind is Kind.IMAGE for m in mods):
        ds = ds.map_batches(ImageTokenStage, batch_size=None, num_gpus=gpus,
                            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, actors)),
                            num_cpus=LIGHT_CPU if gpus else MODEL_CPU,
                            fn_constructor_kwargs={"kind": cfg.data.image_tokenizer, "path": str(image_tok),
                                                   "modalities": mods, "device": device})
    return ds


def _fused_stage(cfg: ExperimentConfig, spec: SampleSpec, ds: ray.data.Dataset, mods: list[registry.Modality],
                 image_tok: Path) -> ray.data.Dataset:
    """CPU only: a pool of one actor per whole CPU, each taking videos through their whole journey."""
    has_images = any(m.kind is Kind.IMAGE for m in mods)
    size = max(1, int(cluster_cpus()))
    return ds.map_batches(
        VideoTokenStage, batch_size=1, num_cpus=FUSED_CPU, compute=ray.data.ActorPoolStrategy(size=size),
        fn_constructor_kwargs={"spec": spec, "modalities": mods, "pose_bins": cfg.data.pose_bins,
                               "canvas": cfg.data.image_size,
                               "image_kind": cfg.data.image_tokenizer if has_images else None,
                               "image_path": str(image_tok) if has_images else None})


def _staged_chunks(cfg: ExperimentConfig, spec: SampleSpec, chunks: list[list[dict[str, str]]], image_tok: Path,
                   actors: int) -> Iterator[tuple[int, list[pa.Table]]]:
    """Phase 1 over several chunks of videos in one graph: yields (position in `chunks`, its tables) per chunk.

    One graph, not one per chunk: each graph starts its own actor pool (seconds of process start and model
    load) and ends with a tail where one actor idles. Output arrives in input order, so once a row of a later
    chunk arrives every earlier chunk is through (a video without samples yields no rows at all).
    """
    mods = _modalities(cfg)
    gpus = cfg.resources.gpus_per_worker if cfg.resources.use_gpu and cluster_gpus() > 0 else 0.0
    device = "cuda" if gpus > 0 else "cpu"
    rows = [row for chunk in chunks for row in chunk]
    chunk_of = {row["video_id"]: k for k, chunk in enumerate(chunks) for row in chunk}
    # at least two blocks per actor (or GPU actor) so none idles; otherwise VIDEOS_PER_BLOCK videos a block
    blocks = min(len(rows), max(2 * max(1, int(cluster_cpus()), actors), -(-len(rows) // VIDEOS_PER_BLOCK)))
    ds = ray.data.from_items(rows, override_num_blocks=blocks)
    if gpus == 0 and cfg.data.captioner == "template":
        ds = _fused_stage(cfg, spec, ds, mods, image_tok)
    else:
        ds = _split_stages(cfg, spec, ds, mods, image_tok, actors, gpus, device)
    tables: list[list[pa.Table]] = [[] for _ in chunks]
    done = 0  # chunks before this one have been yielded
    # token lists only: small enough for the driver
    for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        if not table.num_rows:
            continue
        owner = np.asarray([chunk_of[v] for v in table.column("video_id").to_pylist()])
        for k in np.unique(owner):
            tables[k].append(table.filter(pa.array(owner == k)))
        while done < owner.max():
            yield done, tables[done]
            tables[done] = []
            done += 1
    for k in range(done, len(chunks)):
        yield k, tables[k]


def _write_chunk(tables: list[pa.Table], dest: Path) -> None:
    """A chunk's staged samples to `dest`, atomically (a chunk of only-empty videos writes no file)."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if tables:
        pq.write_table(pa.concat_tables(tables, promote_options="permissive"), tmp / "part-0.parquet")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def _text_tokenizer(cfg: ExperimentConfig, staged: pa.Table, out: Path, log: Callable[[str], None]) -> Path | None:
    """The tokenizer.json for text modalities: the configured one, or a BPE trained on these captions."""
    if not any(m.kind is Kind.TEXT for m in _modalities(cfg)):
        return None
    if cfg.data.text_tokenizer_path:
        tok = TextTokenizer.load(Path(cfg.data.text_tokenizer_path).expanduser())
        return tok.save(out / TEXT_TOKENIZER)
    captions = sorted(c for c in pc.unique(staged.column("caption")).to_pylist() if c)
    tok = train_bpe(captions, cfg.data.text_vocab_size, out / TEXT_TOKENIZER)
    log(f"trained a byte-level BPE of {tok.vocab_size} tokens on {len(captions)} distinct captions")
    return out / TEXT_TOKENIZER


def _finalize_table(staged: pa.Table, spec: FinalSpec) -> pa.Table:
    """`stages.finalize` over the staged rows in batches, each converted as Ray Data's numpy batches are."""
    parts = [finalize(BlockAccessor.for_block(staged.slice(i, FINALIZE_ROWS)).to_batch_format("numpy"), spec)
             for i in range(0, staged.num_rows, FINALIZE_ROWS)]
    return pa.concat_tables(parts) if parts else pa.table({"video_id": pa.array([], pa.string()),
                                                           "frame": pa.array([], pa.int32()),
                                                           "split": pa.array([], pa.string()),
                                                           "reason": pa.array([], pa.string())})


def _write_outputs(final: pa.Table, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Splits into OUT/<split>/ (each replaced whole) and the quarantine table.

    Returns the (video_id, split) index of the kept samples and the quarantine table.
    """
    ok = pc.equal(final.column("reason"), "")
    for split in SPLITS:
        part = final.filter(pc.and_(ok, pc.equal(final.column("split"), split))).drop_columns(["reason"])
        tmp = out / f".{split}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for k, start in enumerate(range(0, part.num_rows, FILE_ROWS)):
            pq.write_table(part.slice(start, FILE_ROWS), tmp / f"part-{k:05d}.parquet")
        shutil.rmtree(out / split, ignore_errors=True)
        tmp.rename(out / split)
    flags = [c for c in final.column_names if c.endswith("_truncated")]
    index = final.select(["video_id", "frame", "split", "reason", *flags]).to_pandas()
    quarantine = index[index["reason"] != ""][["video_id", "frame", "reason"]]
    quarantine = quarantine.astype({"frame": "int32"}).sort_values(["video_id", "frame"]).reset_index(drop=True)
    pq.write_table(pa.Table.from_pandas(quarantine, preserve_index=False), out / QUARANTINE)
    return index[index["reason"] == ""].drop(columns=["reason", "frame"]), quarantine


def _chunk_done(dest: Path, videos: list[str], fingerprint: str) -> bool:
    marker = dest / "_SUCCESS"
    if not marker.exists():
        return False
    done = json.loads(marker.read_text())
    return done.get("videos") == videos and done.get("fingerprint") == fingerprint


def prepare_penn_action(
    source: Path,
    cfg: ExperimentConfig,
    out: Path,
    workspace: Workspace,
    settings: PipelineSettings = PipelineSettings(),
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole graph (Ray must be initialised); returns the manifest it wrote."""
    t0 = time.perf_counter()
    source, out = Path(source).resolve(), Path(out).resolve()
    video_ids = list_video_ids(source)
    if not video_ids:
        raise PennActionError(source / "labels", "labels", "no videos found",
                              "point --source at a Penn Action folder with labels/NNNN.mat and frames/NNNN/")
    image_tok = ensure_image_tokenizer(cfg, source, video_ids, workspace, log, steps=settings.fsq_steps)
    t_tok = time.perf_counter() - t0
    image_id = {"kind": cfg.data.image_tokenizer, "path": str(image_tok),
                "sha256": file_digest(_weights_file(image_tok, cfg.data.image_tokenizer))}
    fingerprint = f"{cfg.fingerprint('data')}-{image_id['sha256']}"

    manifest_path = out / MANIFEST
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("fingerprint") != fingerprint and not settings.overwrite:
            raise ConfigError(f"{out}: manifest.json: holds tokens of another config or tokenizer "
                              f"({old.get('fingerprint')} != {fingerprint}); fix: pass another --out or --overwrite")
        if old.get("fingerprint") == fingerprint and old.get("video_ids") == video_ids \
                and old.get("status") == "complete":
            log(f"{out} is already prepared for {cfg.name} ({old['samples']['total']} samples); nothing to do")
            return old
    if settings.overwrite and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    splits = assign_splits(cfg, source, video_ids)
    spec = sample_spec(cfg, source)
    actors = settings.actors or cfg.resources.pipeline_actors
    stage_root = out / "_stage"
    chunks = [video_ids[i : i + settings.chunk_videos] for i in range(0, len(video_ids), settings.chunk_videos)]
    t1 = time.perf_counter()
    dests = [stage_root / f"chunk-{k:05d}" for k in range(len(chunks))]
    pending = [k for k, chunk in enumerate(chunks) if not _chunk_done(dests[k], chunk, fingerprint)]
    reused = len(chunks) - len(pending)
    if pending:
        log(f"{sum(len(chunks[k]) for k in pending)} videos in {len(pending)} of {len(chunks)} chunks "
            f"({chunks[pending[0]][0]}..{chunks[pending[-1]][-1]}), in one graph")
        work = [[{"video_id": v, "split": splits[v]} for v in chunks[k]] for k in pending]
        with _graph_context():  # set before the Dataset is built: it copies the context
            for i, tables in _staged_chunks(cfg, spec, work, image_tok, actors):
                k = pending[i]
                _write_chunk(tables, dests[k])
                (dests[k] / "_SUCCESS").write_text(json.dumps({"videos": chunks[k], "fingerprint": fingerprint}))
                log(f"chunk {k + 1}/{len(chunks)} staged: {len(chunks[k])} videos, "
                    f"{sum(t.num_rows for t in tables)} rows ({time.perf_counter() - t1:.0f} s)")
    if reused:
        log(f"resumed: reused {reused} of {len(chunks)} finished chunks")
    t_stage = time.perf_counter() - t1

    t2 = time.perf_counter()
    tables = [pq.read_table(f) for d in dests for f in sorted(d.glob("*.parquet"))]
    staged = (pa.concat_tables(tables, promote_options="permissive") if tables
              else pa.table({"caption": pa.array([], pa.string())}))
    text_tok = _text_tokenizer(cfg, staged, out, log)
    final_spec = FinalSpec(tuple(_modalities(cfg)), cfg.lengths(), cfg.vocab(),
                           str(text_tok) if text_tok else None)
    kept_index, quarantine = _write_outputs(_finalize_table(staged, final_spec), out)
    t_final = time.perf_counter() - t2

    counts = {s: int((kept_index["split"] == s).sum()) for s in SPLITS}
    truncated = {c.removesuffix("_truncated"): int(kept_index[c].sum())
                 for c in kept_index.columns if c.endswith("_truncated")}
    for name, n in truncated.items():
        if n:
            log(f"{n} of {len(kept_index)} {name} rows were longer than max_seq_len {cfg.lengths()[name]} "
                f"and were truncated (column {name}_truncated)")
    kept = sum(counts.values())
    # Clips that never change enough for a successor (or hold only bad frames) yield no sample: say which.
    silent = sorted(set(video_ids) - set(kept_index["video_id"]) - set(quarantine["video_id"]))
    manifest = {
        "status": "complete",
        "motionlab_version": motionlab.__version__,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {"name": cfg.name, "preset": cfg.preset, "variant": cfg.variant, "source": cfg.source},
        "fingerprint": fingerprint,
        "source": str(source),
        "video_ids": video_ids,
        "videos": {s: sum(1 for v in video_ids if splits[v] == s) for s in SPLITS},
        "samples": {**counts, "total": kept},
        "quarantined": int(len(quarantine)),
        "quarantine_videos": int(quarantine["video_id"].nunique()),
        "videos_without_samples": silent,
        "truncated": truncated,
        "modalities": {m.name: {"kind": str(m.kind), "length": cfg.lengths()[m.name],
                                "vocab": cfg.vocab()[m.name]} for m in _modalities(cfg)},
        "tokenizers": {
            "image": image_id,
            "pose": {"bins": cfg.data.pose_bins, "canvas": cfg.data.image_size},
            "text": ({"path": str(text_tok), "sha256": file_digest(text_tok)} if text_tok else None),
        },
        "chunks": {"total": len(chunks), "reused": reused, "processed": len(chunks) - reused},
        "timings_s": {"image_tokenizer": round(t_tok, 2), "stage": round(t_stage, 2),
                      "finalize": round(t_final, 2), "total": round(time.perf_counter() - t0, 2)},
    }
    manifest_path.write_text(json.dumps(manifest, indent=2))
    log(f"prepared {cfg.name}{'/' + cfg.preset if cfg.preset else ''}: kept {kept} samples "
        f"(train {counts['train']}, eval {counts['eval']}, test {counts['test']}) from {len(video_ids)} videos; "
        f"quarantined {len(quarantine)} (see {out / QUARANTINE}); {len(silent)} videos had no successor frame; "
        f"{manifest['timings_s']['total']:.1f} s")
    return manifest


def _weights_file(path: Path, kind: str) -> Path:
    return path / ("encoder.jit" if kind == "cosmos" else "model.pt")
