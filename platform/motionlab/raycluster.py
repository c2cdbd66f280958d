"""Connect to the user's Ray cluster, or start a small local one: the same call on a laptop and a cluster."""

from __future__ import annotations

import os
from pathlib import Path

import ray

# Loopback-only local clusters: no usage reporting, no token auth (see README "Security" for clusters).
# Train V2 patches workers' print to log through Train's logger and, when stdout is redirected (as in every Ray
# worker), tees it as well: each training log line reached the driver twice.
LOCAL_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}


def init_ray(
    num_cpus: int | None = None,
    object_store_mb: int | None = None,
    include_dashboard: bool = False,
    temp_dir: Path | None = None,
) -> bool:
    """Start or join Ray once per process; returns True when this call started a local cluster.

    With RAY_ADDRESS set (as `ray job submit` does) it joins that cluster with a plain `ray.init()`,
    since resource arguments are refused by an existing cluster.
    """
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        return False
    for key, value in LOCAL_ENV.items():
        os.environ.setdefault(key, value)
    kwargs: dict = {"num_cpus": num_cpus or os.cpu_count(), "include_dashboard": include_dashboard}
    if object_store_mb:
        kwargs["object_store_memory"] = object_store_mb * 1024 * 1024
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        kwargs["_temp_dir"] = str(temp_dir)
    # every worker learns which cluster it belongs to: Train's placement-group cleaner queries the State API
    # with address discovery, which fails when a second Ray runs on the machine, and the group then leaks
    kwargs["runtime_env"] = {"worker_process_setup_hook": "motionlab.raycluster.pin_ray_address"}
    ray.init(**kwargs)
    return True


def pin_ray_address() -> None:
    """Worker start-up hook: RAY_ADDRESS names this worker's own cluster."""
    os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)


def cluster_cpus() -> float:
    """CPUs the cluster offers now."""
    return float(ray.cluster_resources().get("CPU", 0.0))


def cluster_gpus() -> float:
    """GPUs the cluster offers now (0 on a laptop)."""
    return float(ray.cluster_resources().get("GPU", 0.0))
