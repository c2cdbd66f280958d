"""Forward + backward of one Mamba block on the CPU: the project's scans against mambapy and transformers.

Rows, each in a fresh Python process on the same weights and input (batch 16 x length 196 x d_model 256,
d_state 32, expand 2 by default):

- motionlab cpp: `motionlab.models.ssm.Mamba` with the compiled CPU scan (built before the clock starts);
- motionlab torch: the same block with the pure-PyTorch fallback scan (what runs without a compiler);
- mambapy: transformers' `MambaMixer` with `use_mambapy=True` (mambapy's parallel `pscan`);
- transformers reference: `MambaMixer`'s sequential slow path (`use_mambapy=False`).

Seconds: wall time of `y = block(x); y.backward(g)` after one untimed step, the best of `--reps` (the median is
printed too): on a machine whose cores other work shares, the best step is the one least disturbed, and every row
gets the same treatment. With `--reps 0` (the default for the transformers reference, whose step takes about a
minute) the first step itself is timed, so that row includes one-off first-call costs.

Memory: peak resident set size (RSS) above the RSS just before the first forward + backward, in a process that
has only imported, built the block and made the input. The peak is the larger of the kernel's high-water mark
(`getrusage` ru_maxrss, when the step raised it) and psutil samples every millisecond. It counts everything the
step allocates: activations, tensors saved for backward, gradients of weights and input, allocator slack. Python's
tracemalloc cannot see torch's allocations, so it is not used. All rows share the same block shapes, so the
projections' and the convolution's share is the same in every row; only the scan differs.

    .venv/bin/python benchmarks/selective_scan_cpu.py [--threads N] [--reps 10] [--only cpp,mambapy]

The last line reads `speedup_vs_mambapy=<x> memory_vs_mambapy=<y>`: mambapy's seconds over the compiled scan's,
and the compiled scan's peak memory over mambapy's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

ROWS = {  # name -> (label, default timed reps after the untimed first step)
    "cpp": ("motionlab cpp", 10),
    "torch": ("motionlab torch", 3),
    "mambapy": ("mambapy", 2),
    "reference": ("transformers reference", 0),
}
SAMPLE_S = 0.001


@dataclass(frozen=True)
class Result:
    name: str
    seconds: float  # best timed step
    median_s: float
    first_s: float
    peak_mb: float
    base_mb: float
    loss: float
    grad_norm: float
    reps: int
    setup_s: float


class PeakRss:
    """Peak RSS (bytes) while the block runs: psutil samples plus the kernel's high-water mark."""

    def __init__(self) -> None:
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(SAMPLE_S)

    def __enter__(self) -> PeakRss:
        self.base = self.proc.memory_info().rss
        self.maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        self.peak = self.base
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if maxrss > self.maxrss_before:  # the step set a new lifetime high: that is its exact peak
            self.peak = max(self.peak, maxrss)


def build(name: str, args: argparse.Namespace):  # -> torch.nn.Module
    """The block for one row; every row loads the weights of the same seeded motionlab block."""
    import torch

    from motionlab.models.ssm import Mamba

    torch.manual_seed(0)
    ours = Mamba(args.d_model, d_state=args.d_state, expand=args.expand, backend=name if name in ("cpp", "torch")
                 else None)
    if name in ("cpp", "torch"):
        return ours
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # transformers' kernel lookup must not reach for the network
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer
    from transformers.utils.import_utils import is_mambapy_available

    if name == "mambapy" and not is_mambapy_available():
        raise SystemExit("mambapy is not installed: pip install mambapy (or the [dev] extra)")
    config = MambaConfig(hidden_size=args.d_model, state_size=args.d_state, expand=args.expand, conv_kernel=4,
                         num_hidden_layers=1, vocab_size=32, use_mambapy=name == "mambapy")
    mixer = MambaMixer(config, layer_idx=0)
    mixer.load_state_dict(ours.state_dict(), strict=True)
    return mixer


