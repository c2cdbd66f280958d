"""A small FSQ convolutional autoencoder: the image tokenizer trained locally when no Cosmos weights exist.

FSQ with levels (8, 8, 8, 5, 5, 5) gives the same 64,000-code space as Cosmos DI16x16, so models and
configs do not change when the tokenizer does; FSQ also has no codebook to collapse, which matters for
a tokenizer trained for a few hundred steps on a laptop. The network is deliberately small: the
channel width doubles at each stride-2 stage and the full-resolution layers stay narrow, which keeps
training and batch encoding fast on a CPU.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import Tensor, nn
from vector_quantize_pytorch import FSQ

from motionlab.tokenizers.image import check_frames, check_tokens, frames_to_tensor, tensor_to_frames

DEFAULT_LEVELS = (8, 8, 8, 5, 5, 5)
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
MIN_SCHEDULE_STEPS = 20
MIN_STAGE_CHANNELS = 16


def _stage_channels(downsample: int, channels: int) -> list[int]:
    """Widths after each stride-2 stage, narrowest at full resolution: e.g. d=8, c=64 -> [16, 32, 64]."""
    if downsample < 2 or downsample & (downsample - 1):
        raise ValueError(f"FSQ downsample must be a power of 2 (>= 2), got {downsample}")
    n = int(math.log2(downsample))
    return [max(min(MIN_STAGE_CHANNELS, channels), channels >> (n - 1 - i)) for i in range(n)]


def _norm(c: int) -> nn.GroupNorm:
    # GroupNorm keeps the pre-FSQ activations in tanh's working range: without it, what 300 steps
    # reached varied threefold in MSE from seed to seed
    return nn.GroupNorm(8 if c % 8 == 0 else 1, c)


class _ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _norm(c),
            nn.GELU(),
            nn.Conv2d(c, c, 3, padding=1),
            _norm(c),
            nn.GELU(),
            nn.Conv2d(c, c, 3, padding=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class FSQAutoencoder(nn.Module):
    """Strided convs down by `downsample`, a projection to len(levels) dims, FSQ; the decoder mirrors it."""

    def __init__(
        self, levels: Sequence[int] = DEFAULT_LEVELS, downsample: int = 16, channels: int = 64
    ) -> None:
        super().__init__()
        self.levels = tuple(int(v) for v in levels)
        self.downsample = int(downsample)
        self.channels = int(channels)
        widths = _stage_channels(self.downsample, self.channels)
        dim = len(self.levels)

        enc: list[nn.Module] = [nn.Conv2d(3, widths[0], 4, stride=2, padding=1)]
        for c_in, c in zip(widths[:-1], widths[1:], strict=True):
            enc += [_norm(c_in), nn.GELU(), nn.Conv2d(c_in, c, 4, stride=2, padding=1)]
        enc += [_ResBlock(widths[-1]), _norm(widths[-1]), nn.GELU(), nn.Conv2d(widths[-1], dim, 1)]
        self.encoder = nn.Sequential(*enc)

        self.fsq = FSQ(levels=list(self.levels), dim=dim)

        # nearest upsampling + 3x3 conv rather than transposed convs: no checkerboard ripple on flat
        # regions, which SSIM punishes hard; the last stage goes straight to RGB at full resolution
        dec: list[nn.Module] = [nn.Conv2d(dim, widths[-1], 1), _ResBlock(widths[-1])]
        ups = [*reversed(widths), 3]  # e.g. [64, 32, 16, 3]
        for c_in, c in zip(ups[:-1], ups[1:], strict=True):
            up = nn.Upsample(scale_factor=2, mode="nearest")
            dec += [_norm(c_in), nn.GELU(), up, nn.Conv2d(c_in, c, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def codebook_size(self) -> int:
        return int(math.prod(self.levels))

    def _quantize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        z = self.encoder(x)  # (B, len(levels), h, w)
        codes, idx = self.fsq(z)  # (B, len(levels), h, w), (B, h, w)
        return codes, idx.long()

    def encode_indices(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, H/d, W/d) long."""
        return self._quantize(x)[1]

    def decode_indices(self, idx: Tensor) -> Tensor:
        """(B, h, w) -> (B, 3, h*d, w*d) in [-1, 1]."""
        codes = self.fsq.indices_to_codes(idx.long())  # (B, len(levels), h, w)
        return torch.tanh(self.decoder(codes))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 3, H, W) -> recon (B, 3, H, W), indices (B, h, w)."""
        codes, idx = self._quantize(x)
        return torch.tanh(self.decoder(codes)), idx


class FSQTokenizer:
    """ImageTokenizer over a trained FSQAutoencoder; the folder it lives in also records its quality."""

    name = "fsq"

    def __init__(
        self,
        model: FSQAutoencoder,
        device: str = "cpu",
        image_size: int | None = None,
        metrics: dict[str, float] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.image_size = image_size
        self.metrics = dict(metrics or {})

    @property
    def codebook_size(self) -> int:
        return self.model.codebook_size

    @property
    def downsample(self) -> int:
        return self.model.downsample

    @torch.inference_mode()
    def encode(self, frames: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 -> (B, H/d, W/d) int32."""
        frames = check_frames(frames, self.downsample, "fsq encode")
        x = frames_to_tensor(frames, self.device, torch.float32)  # (B, 3, H, W)
        return self.model.encode_indices(x).to(torch.int32).cpu().numpy()

    @torch.inference_mode()
    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """(B, h, w) int -> (B, h*d, w*d, 3) uint8."""
        tokens = check_tokens(tokens, self.codebook_size, "fsq decode")
        idx = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64)).to(self.device)  # (B, h, w)
        return tensor_to_frames(self.model.decode_indices(idx))

    def config(self) -> dict:
        return {
            "levels": list(self.model.levels),
            "downsample": self.model.downsample,
            "channels": self.model.channels,
            "image_size": self.image_size,
            **self.metrics,
        }

    def save(self, out_dir: Path) -> Path:
        """Write model.pt (a plain state_dict, loadable with weights_only=True) and config.json."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        # config first, weights last and by rename: callers treat an existing model.pt as "trained"
        (out_dir / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2) + "\n")
        tmp = out_dir / f".{MODEL_FILE}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, out_dir / MODEL_FILE)
        return out_dir

    @classmethod
    def load(cls, path: Path, device: str = "cpu") -> FSQTokenizer:
        path = Path(path)
        missing = [f for f in (MODEL_FILE, CONFIG_FILE) if not (path / f).is_file()]
        if missing:
            raise FileNotFoundError(
                f"FSQ tokenizer folder {path} lacks {', '.join(missing)}; train one with "
                "motionlab.tokenizers.fsq.train_fsq_tokenizer(frames, out_dir) (the prepare step does "
                "this when the workspace has none) or point the config at a folder holding both files"
            )
        cfg = json.loads((path / CONFIG_FILE).read_text())
        try:
            model = FSQAutoencoder(cfg["levels"], cfg["downsample"], cfg["channels"])
        except KeyError as e:
            raise ValueError(f"{path / CONFIG_FILE}: missing field {e}; re-train the tokenizer") from None
        model.load_state_dict(torch.load(path / MODEL_FILE, map_location="cpu", weights_only=True))
        metrics = {
            k: v for k, v in cfg.items() if k not in ("levels", "downsample", "channels", "image_size")
        }
        return cls(model, device=device, image_size=cfg.get("image_size"), metrics=metrics)


def _mean_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM over frames (N, H, W, 3) uint8, the quality number recorded with the tokenizer."""
    win = min(7, a.shape[1], a.shape[2])
    win -= 1 - win % 2  # structural_similarity needs an odd window no larger than the image
    scores = [
        structural_similarity(x, y, channel_axis=-1, data_range=255, win_size=win)
        for x, y in zip(a, b, strict=True)
    ]
    return float(np.mean(scores))


