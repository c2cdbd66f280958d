"""The Mamba block and its selective-scan backends: parity with a float64 definition, with transformers'
MambaMixer and with mamba-ssm's CUDA kernels, exact gradients, backend choice and the no-compiler fallback.

The first test that needs the compiled CPU scan builds it (about 25 s cold on 2 cores, then cached under
$TORCH_EXTENSIONS_DIR or ~/.cache/motionlab/torch_extensions).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from motionlab.models.ssm import ENV_VAR, Mamba, resolve_backend, selective_scan
from motionlab.models.ssm.backends import mamba_ssm_scan

HAS_COMPILER = shutil.which(os.environ.get("CXX", "c++")) is not None
CPU_BACKENDS = ["cpp", "torch"] if HAS_COMPILER else ["torch"]
SCAN_ARGS = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
# float32 scans against the float64 definition: errors are float32 rounding accumulated over L steps, a few 1e-7
# relative to the largest value here; 1e-4 of the largest |value| leaves room for other CPUs' vector widths.
F32_TOL = 1e-4
# float64 scans against the float64 definition: only summation order differs.
F64_TOL = 1e-10


def scan_inputs(b: int, d: int, n: int, length: int, dtype: torch.dtype = torch.float64, seed: int = 0,
                full: bool = True) -> dict[str, torch.Tensor | None]:
    """Random scan arguments drawn in float64 (so every dtype sees the same numbers); A < 0 as in Mamba."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    inputs: dict[str, torch.Tensor | None] = {
        "u": rand(b, d, length),
        "delta": rand(b, d, length, scale=0.5),
        "A": -(torch.rand(d, n, generator=g, dtype=torch.float64) * 2 + 0.1).to(dtype),
        "B": rand(b, n, length),
        "C": rand(b, n, length),
        "D": rand(d) if full else None,
        "z": rand(b, d, length) if full else None,
        "delta_bias": rand(d, scale=0.5) if full else None,
    }
    return inputs


