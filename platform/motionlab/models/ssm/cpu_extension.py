"""Build and load the compiled CPU selective scan (`csrc/selective_scan.cpp`) on first use.

The build goes through `torch.utils.cpp_extension.load` (ninja + the system C++ compiler), so nothing is
compiled at install time and a CPU-only install needs no build step. It is cached per CPU: the code is built
with `-march=native`, so the cache folder's name carries a digest of the CPU's feature flags, and a shared home
directory on a mixed cluster never hands one machine another's instructions. When the build cannot happen (no
compiler, no ninja) `load_extension` returns None after one log line, and callers fall back to the pure-PyTorch
scan.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import time
from importlib import resources
from pathlib import Path
from types import ModuleType

log = logging.getLogger(__name__)

SOURCE = "selective_scan.cpp"
CFLAGS = ["-O3", "-march=native", "-ffast-math", "-fopenmp", "-std=c++17"]
if platform.machine().lower() in ("x86_64", "amd64"):
    CFLAGS.append("-mprefer-vector-width=512")  # where AVX-512 exists, gcc otherwise stops at 256-bit vectors
LDFLAGS = ["-fopenmp"]

_state: dict[str, object] = {}  # "module": the loaded module, or "error": why it could not be built


def cache_root() -> Path:
    """Where builds are cached: $TORCH_EXTENSIONS_DIR, else ~/.cache/motionlab/torch_extensions."""
    if os.environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(os.environ["TORCH_EXTENSIONS_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "motionlab" / "torch_extensions"


def _cpu_tag() -> str:
    """A short digest of the CPU model and features: builds made with -march=native are only valid there."""
    text = platform.machine() + platform.processor()
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        text += "".join(sorted({ln for ln in lines if ln.startswith(("flags", "model name", "Features"))}))
    except OSError:
        pass
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def source_path() -> Path:
    return Path(str(resources.files("motionlab.models.ssm") / "csrc" / SOURCE))


def _build(verbose: bool) -> ModuleType:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler: '{cxx}' (from $CXX, default c++) is not on PATH")
    if shutil.which("ninja") is None:
        try:
            import ninja  # noqa: F401  (the pip package puts the binary next to the interpreter)
        except ImportError:
            raise RuntimeError("ninja is not installed (pip install ninja)") from None
    from torch.utils.cpp_extension import load

    name = f"motionlab_selective_scan_{_cpu_tag()}"
    build_dir = cache_root() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    module = load(name=name, sources=[str(source_path())], extra_cflags=CFLAGS, extra_ldflags=LDFLAGS,
                  build_directory=str(build_dir), verbose=verbose)
    log.debug("selective scan extension ready in %.1f s (%s)", time.perf_counter() - t, build_dir)
    return module


def load_extension(verbose: bool = False) -> ModuleType | None:
    """The compiled scan, built on the first call of a process (a second when cached, 25 to 30 s cold on 2 cores).

    Returns None, after logging why once, when it cannot be built; `extension_error()` then says why.
    """
    if "module" in _state:
        return _state["module"]  # type: ignore[return-value]
    if "error" in _state:
        return None
    try:
        _state["module"] = _build(verbose)
        return _state["module"]  # type: ignore[return-value]
    except Exception as exc:  # any build failure means: use the slower path, and say so once
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        _state["error"] = first
        log.warning("motionlab: the compiled CPU selective scan is unavailable (%s); using the slower pure-PyTorch "
                    "scan. Install g++ and ninja to build it, or set MOTIONLAB_SSM_BACKEND=torch to choose the "
                    "PyTorch scan explicitly.", first)
        return None


def extension_error() -> str | None:
    """Why the extension could not be built in this process, or None (built, or not tried yet)."""
    err = _state.get("error")
    return str(err) if err is not None else None
