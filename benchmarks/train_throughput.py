"""Training throughput of the 4M model on CPU against the machine's matmul peak, and the loader against the trainer.

Measured in one run, on the same machine and threads:

- peak: fp32 `torch.mm` of two square matrices (best of several reps), the ceiling a dense model can reach;
- trainer: forward + backward + gradient clipping + AdamW step of `FourM`, as the train loop runs it (the
  loop's `LossModule`, `build_optimizer`, `autocast`), on batches masked by the loop's `masked_batch` from
  real rows of a prepared M4-tiny dataset, timed after warm-up steps, for the tiny model and the full M4
  model size. Masking is done before the clock starts: it is the loader's share, measured below;
- loader: the train split as the loop reads it (Ray Data `read_parquet` -> `iter_batches` through the loop's
  `EpochCache` -> token arrays -> masking -> tensors), over several epochs, alone.

Tokens/s are counted as the loop counts them (schedule tokens: num_tokens_per_sample x batch per step) and as
real non-padding input + target tokens. Achieved FLOP/s are useful FLOPs: `FourM.flops_per_token(n_in, n_tgt)`
times the target tokens of each sample (padding slots are computed but not counted). The full M4 size keeps
the tiny data layout (token lengths, masking ranges, vocabulary), since it must consume the same tokens.

    .venv/bin/python benchmarks/train_throughput.py [--data DIR | --workspace DIR] [--threads N]

Without --data the workspace's M4-tiny tokens are used, prepared first from generated data when absent.
The last line reads `tokens_per_s=<x> flops_fraction=<y> loader_margin=<z>` for the full M4 size: schedule
tokens/s, achieved FLOP/s over the matmul peak, and loader samples/s (streaming every epoch) over the
trainer's samples/s.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import ray.data
import torch

from motionlab.cli import prepared_data
from motionlab.config import ExperimentConfig, load_config
from motionlab.masking import MaskingSpec
from motionlab.models.fourm import FourM, FourMConfig
from motionlab.raycluster import init_ray
from motionlab.training.data import PreparedData, token_arrays
from motionlab.training.loop import CACHE_BUDGET_BYTES, EpochCache, LossModule, autocast, build_optimizer, masked_batch
from motionlab.training.runner import split_datasets
from motionlab.training.schedule import TokenSchedule
from motionlab.workspace import Workspace

CPU = torch.device("cpu")
OBJECT_STORE_MB = 200


@dataclass(frozen=True)
class Row:
    """One line of the table; loader rows have no FLOPs."""

    path: str
    batch: int
    s_per_step: float
    samples_per_s: float
    tokens_per_s: float  # schedule tokens, as the loop's log line counts them
    real_tokens_per_s: float  # non-padding input + target tokens
    gflops: float | None = None
    fraction: float | None = None


def matmul_peak(n: int, reps: int) -> tuple[float, float]:
    """(best, median) GFLOP/s of an fp32 n x n by n x n `torch.mm` with the threads torch uses now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        torch.mm(a, b)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t)
    flops = 2.0 * n**3
    return flops / min(times) / 1e9, flops / statistics.median(times) / 1e9


def full_size_config(variant: str, preset: str, full_vocab: bool) -> ExperimentConfig:
    """The full config's model dims (and, if asked, vocabulary) on the preset's data layout."""
    full = load_config(variant)
    overrides = [f"model.{k}={v}" for k, v in full.model.model_dump().items()]
    if full_vocab:
        overrides.append(f"global_vars.vocab_size={max(full.vocab_sizes)}")
    return load_config(variant, preset=preset, overrides=overrides)


def useful_flops(model: FourM, tensors: dict[str, torch.Tensor]) -> tuple[float, int, int]:
    """(training FLOPs, real input tokens, real target tokens) of one masked batch, counted per sample."""
    n_in = (~tensors["enc_pad"]).sum(dim=1).tolist()  # (B,)
    n_tgt = (~tensors["dec_pad"]).sum(dim=1).tolist()  # (B,)
    flops = sum(model.flops_per_token(i, t) * t for i, t in zip(n_in, n_tgt, strict=True) if t > 0)
    return flops, sum(n_in), sum(n_tgt)


