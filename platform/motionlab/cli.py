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

DEFAULT_VIDEOS = 96  # the tiny M4 run over-fits 24 videos (eval loss rose after a quarter of its steps)


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
    from motionlab.config import load_any_config, show_config

    print(show_config(load_any_config(args.config, preset=args.preset, overrides=args.overrides)))
    return 0


def cmd_synth_penn(args: argparse.Namespace) -> int:
    from motionlab.datasets.synth_penn import synth_penn_action

    ids = synth_penn_action(Path(args.out), videos=args.videos, labels=Path(args.labels) if args.labels else None,
                            seed=args.seed)
    print(f"wrote {len(ids)} videos to {args.out}")
    return 0


def cmd_synth_kit(args: argparse.Namespace) -> int:
    from motionlab.datasets.synth_kit import synth_kit_ml

    ids = synth_kit_ml(Path(args.out), motions=args.motions, seed=args.seed, mocap=args.mocap)
    extra = " (with the pybullet motion-capture clips)" if args.mocap else ""
    print(f"wrote {len(ids)} motions{extra} to {args.out} in the KIT-ML layout")
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


def _complete_with(manifest: Path, data_fingerprint: str) -> bool:
    meta = json.loads(manifest.read_text())
    return meta.get("status") == "complete" and str(meta.get("fingerprint", "")).startswith(data_fingerprint + "-")


def prepared_data(args: argparse.Namespace, workspace: Workspace, cfg):
    """The dataset a training reads: --data, or the workspace's tokens for this config, prepared first if absent."""
    from motionlab.training.data import PreparedData

    if args.data:
        return PreparedData.open(Path(args.data), cfg)
    out = _tokens_dir(workspace, cfg)
    manifest = out / "manifest.json"
    if not manifest.is_file():
        # another preset with the same data section (tiny and smoke) already made these tokens
        same = [m.parent for m in sorted(workspace.tokens.glob("*/manifest.json"))
                if _complete_with(m, cfg.fingerprint("data"))]
        if same:
            print(f"using {same[0]}: prepared with the same data settings")
            return PreparedData.open(same[0], cfg)
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
    # with the dashboard: Train's placement-group cleaner polls the State API and warns every second without it
    init_ray(num_cpus=args.num_cpus, include_dashboard=True)
    data = prepared_data(args, workspace, cfg)
    settings = TrainSettings(run_name=args.run_name, max_failures=args.max_failures, samples=args.samples,
                             evaluate=not args.no_eval)
    outcome = fit(cfg, data, workspace, settings)
    print(f"run {outcome.run_name} finished at step {outcome.metrics.get('step')}: MLflow run {outcome.run_id} "
          f"in {workspace.mlflow_uri}; checkpoint {outcome.checkpoint}")
    print(ui_hint(workspace))
    return 0


MOTION_CONFIGS = {"MotionSSM": "motion", "PhysicsSSM": "physics"}


def cmd_train_motion(args: argparse.Namespace) -> int:
    from motionlab.config import load_motion_config
    from motionlab.raycluster import init_ray
    from motionlab.training.motion_data import MotionData, default_motion_root
    from motionlab.training.motion_runner import MotionTrainSettings, fit_motion

    workspace = Workspace.resolve(args.workspace).ensure()
    overrides = list(args.overrides)
    if args.model:  # --model picks the model and, unless --config says otherwise, its config
        overrides.insert(0, f"model_kind={args.model}")
    cfg = load_motion_config(args.config or MOTION_CONFIGS[args.model or "MotionSSM"], preset=args.preset,
                             overrides=overrides)
    # the data is read on the driver (a wrong --data fails before Ray starts) and shipped to the workers
    data = MotionData.open(Path(args.data) if args.data else default_motion_root(workspace, cfg), cfg)
    init_ray(num_cpus=args.num_cpus, include_dashboard=True)
    settings = MotionTrainSettings(run_name=args.run_name, max_failures=args.max_failures, evaluate=not args.no_eval)
    outcome = fit_motion(cfg, data, workspace, settings)
    print(f"run {outcome.run_name} finished at step {outcome.metrics.get('step')}: MLflow run {outcome.run_id} "
          f"in {workspace.mlflow_uri}; checkpoint {outcome.checkpoint}")
    print(ui_hint(workspace))
    return 0


