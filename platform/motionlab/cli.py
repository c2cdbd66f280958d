"""`motionlab` command: config, synth, prepare, train, generate, demo.

Every command works from nothing: what an earlier stage makes (generated data, a trained image
tokenizer) is looked for in the workspace and made first, with one line saying so.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from motionlab.workspace import Workspace

DEFAULT_VIDEOS = 24


def _config(args: argparse.Namespace):
    from motionlab.config import load_config

    return load_config(args.config, preset=args.preset, overrides=args.overrides)


def default_penn_source(workspace: Workspace, videos: int = DEFAULT_VIDEOS) -> Path:
    """The workspace's Penn Action look-alike, generated on first use."""
    from motionlab.datasets.synth_penn import synth_penn_action

    source = workspace.data / "penn_action"
    if not (source / "labels").exists():
        print(f"no Penn Action data in {source}; generating {videos} look-alike videos first")
        synth_penn_action(source, videos=videos)
    return source


def cmd_config_show(args: argparse.Namespace) -> int:
    from motionlab.config import show_config

    print(show_config(_config(args)))
    return 0


def cmd_synth_penn(args: argparse.Namespace) -> int:
    from motionlab.datasets.synth_penn import synth_penn_action

    ids = synth_penn_action(Path(args.out), videos=args.videos, labels=Path(args.labels) if args.labels else None,
                            seed=args.seed)
    print(f"wrote {len(ids)} videos to {args.out}")
    return 0


def _tokens_dir(workspace: Workspace, cfg) -> Path:
    return workspace.tokens / (cfg.name + (f"-{cfg.preset}" if cfg.preset else ""))


def cmd_prepare_penn(args: argparse.Namespace) -> int:
    from motionlab.pipelines.penn_action import PipelineSettings, prepare_penn_action
    from motionlab.raycluster import init_ray

    workspace = Workspace.resolve(args.workspace).ensure()
    cfg = _config(args)
    source = Path(args.source) if args.source else default_penn_source(workspace)
    out = Path(args.out) if args.out else _tokens_dir(workspace, cfg)
    init_ray(num_cpus=args.num_cpus)
    settings = PipelineSettings(chunk_videos=args.chunk_videos, actors=args.actors, overwrite=args.overwrite)
    prepare_penn_action(source, cfg, out, workspace, settings)
    return 0


def cmd_train_image_tokenizer(args: argparse.Namespace) -> int:
    from motionlab.datasets.penn_action import list_video_ids
    from motionlab.pipelines.image_tokenizer import fsq_dir, sample_frames
    from motionlab.tokenizers.fsq import train_fsq_tokenizer

    workspace = Workspace.resolve(args.workspace).ensure()
    cfg = _config(args)
    source = Path(args.source) if args.source else default_penn_source(workspace)
    out = Path(args.out) if args.out else fsq_dir(cfg, workspace)
    d = cfg.data
    frames = sample_frames(source, list_video_ids(source), d.image_size, args.max_frames, seed=d.seed)
    metrics = train_fsq_tokenizer(frames, out, levels=tuple(d.fsq_levels), downsample=d.image_downsample,
                                  steps=args.steps, seed=d.seed)
    print(f"image tokenizer saved to {out}: " + json.dumps({k: round(v, 4) for k, v in metrics.items()}))
    return 0


def prepared_data(args: argparse.Namespace, workspace: Workspace, cfg):
    """The dataset a training reads: --data, or the workspace's tokens for this config, prepared first if absent."""
    from motionlab.training.data import PreparedData

    if args.data:
        return PreparedData.open(Path(args.data), cfg)
    out = _tokens_dir(workspace, cfg)
    manifest = out / "manifest.json"
    if not manifest.is_file() or json.loads(manifest.read_text()).get("status") != "complete":
        print(f"no prepared {cfg.name}{'/' + cfg.preset if cfg.preset else ''} dataset in {out}; preparing it first")
        from motionlab.pipelines.penn_action import prepare_penn_action

        prepare_penn_action(default_penn_source(workspace), cfg, out, workspace)
    return PreparedData.open(out, cfg)


def cmd_train_multimodal(args: argparse.Namespace) -> int:
    from motionlab.raycluster import init_ray
    from motionlab.training.runner import TrainSettings, fit

    workspace = Workspace.resolve(args.workspace).ensure()
    cfg = _config(args)
    if args.data:  # a wrong --data fails before Ray starts
        prepared_data(args, workspace, cfg)
    init_ray(num_cpus=args.num_cpus)
    data = prepared_data(args, workspace, cfg)
    settings = TrainSettings(run_name=args.run_name, max_failures=args.max_failures, samples=args.samples,
                             evaluate=not args.no_eval)
    outcome = fit(cfg, data, workspace, settings)
    print(f"run {outcome.run_name} finished at step {outcome.metrics.get('step')}: MLflow run {outcome.run_id} "
          f"in {workspace.mlflow_uri}; checkpoint {outcome.checkpoint}")
    print(ui_hint(workspace))
    return 0