def time_trainer(name: str, cfg: ExperimentConfig, rows: dict[str, np.ndarray], eos: int | None, batch: int,
                 steps: int, warmup: int, peak_gflops: float) -> tuple[Row, dict[str, float]]:
    """Seconds per optimizer step of the loop's step on pre-masked batches of real rows."""
    torch.manual_seed(cfg.data.seed)
    spec = MaskingSpec.from_config(cfg)
    model = FourM(FourMConfig.from_experiment(cfg)).to(CPU)
    module = LossModule(model)
    optimizer = build_optimizer(model, cfg)
    schedule = TokenSchedule.from_config(cfg, global_batch=batch)
    n_rows = len(next(iter(rows.values())))
    order = np.random.default_rng(cfg.data.seed).permutation(n_rows)
    batches = []
    for step in range(warmup + steps):
        idx = order[(step * batch + np.arange(batch)) % n_rows]
        rng = np.random.default_rng([cfg.data.seed, 0, step])
        batches.append(masked_batch({c: a[idx] for c, a in rows.items()}, cfg, spec, rng, eos, CPU))

    module.train()
    elapsed, flops, real_in, real_tgt = 0.0, 0.0, 0, 0
    for step, tensors in enumerate(batches):
        t = time.perf_counter()
        with autocast(cfg, CPU):
            loss, _, _ = module(tensors)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.clip_grad)
        optimizer.step()
        loss.item()
        if step >= warmup:
            elapsed += time.perf_counter() - t
            f, i, g = useful_flops(model, tensors)
            flops, real_in, real_tgt = flops + f, real_in + i, real_tgt + g
    gflops = flops / elapsed / 1e9
    row = Row(f"trainer {name}", batch, elapsed / steps, steps * batch / elapsed,
              steps * schedule.tokens_per_step / elapsed, (real_in + real_tgt) / elapsed, gflops,
              gflops / peak_gflops)
    slots_in, slots_tgt = steps * batch * spec.num_input, steps * batch * spec.num_target
    info = {"params": float(model.num_params()), "pad_in": 1 - real_in / slots_in, "pad_tgt": 1 - real_tgt / slots_tgt}
    return row, info


def time_loader(cfg: ExperimentConfig, data: PreparedData, eos: int | None, batch: int, min_samples: int,
                cached: bool) -> Row:
    """Samples/s of the loop's data path alone, over at least `min_samples` samples.

    `cached` is the loop's own path (streamed once, then from memory); without it every epoch streams from
    Parquet, as it does for a shard over the cache budget.
    """
    spec = MaskingSpec.from_config(cfg)
    columns = list(cfg.modalities)
    t = time.perf_counter()
    shard = split_datasets(cfg, data)["train"]  # exactly as the runner hands it to Ray Train
    cache = EpochCache(shard, batch, cfg.data.seed, columns, budget_bytes=CACHE_BUDGET_BYTES if cached else 0)
    samples, steps, real = 0, 0, 0
    batches = iter(cache)
    while samples < min_samples:
        rng = np.random.default_rng([cfg.data.seed, 0, steps])
        tensors = masked_batch(next(batches), cfg, spec, rng, eos, CPU)
        samples += tensors["enc_tokens"].shape[0]
        real += int((~tensors["enc_pad"]).sum() + (~tensors["dec_pad"]).sum())
        steps += 1
    elapsed = time.perf_counter() - t
    batches.close()  # type: ignore[attr-defined]
    label = "loader cached" if cached else "loader stream"
    # an epoch's last batch may be short: schedule tokens are counted per sample, not per step
    return Row(label, batch, elapsed / steps, samples / elapsed, samples * cfg.num_tokens_per_sample / elapsed,
               real / elapsed)