def ui_hint(workspace: Workspace) -> str:
    return (f"open the runs: `make ui` (or `mlflow server --host 127.0.0.1 --port 5000 --backend-store-uri "
            f"{workspace.mlflow_uri}`), then http://127.0.0.1:5000/#/experiments?workflowType=machine_learning "
            "(the 'Model training' view)")


def cmd_generate(args: argparse.Namespace) -> int:
    from motionlab.generation.runs import generate_for_run

    workspace = Workspace.resolve(args.workspace)
    paths = generate_for_run(workspace.mlflow_uri, args.run, samples=args.samples)
    print(f"logged {len(paths)} GIFs to run {args.run} (artifacts gifs/)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """One HTML page comparing the experiment's variants, sweeps and samples; opens anywhere (all embedded)."""
    from motionlab.tracking.report import ReportError, write_report

    workspace = Workspace.resolve(args.workspace)
    out = Path(args.out) if args.out else workspace.root / "reports" / f"{args.experiment}.html"
    try:
        print(write_report(workspace.mlflow_uri, out, experiment=args.experiment))
    except ReportError as err:
        print(f"motionlab: error: {err}", file=sys.stderr)
        return 2
    return 0


SMOKE_SAMPLES = 4  # trials of the smoke sweep: within 10 minutes on 2 cores
DEFAULT_SAMPLES = 8


def cmd_sweep_alphas(args: argparse.Namespace) -> int:
    from motionlab.raycluster import init_ray
    from motionlab.tuning.space import SearchSpace
    from motionlab.tuning.sweep import SweepSettings, run_sweep

    workspace = Workspace.resolve(args.workspace).ensure()
    args.config = args.config or args.variant
    cfg = _config(args)
    if args.data:
        prepared_data(args, workspace, cfg)
    # Tune stops Train runs early; Train cleans their placement groups up through the dashboard's State API
    init_ray(num_cpus=args.num_cpus, include_dashboard=True)
    data = prepared_data(args, workspace, cfg)
    samples = args.num_samples or (SMOKE_SAMPLES if cfg.preset == "smoke" else DEFAULT_SAMPLES)
    space = SearchSpace(alpha_range=tuple(args.alpha_range),
                        lr_range=tuple(args.lr_range) if args.lr_range else None)
    settings = SweepSettings(name=args.name, num_samples=samples, max_concurrent=args.max_concurrent,
                             seed=args.seed, search=args.search, scheduler=args.scheduler, space=space,
                             resume=args.resume, start_points=() if args.no_base_trial else None,
                             launch=args.launch)
    outcome = run_sweep(cfg, data, workspace, settings)
    print(f"sweep {outcome.name}: {outcome.trials} trials ({outcome.errored} failed), best eval/loss "
          f"{outcome.best_loss:.4f}; best config {outcome.best_config}; MLflow parent run {outcome.parent_run_id}")
    print(ui_hint(workspace))
    return 0


SMOKE_PHYSICS_SAMPLES = 3  # trials of the PhysicsSSM smoke sweep: a few minutes on 2 cores


def cmd_sweep_physics(args: argparse.Namespace) -> int:
    """PhysicsSSM's lambda_physics and lr, ranked by eval/mse + w x eval/physics_total (one w for every trial)."""
    from motionlab.config import load_motion_config
    from motionlab.raycluster import init_ray
    from motionlab.training.motion_data import MotionData, default_motion_root
    from motionlab.tuning.space import PhysicsSpace
    from motionlab.tuning.sweep import SweepSettings, run_sweep
    from motionlab.tuning.tasks import MotionTask, Objective

    workspace = Workspace.resolve(args.workspace).ensure()
    cfg = load_motion_config(args.config, preset=args.preset, overrides=args.overrides)
    if cfg.model_kind != "PhysicsSSM":
        print(f"motionlab: error: {cfg.source}: model_kind is {cfg.model_kind}, which has no lambda_physics to sweep; "
              "use --config physics or model_kind=PhysicsSSM", file=sys.stderr)
        return 2
    # the data is read on the driver (a wrong --data fails before Ray starts); each trial reopens the folder
    data = MotionData.open(Path(args.data) if args.data else default_motion_root(workspace, cfg), cfg)
    init_ray(num_cpus=args.num_cpus, include_dashboard=True)
    samples = args.num_samples or (SMOKE_PHYSICS_SAMPLES if cfg.preset == "smoke" else DEFAULT_SAMPLES)
    space = PhysicsSpace(lambda_range=tuple(args.lambda_range),
                         lr_range=tuple(args.lr_range) if args.lr_range else None)
    settings = SweepSettings(name=args.name, num_samples=samples, max_concurrent=args.max_concurrent,
                             seed=args.seed, search=args.search, scheduler=args.scheduler, space=space,
                             resume=args.resume, start_points=() if args.no_base_trial else None,
                             launch=args.launch)
    task = MotionTask(Objective() if args.objective_weight is None else Objective(weight=args.objective_weight))
    outcome = run_sweep(cfg, data, workspace, settings, task)
    print(f"sweep {outcome.name}: {outcome.trials} trials ({outcome.errored} failed), best {outcome.metric} "
          f"{outcome.best_loss:.4f} ({task.objective.describe()}); best config {outcome.best_config}; "
          f"MLflow parent run {outcome.parent_run_id}")
    print(ui_hint(workspace))
    return 0


def _add_search_args(p: argparse.ArgumentParser) -> None:
    """What every sweep asks: its name, resume, trials, searcher and scheduler."""
    p.add_argument("--resume", action="store_true", help="continue the sweep of this --name where it stopped")
    p.add_argument("--max-concurrent", type=int, default=1, help="trials at once")
    p.add_argument("--seed", type=int, default=0, help="seed of the Optuna sampler")
    p.add_argument("--search", choices=["tpe", "random"], default="tpe")
    p.add_argument("--scheduler", choices=["asha", "fifo"], default="asha")
    p.add_argument("--lr-range", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="default: a decade either side of the config's lr")
    p.add_argument("--no-base-trial", action="store_true",
                   help="let the searcher pick every trial (default: the first trial is the base config's own values)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (ignored on a cluster)")
    p.add_argument("--launch", choices=["auto", "process", "trainer"], default="auto",
                   help="where a trial trains: auto (in its own Tune process when the config has one worker, else "
                        "a TorchTrainer per trial), process, or trainer")


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded default: generated data -> M4-tiny tokens -> a tiny M4 training with its
    evaluation and GIFs -> the smoke sweep of M4's alphas and lr -> the comparison report."""
    from motionlab.raycluster import init_ray

    # one Ray for every step, with the dashboard the sweep's early stopping needs
    init_ray(include_dashboard=True)
    # the commands' own defaults, so the demo never drifts from what users run
    steps = (["train", "multimodal", "--config", "m4", "--preset", "tiny"],
             ["sweep", "alphas", "--variant", "m4", "--preset", "smoke"],
             ["report"])
    for argv in steps:
        print(f"== motionlab {' '.join(argv)}")
        step = build_parser().parse_args(argv)
        step.workspace = args.workspace
        rc = step.func(step)
        if rc:
            return rc
    print(ui_hint(Workspace.resolve(args.workspace)))
    return 0


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
    show.add_argument("config", help="config stem (m1..m4, motion, physics) or path")
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
    kit = synth.add_parser("kit-ml", help="procedural 21-joint motions and captions in the KIT-ML layout")
    kit.add_argument("--out", required=True)
    kit.add_argument("--motions", type=int, default=64, help="procedural motions")
    kit.add_argument("--mocap", action="store_true", help="add the 15 motion-capture clips shipped with pybullet")
    kit.add_argument("--seed", type=int, default=0)
    kit.set_defaults(func=cmd_synth_kit)

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

    mo = train.add_parser("motion", help="train MotionSSM or PhysicsSSM on Ray Train, tracked in MLflow")
    mo.add_argument("--model", choices=sorted(MOTION_CONFIGS), default=None,
                    help="the model (default: the config's model_kind; MotionSSM without --config)")
    mo.add_argument("--config", default=None,
                    help="config stem or path (default: motion for MotionSSM, physics for PhysicsSSM)")
    mo.add_argument("--preset", default=None, help="named preset inside the config, e.g. tiny or smoke")
    mo.add_argument("overrides", nargs="*", help="key=value overrides, e.g. epochs=50 lambda_physics=0.2")
    mo.add_argument("--data", default=None,
                    help="a KIT-ML/HumanML3D-layout folder (default: <workspace>/data/kit_ml, generated when absent)")
    mo.add_argument("--run-name", default=None,
                    help="name of the run (default: model plus time); an existing name resumes that run")
    mo.add_argument("--max-failures", type=int, default=2, help="worker-group restarts from the last checkpoint")
    mo.add_argument("--no-eval", action="store_true",
                    help="skip the test-split evaluation (metrics, table, PyBullet playback, GIFs)")
    mo.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (ignored on a cluster)")
    mo.set_defaults(func=cmd_train_motion)

    gen = sub.add_parser("generate", help="MaskGIT roll-outs of a trained run, logged to it as GIFs")
    gen.add_argument("--run", required=True, help="MLflow run id of a finished training")
    gen.add_argument("--samples", type=int, default=8)
    gen.set_defaults(func=cmd_generate)

    rep = sub.add_parser("report", help="write one self-contained HTML page comparing an experiment's runs")
    rep.add_argument("--experiment", default="multimodal", help="MLflow experiment name")
    rep.add_argument("--out", default=None, help="HTML file (default: <workspace>/reports/<experiment>.html)")
    rep.set_defaults(func=cmd_report)

    sweep = sub.add_parser("sweep", help="hyperparameter sweeps with Ray Tune and Optuna").add_subparsers(
        dest="what", required=True)
    sa = sweep.add_parser("alphas", help="Dirichlet alphas and learning rate of a 4M variant")
    sa.add_argument("--variant", default="m4", help="base config: m1..m4 (or --config PATH)")
    sa.add_argument("--config", default=None, help="config stem or path (overrides --variant)")
    sa.add_argument("--preset", default=None, help="e.g. tiny, or smoke (a sweep that ends within minutes)")
    sa.add_argument("overrides", nargs="*", help="key=value overrides of the base config")
    sa.add_argument("--data", default=None, help="prepared tokens (default: the workspace's, prepared first)")
    sa.add_argument("--name", default=None, help="sweep name (default: sweep-<variant>-<time>)")
    sa.add_argument("--num-samples", type=int, default=None,
                    help=f"trials (default {DEFAULT_SAMPLES}; {SMOKE_SAMPLES} with --preset smoke)")
    sa.add_argument("--alpha-range", type=float, nargs=2, default=[0.1, 10.0], metavar=("LOW", "HIGH"))
    _add_search_args(sa)
    sa.set_defaults(func=cmd_sweep_alphas)

    sp = sweep.add_parser("physics", help="lambda_physics and learning rate of PhysicsSSM (MLflow experiment motion)")
    sp.add_argument("--config", default="physics", help="config stem or path (default: physics)")
    sp.add_argument("--preset", default=None, help="e.g. tiny, or smoke (a sweep that ends within minutes)")
    sp.add_argument("overrides", nargs="*", help="key=value overrides of the base config")
    sp.add_argument("--data", default=None,
                    help="a KIT-ML/HumanML3D-layout folder (default: <workspace>/data/kit_ml, generated when absent)")
    sp.add_argument("--name", default=None, help="sweep name (default: sweep-PhysicsSSM-<time>)")
    sp.add_argument("--num-samples", type=int, default=None,
                    help=f"trials (default {DEFAULT_SAMPLES}; {SMOKE_PHYSICS_SAMPLES} with --preset smoke)")
    sp.add_argument("--lambda-range", type=float, nargs=2, default=[1e-3, 10.0], metavar=("LOW", "HIGH"),
                    help="log-uniform range of lambda_physics")
    sp.add_argument("--objective-weight", type=float, default=None, metavar="W",
                    help="rank trials by eval/objective = eval/mse + W x eval/physics_total "
                         "(default: motionlab.tuning.tasks.DEFAULT_OBJECTIVE_WEIGHT, 1)")
    _add_search_args(sp)
    sp.set_defaults(func=cmd_sweep_physics)

    demo = sub.add_parser("demo", help="generate data, prepare tokens, train a tiny M4, a smoke sweep, the report")
    demo.set_defaults(func=cmd_demo)
    return parser


def _workspace_first(argv: list[str]) -> list[str]:
    """`--workspace DIR` is accepted anywhere (entry scripts put their own arguments first)."""
    for i, arg in enumerate(argv):
        if arg == "--workspace" and i + 1 < len(argv):
            return [arg, argv[i + 1], *argv[:i], *argv[i + 2 :]]
        if arg.startswith("--workspace="):
            return [arg, *argv[:i], *argv[i + 1 :]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    from motionlab.config import ConfigError
    from motionlab.datasets.motion import MotionDataError
    from motionlab.datasets.penn_action import PennActionError

    parser = build_parser()
    args, extra = parser.parse_known_args(_workspace_first(list(sys.argv[1:] if argv is None else argv)))
    # argparse cannot take positionals after options; key=value overrides may stand anywhere.
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except (ConfigError, PennActionError, MotionDataError) as err:
        print(f"motionlab: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