def idle_cpu_threads() -> int:
    """Threads worth using on this machine now: its cores minus the 1-minute load, at least 1.

    On a shared CPU, torch's default (one thread per core) collapses when another process holds a
    core: each parallel region waits for its slowest thread. Measured on 2 cores with one busy:
    0.4 training steps/s with 2 threads against 4.7 with 1.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        busy = os.getloadavg()[0]
    except OSError:  # not available on this platform
        busy = 0.0
    return max(1, min(torch.get_num_threads(), int(cores - busy)))


@contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_fsq_tokenizer(
    frames: np.ndarray,
    out_dir: Path,
    levels: Sequence[int] = DEFAULT_LEVELS,
    downsample: int = 16,
    channels: int = 64,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 2e-3,
    seed: int = 0,
    log: Callable[[str], None] = print,
    device: str | None = None,
    num_threads: int | None = None,
) -> dict[str, float]:
    """Train on (N, H, W, 3) uint8 square frames, evaluate on a ~10% hold-out, save to out_dir.

    Returns {'recon_ssim', 'recon_mse', 'seconds'} (MSE on pixels scaled to [0, 1]); the same numbers go
    into config.json so a run that reuses the tokenizer can report how lossy its image tokens are.
    `device` defaults to CUDA when present; on CPU, `num_threads` defaults to idle_cpu_threads().
    """
    frames = check_frames(frames, downsample, "train_fsq_tokenizer")
    n, h, w = frames.shape[:3]
    if h != w:
        raise ValueError(f"train_fsq_tokenizer expects square frames, got {h}x{w}; centre-crop them first")
    if n < 2:
        raise ValueError(f"train_fsq_tokenizer needs at least 2 frames (train + hold-out), got {n}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    t0 = time.perf_counter()

    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_eval = min(n - 1, max(1, round(0.1 * n)))
    eval_frames, train_frames = frames[order[:n_eval]], frames[order[n_eval:]]
    # kept as uint8 (4x smaller than float) and converted one batch at a time
    train_u8 = torch.from_numpy(np.ascontiguousarray(train_frames)).to(dev)  # (N_train, H, W, 3)

    n_threads = 0 if dev.type == "cuda" else (num_threads or idle_cpu_threads())
    cuda_ids = (
        [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    )
    log(
        f"fsq tokenizer: {len(train_frames)} train / {n_eval} held-out frames of {h}x{w}, {steps} steps on "
        f"{dev}" + (f" with {n_threads} thread(s)" if n_threads else "")
    )
    with nullcontext() if not n_threads else _torch_threads(n_threads):
        # seeded init without touching the caller's RNG
        with torch.random.fork_rng(devices=cuda_ids):
            torch.manual_seed(seed)
            model = FSQAutoencoder(levels, downsample, channels).to(dev).train()
            opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
            # OneCycleLR divides by the warm-up length (0.1 * total - 1 steps), so a short run schedules
            # at least MIN_SCHEDULE_STEPS and simply stops before the anneal ends.
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt, max_lr=lr, total_steps=max(steps, MIN_SCHEDULE_STEPS), pct_start=0.1
            )
            gen = torch.Generator(device="cpu").manual_seed(seed)
            every = max(1, steps // 10)
            t_train = time.perf_counter()
            for step in range(1, steps + 1):
                pick = torch.randint(len(train_u8), (min(batch_size, len(train_u8)),), generator=gen)
                batch = train_u8[pick.to(dev)].permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, 3, H, W)
                recon, _ = model(batch)
                loss = torch.nn.functional.mse_loss(recon, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if step % every == 0 or step == steps:
                    rate = step / (time.perf_counter() - t_train)
                    log(
                        f"fsq tokenizer step {step}/{steps} loss {loss.item():.4f} "
                        f"{rate:.1f} steps/s eta {(steps - step) / rate:.0f}s"
                    )

        tok = FSQTokenizer(model, device=str(dev), image_size=h)
        chunks = [eval_frames[i : i + 64] for i in range(0, n_eval, 64)]
        recon_frames = np.concatenate([tok.decode(tok.encode(c)) for c in chunks])
    metrics = {
        "recon_ssim": _mean_ssim(eval_frames, recon_frames),
        "recon_mse": float(
            np.mean((eval_frames.astype(np.float64) / 255 - recon_frames.astype(np.float64) / 255) ** 2)
        ),
        "seconds": time.perf_counter() - t0,
    }
    tok.metrics = dict(metrics)
    tok.save(out_dir)
    log(
        f"fsq tokenizer: held-out SSIM {metrics['recon_ssim']:.3f}, MSE {metrics['recon_mse']:.4f} "
        f"on {n_eval} frames, {metrics['seconds']:.1f}s; saved to {out_dir}"
    )
    return metrics