def ui_hint(workspace: Workspace) -> str:
    return (f"open the runs: `make ui` (or `mlflow server --host 127.0.0.1 --port 5000 --backend-store-uri "
            f"{workspace.mlflow_uri}`), then http://127.0.0.1:5000")


def cmd_generate(args: argparse.Namespace) -> int:
    from motionlab.generation.runs import generate_for_run

    workspace = Workspace.resolve(args.workspace)
    paths = generate_for_run(workspace.mlflow_uri, args.run, samples=args.samples)
    print(f"logged {len(paths)} GIFs to run {args.run} (artifacts gifs/)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded default: generated data -> M4-tiny tokens -> a tiny M4 training."""
    # The commands' own defaults, so the demo never drifts from what users run.
    train = build_parser().parse_args(["train", "multimodal", "--config", "m4", "--preset", "tiny"])
    train.workspace = args.workspace
    return cmd_train_multimodal(train)


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="config stem (m1..m4) or path to a YAML file")
    p.add_argument("--preset", default=None, help="named preset inside the config, e.g. tiny")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. data.image_size=128 lr=1e-3")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motionlab", description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=None,
                        help="workspace folder (default $MOTIONLAB_WORKSPACE or ./workspace)")
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="inspect experiment configs").add_subparsers(dest="action", required=True)
    show = config.add_parser("show", help="print the resolved config")
    show.add_argument("config", help="config stem (m1..m4) or path")
    show.add_argument("--preset", default=None)
    show.add_argument("overrides", nargs="*")
    show.set_defaults(func=cmd_config_show)

    synth = sub.add_parser("synth", help="write look-alike datasets").add_subparsers(dest="dataset", required=True)
    penn = synth.add_parser("penn-action", help="rendered people in the official Penn Action layout")
    penn.add_argument("--out", required=True)
    penn.add_argument("--videos", type=int, default=DEFAULT_VIDEOS)
    penn.add_argument("--labels", default=None, help="render frames from these real label files instead")
    penn.add_argument("--seed", type=int, default=0)
    penn.set_defaults(func=cmd_synth_penn)

    prepare = sub.add_parser("prepare", help="tokenise a dataset with Ray Data").add_subparsers(dest="dataset",
                                                                                             required=True)
    pp = prepare.add_parser("penn-action", help="Penn Action video -> tokenised Parquet splits")
    pp.add_argument("--source", default=None, help="Penn Action root (default: generated data in the workspace)")
    pp.add_argument("--out", default=None, help="output folder (default: <workspace>/tokens/<config>[-<preset>])")
    _add_config_args(pp)
    pp.add_argument("--chunk-videos", type=int, default=256, help="videos per resumable chunk")
    pp.add_argument("--actors", type=int, default=None, help="actor-pool size for the models (default: config)")
    pp.add_argument("--overwrite", action="store_true", help="discard tokens made with another config")
    pp.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (ignored on a cluster)")
    pp.set_defaults(func=cmd_prepare_penn)

    train = sub.add_parser("train", help="train models").add_subparsers(dest="what", required=True)
    it = train.add_parser("image-tokenizer", help="train the FSQ image tokenizer on a dataset's frames")
    it.add_argument("--source", default=None)
    it.add_argument("--out", default=None, help="default: the workspace folder the pipeline looks in")
    _add_config_args(it)
    it.add_argument("--steps", type=int, default=300)
    it.add_argument("--max-frames", type=int, default=2048)
    it.set_defaults(func=cmd_train_image_tokenizer)

    tm = train.add_parser("multimodal", help="train a 4M variant on Ray Train, tracked in MLflow")
    _add_config_args(tm)
    tm.add_argument("--data", default=None,
                    help="prepared tokens (default: the workspace's, prepared first when absent)")
    tm.add_argument("--run-name", default=None,
                    help="name of the run (default: variant plus time); an existing name resumes that run")
    tm.add_argument("--max-failures", type=int, default=2, help="worker-group restarts from the last checkpoint")
    tm.add_argument("--samples", type=int, default=8, help="generated samples logged as GIFs after training")
    tm.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation and GIFs")
    tm.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (ignored on a cluster)")
    tm.set_defaults(func=cmd_train_multimodal)

    gen = sub.add_parser("generate", help="MaskGIT roll-outs of a trained run, logged to it as GIFs")
    gen.add_argument("--run", required=True, help="MLflow run id of a finished training")
    gen.add_argument("--samples", type=int, default=8)
    gen.set_defaults(func=cmd_generate)

    demo = sub.add_parser("demo", help="generate data, prepare M4-tiny tokens, train and evaluate a tiny M4")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from motionlab.config import ConfigError
    from motionlab.datasets.penn_action import PennActionError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse cannot take positionals after options; key=value overrides may stand anywhere.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except (ConfigError, PennActionError) as err:
        print(f"motionlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
