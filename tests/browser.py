"""Headless Chromium for tests that check what a user would see: the MLflow UI and the HTML report.

Debian's `chromium` is the browser; a fresh machine may lack it, so `ensure_chromium` installs it the way the
project's test set-up does (`apt-get install -y chromium`, as root). The flags switch off everything that
phones home (component updates, sync, QUIC, background fetches): on a closed network those calls only hang.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "apt-get update && apt-get install -y chromium"
VIRTUAL_TIME_MS = 15000  # virtual time: timers and fetches settle, but the wall clock does not wait for it
WINDOW = (1400, 1000)  # pixels: wide enough for the MLflow runs table
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def ensure_chromium(timeout: float = 600) -> Path:
    """The browser binary, installed with apt when absent (needs root); raises with the install line otherwise."""
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"{CHROMIUM} is missing; install it as root: {INSTALL}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["bash", "-c", INSTALL], env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not CHROMIUM.exists():
        raise RuntimeError(f"`{INSTALL}` failed ({done.returncode}): {done.stderr[-2000:]}")
    return CHROMIUM


def _run(args: list[str], url: str, budget_ms: int, timeout: float) -> subprocess.CompletedProcess[str]:
    # A fresh profile per call: a shared one is locked by the previous process and leaks state between tests.
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [str(ensure_chromium()), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
               f"--window-size={WINDOW[0]},{WINDOW[1]}", *args, url]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, start_new_session=True)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode} on {url}: {done.stderr[-2000:]}")
    return done


def dump_dom(url: str, budget_ms: int = VIRTUAL_TIME_MS, timeout: float = 120, png: Path | None = None) -> str:
    """The DOM after scripts ran for `budget_ms` of virtual time (a React app has fetched and rendered by then);
    with `png`, a screenshot of the same load too (one page load: the MLflow UI takes many seconds on 2 CPUs)."""
    args = ["--dump-dom"]
    if png is not None:
        png = Path(png)
        png.parent.mkdir(parents=True, exist_ok=True)
        args.append(f"--screenshot={png}")
    dom = _run(args, url, budget_ms, timeout).stdout
    if png is not None and not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot of {url} to {png}")
    return dom


def screenshot(url: str, png: Path, budget_ms: int = VIRTUAL_TIME_MS, timeout: float = 120) -> Path:
    """A PNG of the page as a user would see it in a WINDOW-sized window."""
    dump_dom(url, budget_ms, timeout, png=png)
    return Path(png)