def run_scan(inputs: dict[str, torch.Tensor | None], backend: str, softplus: bool, gout: torch.Tensor
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    out = selective_scan(*(leaves.get(k) for k in SCAN_ARGS), delta_softplus=softplus, backend=backend)
    grads = torch.autograd.grad(out, list(leaves.values()), gout.to(out.dtype))
    return out.detach(), dict(zip(leaves, grads, strict=True))


def assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, tol: float, what: str) -> None:
    """|actual - expected| <= tol * max|expected|, elementwise, in float64."""
    err = (actual.double() - expected.double()).abs().max().item()
    scale = expected.abs().max().item()
    assert err <= tol * scale, f"{what}: max error {err:.3g} > {tol} x max |expected| {scale:.3g}"


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("full, softplus", [(True, True), (False, False)], ids=["z-D-bias-softplus", "bare"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_cpu_backends_match_float64_reference(backend: str, full: bool, softplus: bool, dtype: torch.dtype) -> None:
    # L = 150 crosses the compiled scan's 64-step checkpoints and the PyTorch scan's 16-step ones, with a remainder
    inputs = scan_inputs(2, 6, 5, 150, full=full)
    gout = torch.randn(2, 6, 150, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref, ref_grads = run_scan(inputs, "reference", softplus, gout)
    out, grads = run_scan({k: None if v is None else v.to(dtype) for k, v in inputs.items()}, backend, softplus, gout)
    tol = F32_TOL if dtype == torch.float32 else F64_TOL
    assert out.dtype == dtype
    assert_close_scaled(out, ref, tol, f"{backend} output")
    assert set(grads) == set(ref_grads)
    for name, g in grads.items():
        assert g.dtype == dtype and g.shape == ref_grads[name].shape
        assert_close_scaled(g, ref_grads[name], tol, f"{backend} d/d{name}")
    with torch.no_grad():  # inference skips the saved states but must compute the same thing
        args = [None if inputs[k] is None else inputs[k].to(dtype) for k in SCAN_ARGS]
        assert torch.equal(selective_scan(*args, delta_softplus=softplus, backend=backend), out)


@pytest.mark.parametrize("backend, length", [("cpp", 70), ("torch", 20)])
def test_owned_scan_gradcheck(backend: str, length: int) -> None:
    if backend not in CPU_BACKENDS:
        pytest.skip("no C++ compiler ($CXX or c++) to build the compiled scan")
    # lengths cross one checkpoint boundary of each scan (64 and 16 steps)
    inputs = scan_inputs(2, 3, 4, length)
    leaves = [inputs[k].clone().requires_grad_() for k in SCAN_ARGS]  # u, delta, A, B, C, D, z, delta_bias

    def fn(*args: torch.Tensor) -> torch.Tensor:
        return selective_scan(*args, delta_softplus=True, backend=backend)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_compiled_scan_keeps_no_per_step_state() -> None:
    if not HAS_COMPILER:
        pytest.skip("no C++ compiler ($CXX or c++) to build the compiled scan")
    b, d, n, length = 2, 8, 16, 200
    args = [None if v is None else v.float().requires_grad_() for v in scan_inputs(b, d, n, length).values()]
    out = selective_scan(*args, delta_softplus=True, backend="cpp")
    saved = out.grad_fn.saved_tensors
    # the inputs themselves plus one (B, D, N) state per 64 steps; never a (B, D, L, N) tensor
    ckpt = saved[-1]
    assert ckpt.shape == (b, d, math.ceil(length / 64), n)
    assert sum(t.numel() for t in saved) == sum(a.numel() for a in args) + ckpt.numel()


def tiny_transformers_mixer(d_model: int, d_state: int, use_mambapy: bool = False) -> torch.nn.Module:
    from transformers import MambaConfig
    from transformers.models.mamba.modeling_mamba import MambaMixer

    config = MambaConfig(hidden_size=d_model, state_size=d_state, expand=2, conv_kernel=4, num_hidden_layers=1,
                         vocab_size=32, use_mambapy=use_mambapy)
    return MambaMixer(config, layer_idx=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_block_matches_transformers_mixer(backend: str) -> None:
    if mamba_ssm_scan() is not None:
        pytest.skip("mamba-ssm is installed: transformers' mixer would call its CUDA kernels on CPU tensors")
    torch.manual_seed(0)
    ours = Mamba(24, d_state=6, d_conv=4, expand=2, backend=backend)
    theirs = tiny_transformers_mixer(24, 6)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    theirs.load_state_dict(ours.state_dict(), strict=True)

    x = torch.randn(3, 90, 24)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_ours, y_theirs = ours(x_ours), theirs(x_theirs)  # transformers' slow (reference) path on CPU
    torch.testing.assert_close(y_ours, y_theirs, rtol=1e-4, atol=1e-5)
    gout = torch.randn_like(y_ours)
    y_ours.backward(gout)
    y_theirs.backward(gout)
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, rtol=1e-4, atol=1e-5)
    their_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, their_params[name].grad, rtol=1e-4, atol=1e-5, msg=name)

    # and back: transformers' weights (its own init) load into the block with the same result
    theirs_fresh = tiny_transformers_mixer(24, 6)
    ours.load_state_dict(theirs_fresh.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs_fresh(x), rtol=1e-4, atol=1e-5)


def test_block_init_follows_mamba_ssm() -> None:
    torch.manual_seed(0)
    m = Mamba(64, d_state=8, d_conv=4, expand=2, dt_min=0.001, dt_max=0.1)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (256, 64), "conv1d.weight": (128, 1, 4), "conv1d.bias": (128,),
        "x_proj.weight": (4 + 16, 128), "dt_proj.weight": (128, 4), "dt_proj.bias": (128,),
        "A_log": (128, 8), "D": (128,), "out_proj.weight": (64, 128),
    }  # dt_rank = ceil(64 / 16) = 4
    assert torch.equal(m.A_log, torch.log(torch.arange(1, 9, dtype=torch.float32)).expand(128, 8))
    assert torch.equal(m.D, torch.ones(128))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.001 * (1 - 1e-5) and dt.max() <= 0.1 * (1 + 1e-5)
    assert m.dt_proj.weight.abs().max() <= 4**-0.5
    assert m.A_log._no_weight_decay and m.D._no_weight_decay and m.dt_proj.bias._no_reinit


def test_backend_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_backend(None, cpu) == ("cpp" if HAS_COMPILER else "torch")
    assert resolve_backend("auto", cuda) == ("mamba_ssm" if mamba_ssm_scan() is not None else "torch")
    monkeypatch.setenv(ENV_VAR, "torch")
    assert resolve_backend(None, cpu) == "torch"
    assert resolve_backend("auto", cpu) == "torch"
    assert resolve_backend("reference", cpu) == "reference"  # a backend named in code beats the variable
    monkeypatch.setenv(ENV_VAR, "mamba_ssm")
    with pytest.raises(ValueError, match="needs CUDA tensors"):
        resolve_backend(None, cpu)
    monkeypatch.setenv(ENV_VAR, "fast")
    with pytest.raises(ValueError, match=f"unknown selective-scan backend 'fast' from \\${ENV_VAR}"):
        resolve_backend(None, cpu)
    with pytest.raises(ValueError, match="runs on CPU tensors"):
        resolve_backend("cpp", cuda)

    # the variable switches a block built without a backend; the result stays the same
    monkeypatch.delenv(ENV_VAR)
    torch.manual_seed(0)
    block, x = Mamba(16, d_state=4), torch.randn(2, 30, 16)
    with torch.no_grad():
        y_auto = block(x)
        monkeypatch.setenv(ENV_VAR, "reference")
        y_ref = block(x)
    torch.testing.assert_close(y_auto, y_ref, rtol=1e-4, atol=1e-5)


def test_missing_compiler_falls_back_to_pytorch_scan(tmp_path) -> None:
    script = textwrap.dedent("""
        import torch
        from motionlab.models.ssm import Mamba, resolve_backend
        torch.manual_seed(0)
        block, x = Mamba(16, d_state=4), torch.randn(2, 20, 16, requires_grad=True)
        block(x).sum().backward()
        print(resolve_backend(None, torch.device("cpu")), bool(torch.isfinite(x.grad).all()))
    """)
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}
    env.pop(ENV_VAR, None)
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["torch", "True"]
    notes = [ln for ln in proc.stderr.splitlines() if "selective scan" in ln]
    assert len(notes) == 1 and "no C++ compiler" in notes[0] and "pure-PyTorch" in notes[0], proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (mamba-ssm's kernels are CUDA-only)")
def test_gpu_backend_matches_reference_and_cpu() -> None:
    if mamba_ssm_scan() is None:
        pytest.skip("mamba-ssm is not importable here; install the GPU extra: pip install 'motionlab[gpu]'")
    cuda = torch.device("cuda")
    inputs = scan_inputs(2, 8, 16, 300, dtype=torch.float32)
    gout = torch.randn(2, 8, 300, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref, ref_grads = run_scan(inputs, "reference", True, gout)
    out, grads = run_scan({k: v.to(cuda) for k, v in inputs.items()}, "mamba_ssm", True, gout.to(cuda))
    assert_close_scaled(out.cpu(), ref, F32_TOL, "mamba_ssm output")
    for name, g in grads.items():
        assert_close_scaled(g.cpu(), ref_grads[name], F32_TOL, f"mamba_ssm d/d{name}")

    torch.manual_seed(0)
    block = Mamba(32, d_state=16)
    x = torch.randn(2, 100, 32)
    with torch.no_grad():
        y_cpu = block(x)
        y_gpu = block.to(cuda)(x.to(cuda)).cpu()
    torch.testing.assert_close(y_gpu, y_cpu, rtol=1e-3, atol=1e-4)