def print_table(rows: list[Row]) -> None:
    head = f"{'path':<22}{'batch':>6}{'s/step':>10}{'samples/s':>11}{'tokens/s':>11}{'real tok/s':>12}" \
           f"{'GFLOP/s':>9}{'of peak':>9}"
    print(head)
    print("-" * len(head))
    for r in rows:
        gf = f"{r.gflops:9.1f}" if r.gflops is not None else f"{'-':>9}"
        fr = f"{r.fraction:9.1%}" if r.fraction is not None else f"{'-':>9}"
        print(f"{r.path:<22}{r.batch:>6}{r.s_per_step:>10.4f}{r.samples_per_s:>11.1f}{r.tokens_per_s:>11,.0f}"
              f"{r.real_tokens_per_s:>12,.0f}{gf}{fr}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="a prepared M4-tiny dataset (default: the workspace's)")
    parser.add_argument("--workspace", default=None, help="default $MOTIONLAB_WORKSPACE or ./workspace")
    parser.add_argument("--config", default="m4")
    parser.add_argument("--preset", default="tiny", help="the data layout both model sizes consume")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray")
    parser.add_argument("--tiny-steps", type=int, default=40)
    parser.add_argument("--full-steps", type=int, default=3)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--full-batch", type=int, default=8, help="per-step batch of the full model size")
    parser.add_argument("--full-vocab", action="store_true",
                        help="give the full size the full config's vocabulary (default: the preset's)")
    parser.add_argument("--loader-samples", type=int, default=2048, help="samples per loader measurement")
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmul-reps", type=int, default=10)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    tiny = load_config(args.config, preset=args.preset)
    full = full_size_config(args.config, args.preset, args.full_vocab)
    workspace = Workspace.resolve(args.workspace).ensure()
    ray_tmp = Path(tempfile.mkdtemp(prefix="mlray", dir="/tmp"))
    init_ray(num_cpus=args.num_cpus, object_store_mb=OBJECT_STORE_MB, temp_dir=ray_tmp)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        data = prepared_data(argparse.Namespace(data=args.data), workspace, tiny)
        PreparedData.open(data.root, full)  # the full size must read the same token layout
        eos = data.text_eos()
        columns = list(tiny.modalities)
        rows = token_arrays(data.read_pandas("train", columns=columns), columns)
        n_train = len(rows[columns[0]])

        best, median = matmul_peak(args.matmul_size, args.matmul_reps)
        print(f"machine: {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f}), torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; fp32 matmul {args.matmul_size}^2 peak {best:.1f} GFLOP/s "
              f"(median {median:.1f})")
        print(f"data: {data.root} ({n_train} train samples; {tiny.name}/{tiny.preset} layout: lengths "
              f"{list(tiny.max_seq_lens)}, inputs {list(tiny.input_tokens_range)}, "
              f"targets {list(tiny.target_tokens_range)}, {tiny.num_tokens_per_sample} schedule tokens/sample)")

        table: list[Row] = []
        infos: dict[str, dict[str, float]] = {}
        sizes = [("tiny", tiny, tiny.batch_size, args.tiny_steps), ("full M4", full, args.full_batch, args.full_steps)]
        for name, cfg, batch, steps in sizes:
            row, info = time_trainer(name, cfg, rows, eos, batch, steps, args.warmup_steps, best)
            table.append(row)
            infos[name] = info
            m = cfg.model
            print(f"trainer {name}: dim {m.dim}, depth {m.enc_depth}+{m.dec_depth}, head_dim {m.head_dim}, vocab "
                  f"{max(cfg.vocab_sizes)}, {info['params'] / 1e6:.1f}M params; {steps} timed steps after "
                  f"{args.warmup_steps} warm-up; padding {info['pad_in']:.0%} of encoder and {info['pad_tgt']:.0%} "
                  f"of decoder slots (computed, not counted as FLOPs)", flush=True)
        if full.vocab_sizes == tiny.vocab_sizes:
            full_vocab = max(load_config(args.config).vocab_sizes)
            print(f"note: the full M4 size runs the full model dims on the {tiny.preset} data layout, vocabulary "
                  f"included ({max(tiny.vocab_sizes)} per modality; --full-vocab for {full_vocab})")
        else:
            print(f"note: the full M4 size runs the full model dims and vocabulary on the {tiny.preset} data layout")

        loader: dict[tuple[int, bool], Row] = {}
        for batch in sorted({tiny.batch_size, args.full_batch}):
            for cached in (False, True):
                row = time_loader(tiny, data, eos, batch, args.loader_samples, cached)
                loader[(batch, cached)] = row
                table.append(row)
                print(f"{row.path} batch {batch}: {args.loader_samples} samples, {-(-args.loader_samples // n_train)} "
                      f"epochs of {n_train}", flush=True)

        print()
        print_table(table)
        print()
        trainer = {r.path: r for r in table if r.path.startswith("trainer")}
        for name, _, batch, _ in sizes:
            t = trainer[f"trainer {name}"]
            stream, cached = loader[(batch, False)], loader[(batch, True)]
            print(f"{name}: loader margin {stream.samples_per_s / t.samples_per_s:,.1f}x streaming every epoch, "
                  f"{cached.samples_per_s / t.samples_per_s:,.1f}x with the loop's epoch cache "
                  f"(trainer {t.samples_per_s:.1f} samples/s at batch {batch})")
        t = trainer["trainer full M4"]
        margin = loader[(args.full_batch, False)].samples_per_s / t.samples_per_s
        print(f"tokens_per_s={t.tokens_per_s:.1f} flops_fraction={t.fraction:.4f} loader_margin={margin:.1f}")
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