def worker(name: str, args: argparse.Namespace) -> None:
    """One row, in its own process so that its memory peak is its own; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    t = time.perf_counter()
    if name == "cpp":
        from motionlab.models.ssm.cpu_extension import extension_error, load_extension

        if load_extension() is None:
            raise SystemExit(f"the compiled scan is unavailable: {extension_error()}")
    block = build(name, args).train()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, args.length, args.d_model, generator=g).requires_grad_()
    gout = torch.randn(args.batch, args.length, args.d_model, generator=g)
    setup_s = time.perf_counter() - t

    def step() -> float:
        block.zero_grad(set_to_none=True)
        x.grad = None
        t = time.perf_counter()
        y = block(x)
        y.backward(gout)
        return time.perf_counter() - t

    with PeakRss() as mem:
        first = step()
    loss = float((block(x).detach().double() * gout.double()).sum()) if args.checks else float("nan")
    grad_norm = float(x.grad.double().norm())
    times = [step() for _ in range(args.reps if args.reps is not None else ROWS[name][1])]
    result = Result(name, min(times) if times else first, statistics.median(times) if times else first, first,
                    (mem.peak - mem.base) / 2**20,
                    mem.base / 2**20, loss, grad_norm, len(times), setup_s)
    print(json.dumps(result.__dict__), flush=True)


def run_row(name: str, args: argparse.Namespace) -> Result:
    cmd = [sys.executable, __file__, "--worker", name, "--threads", str(args.threads), "--batch", str(args.batch),
           "--length", str(args.length), "--d-model", str(args.d_model), "--d-state", str(args.d_state),
           "--expand", str(args.expand)]
    if args.reps is not None:
        cmd += ["--reps", str(args.reps)]
    if not args.checks:
        cmd += ["--no-checks"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return Result(**json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=196)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--d-state", type=int, default=32)
    parser.add_argument("--expand", type=int, default=2)
    parser.add_argument("--reps", type=int, default=None,
                        help="timed steps after the first, for every row (default: 10 cpp, 3 torch, 2 mambapy, "
                             "0 reference)")
    parser.add_argument("--only", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument("--no-checks", dest="checks", action="store_false",
                        help="skip the extra forward that checks every row computes the same loss")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args)
        return

    import torch

    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ROWS))
    if unknown:
        raise SystemExit(f"--only: unknown rows {unknown}; choose from {list(ROWS)}")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start; torch {torch.__version__},"
          f" {args.threads} threads; one Mamba block, batch {args.batch} x length {args.length} x d_model "
          f"{args.d_model}, d_state {args.d_state}, expand {args.expand}; forward + backward, float32", flush=True)
    results: dict[str, Result] = {}
    for name in names:
        r = run_row(name, args)
        results[name] = r
        timed = (f"best of {r.reps} after 1 untimed, median {r.median_s:.3f} s" if r.reps
                 else "the first step, untimed warm-up skipped")
        print(f"{ROWS[name][0]}: {r.seconds:.3f} s ({timed}; first {r.first_s:.3f} s), peak +{r.peak_mb:.1f} MB RSS "
              f"over {r.base_mb:.0f} MB, setup {r.setup_s:.1f} s", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")

    print()
    base = results.get("cpp")
    head = (f"{'backend':<24}{'best s':>10}{'median s':>10}{'peak MB':>10}{'x time':>9}{'x memory':>10}"
            f"{'loss rel diff':>15}")
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        ratio_t = f"{r.seconds / base.seconds:9.1f}" if base else f"{'-':>9}"
        ratio_m = f"{r.peak_mb / base.peak_mb:10.1f}" if base and base.peak_mb > 0 else f"{'-':>10}"
        diff = f"{abs(r.loss - base.loss) / abs(base.loss):15.1e}" if base and args.checks else f"{'-':>15}"
        print(f"{ROWS[name][0]:<24}{r.seconds:>10.3f}{r.median_s:>10.3f}{r.peak_mb:>10.1f}{ratio_t}{ratio_m}{diff}")
    print("(x time: best s over the compiled scan's; x memory: peak over its peak; loss rel diff: sum(block(x) * g) "
          "against it)")
    if base and "mambapy" in results:
        m = results["mambapy"]
        print(f"speedup_vs_mambapy={m.seconds / base.seconds:.1f} memory_vs_mambapy={base.peak_mb / m.peak_mb:.3f}")


if __name__ == "__main__":
    main()
