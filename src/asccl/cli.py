"""The ``asccl`` command line: the only module that parses arguments.

Each sub-command takes ``--config FILE.toml`` and ``--key value`` overrides of its typed
config, then calls a plain function.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from asccl._version import __version__


def _demo(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.demo import DemoConfig, run_demo

    run_demo(load_config(DemoConfig, args.config, overrides))
    return 0


def _data(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.data import prepare

    config = load_config(prepare.DataConfig, args.config, overrides)
    run = {
        "index": lambda: [prepare.run_index(config)],
        "pairs": lambda: [prepare.run_pairs(config)],
        "crops": lambda: [prepare.run_crops(config)],
        "prepare": lambda: prepare.run_prepare(config),
    }[args.data_command]
    summaries = run()
    for summary in summaries:
        print(summary.report())
    # Items that failed: the summary above lists them; the last line is the first one's file.
    errors = [line for line in (s.error_line() for s in summaries) if line]
    if errors:
        print(f"asccl: error: {errors[0]}", file=sys.stderr)
    return 1 if errors else 0


def _data_pack(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.data.config import DataConfig
    from asccl.data.frame_pack import run_pack

    summary = run_pack(load_config(DataConfig, args.config, overrides))
    print(summary.report())
    error = summary.error_line()
    if error:
        print(f"asccl: error: {error}", file=sys.stderr)
    return 1 if error else 0


def _data_synth(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.data.synth import SynthConfig, run_synth

    summary = run_synth(load_config(SynthConfig, args.config, overrides))
    print(summary.report())
    error = summary.error_line()
    if error:
        print(f"asccl: error: {error}", file=sys.stderr)
    return 1 if error else 0


def _train_metric(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    import logging

    from asccl.config import load_config
    from asccl.training.config import TrainConfig
    from asccl.training.train_metric import train_metric

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(TrainConfig, args.config, overrides)
    path = train_metric(config)
    print(
        f"metric checkpoint: {path}\ntraining log: {config.out / 'log.csv'}\n"
        f"curves: {config.out / 'curves.png'}"
    )
    return 0


def _evaluate(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.evaluation.config import EvalConfig
    from asccl.evaluation.runner import run_evaluation

    config = load_config(EvalConfig, args.config, overrides)
    outputs = run_evaluation(config)
    import json
    import os

    if os.environ.get("RANK", "0") != "0":  # torchrun: process 0 reports
        return 0

    summary = json.loads(outputs["summary"].read_text())
    print(outputs["report"].read_text(), end="")
    for name, path in outputs.items():
        print(f"{name}: {path}")
    if not summary["comparable"]:
        print(f"asccl: error: nothing comparable in {config.results}: no metric has a value of "
              "every method over the same clips of any emotion (report.txt says why)",
              file=sys.stderr)  # fmt: skip
    skipped = summary["skipped"]
    reasons = ", ".join(f"{reason}: {n}" for reason, n in skipped.items())
    print(f"skipped clips: {len(summary['failures'])}" + (f" ({reasons})" if reasons else ""))
    return 0 if summary["comparable"] else 1


def _spfem_train(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    import logging

    from asccl.config import load_config
    from asccl.spfem.train import SPFEMTrainConfig, train_spfem

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = load_config(SPFEMTrainConfig, args.config, overrides)
    path = train_spfem(config)
    print(
        f"generator checkpoint: {path}\ntraining log: {config.out / 'log.csv'}\n"
        f"curves: {config.out / 'curves.png'}\nsample grids: {config.out / 'samples'}"
    )
    return 0


def _experiment(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    import logging

    from asccl.config import load_config
    from asccl.spfem.experiment import ExperimentConfig, run_experiment

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    config = load_config(ExperimentConfig, args.config, overrides)
    outputs = run_experiment(config)
    if "comparison_md" in outputs:
        print(outputs["comparison_md"].read_text(), end="")
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return 0


def _groundtruth(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    import logging

    from asccl.config import load_config
    from asccl.groundtruth import GroundTruthConfig, run_groundtruth

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    run_groundtruth(load_config(GroundTruthConfig, args.config, overrides))
    return 0


def _study(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.study import commands as study
    from asccl.study.config import StudyConfig

    flags = {"raters": "n", "allowed_origins": "allow_origin"}  # the flag of each setting
    given = {
        key: getattr(args, flags.get(key, key))
        for key in StudyConfig.__dataclass_fields__
        # each action has its own; an option left out keeps StudyConfig's default
        if not isinstance(getattr(args, flags.get(key, key), None), (type(None), _StudyDefault))
    }
    try:
        study.run(args.study_command, StudyConfig(**given))
    except (ValueError, OSError) as exc:  # StudyError is a ValueError; OSErrors name the file
        print(f"asccl: error: {exc}", file=sys.stderr)
        return 2
    return 0


class _CommandParser(argparse.ArgumentParser):
    """A command's parser; ``config="module:Class"``: its ``--help`` ends with the keys of
    that config class (type, default, description), imported only when help is shown."""

    def __init__(self, *args, config: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.config = config

    def format_help(self) -> str:
        text = super().format_help()
        if self.config is None:
            return text
        import importlib

        from asccl.config_keys import describe_keys

        module, name = self.config.split(":")
        keys = describe_keys(getattr(importlib.import_module(module), name))
        return (
            f"{text}\nconfig keys: set in the --config file as key = value (a.b as b in its "
            "[a] table),\nor on the command line as --key value, --a.b value (dashes or "
            f"underscores):\n{keys}\n"
        )


class _StudyDefault:
    """A study option's default: :class:`~asccl.study.config.StudyConfig`'s, looked up only
    when a help shows it (building the parser imports no asccl module); an option left
    out is left to StudyConfig."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __str__(self) -> str:
        from asccl.study.config import StudyConfig

        value = getattr(StudyConfig(), self.key)
        return " ".join(value) if isinstance(value, tuple) else str(value)


class _StudyDefaults:
    def __getattr__(self, key: str) -> _StudyDefault:
        return _StudyDefault(key)


class _OneLineParser(argparse.ArgumentParser):
    """A sub-parser whose usage errors are one line, ``asccl: error: <action>: <problem>``."""

    def error(self, message: str):
        self.exit(2, f"asccl: error: {self.prog.removeprefix('asccl ')}: {message}\n")


def _number(kind: type, low: float, high: float | None = None):
    """An argparse type: ``kind`` (int or float) in ``[low, high]``, else a one-line error."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not (low <= value and (high is None or value <= high)):  # NaN fails too
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {text!r}")
        return value

    return parse


def _face3d_convert_flame(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.spfem.face3d import convert_flame

    print(f"wrote {convert_flame(args.source, args.output)}")
    return 0


def _metric_info(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.metric.checkpoint import describe_metric

    print(describe_metric(args.checkpoint))  # every check: config, keys, shapes, finite values
    return 0


def _metric_convert(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.metric import load_metric, save_metric

    # --channel-order given: it wins; else the file's own (the authors' .pth: bgr)
    order = {"channel_order": args.channel_order} if args.channel_order else {}
    metric = load_metric(args.source, authors_compat=args.authors_compat, **order)
    path = save_metric(metric, args.output)
    config = metric.config
    arithmetic = "asccl's" if config.authors_differences() else "the authors'"
    print(
        f"wrote {path} ({config.backbone}, channel order {config.channel_order}, "
        f"{arithmetic} loss arithmetic)"
    )
    return 0


def _metric_export(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.metric.export import README_FILE, WEIGHTS_FILE, export_metric

    module = export_metric(args.checkpoint, args.out)
    folder = module.parent
    print(f"wrote {module}, {folder / WEIGHTS_FILE} and {folder / README_FILE}")
    return 0


def _weights_check(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.weights_check import check_weights, report

    given = {name: getattr(args, name) for name in _WEIGHTS_FLAGS}
    results = check_weights(given, args.config)
    print(report(results))
    return 1 if any(r.status in ("wrong", "missing") for r in results) else 0


#: ``asccl weights check``'s path flags: name -> help (names match asccl.weights_check)
_WEIGHTS_FLAGS = {
    "arcface": "insightface arcface_torch backbone.pth (else $ASCCL_ARCFACE_WEIGHTS)",
    "syncnet": "syncnet_python's syncnet_v2.model (else $ASCCL_SYNCNET_WEIGHTS)",
    "inception": "pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
    "(else $ASCCL_INCEPTION_WEIGHTS)",
    "metric": "an ASCCL metric checkpoint (.safetensors, or the authors' .pth)",
    "dlib": "dlib's shape_predictor_68_face_landmarks.dat (else the face-recognition-models "
    "wheel's copy)",
    "fan": "folder of face_alignment's S3FD + 2DFAN-4 weights (else $ASCCL_FAN_WEIGHTS)",
    "flame": "FLAME generic_model.pkl or the converted .npz",
    "bfm": "Deep3DFaceRecon's BFM_model_front.mat",
}


def _metric_evaluate(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from asccl.config import load_config
    from asccl.metric.health import MetricEvalConfig, evaluate_metric

    outputs = evaluate_metric(load_config(MetricEvalConfig, args.config, overrides))
    print(outputs["table_md"].read_text(), end="")
    for name, path in outputs.items():
        print(f"{name}: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asccl",
        description="ASCCL: spatial coherent correlation metric and loss for SPFEM.",
    )
    parser.add_argument("--version", action="version", version=f"asccl {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_CommandParser
    )

    demo = commands.add_parser(
        "demo",
        help="run the pipeline (as far as it exists) on bundled data",
        description="Run the demo. Extra --key value options override the config, nested "
        "ones too: --out runs/x --train.max-steps 10 --experiment.ganmut.steps 50.",
        config="asccl.demo:DemoConfig",
    )
    demo.add_argument(
        "--config",
        default="configs/demo.toml",
        help="TOML config (default: configs/demo.toml, which reads configs/metric/demo.toml "
        "and configs/experiments/demo.toml)",
    )
    demo.set_defaults(handler=_demo, takes_overrides=True)

    data = commands.add_parser(
        "data",
        help="stage 1: index clips, DTW frame pairs, face crops",
        description="Stage 1 of the pipeline. Extra --key value options override the config "
        "(e.g. --root /data/MEAD --out runs/mead --shard 0/8 --workers 16; --preset authors: "
        "the authors' clip pairs).",
    )
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    for action, text in (
        ("index", "list clips (speaker, emotion, level, sentence, paths, fps, frames)"),
        ("pairs", "align neutral/emotional clip pairs by DTW on audio"),
        ("crops", "detect landmarks and store face crops per clip"),
        ("prepare", "index, pairs and crops in turn"),
    ):
        sub = data_commands.add_parser(
            action, help=text, description=text, config="asccl.data.config:DataConfig"
        )
        sub.add_argument("--config", help="TOML config, e.g. configs/data/mead.toml")
        sub.set_defaults(handler=_data, takes_overrides=True)
    text = "write a synthetic MEAD (procedural speakers and speech) with SPFEM ground truth"
    synth = data_commands.add_parser(
        "synth", help=text, description=text + ". Extra --key value options set it, e.g. "
        "--out runs/synth --speakers 3 --sentences 3 --seed 0 --size 256 --duration 3",
        config="asccl.data.synth.config:SynthConfig",
    )  # fmt: skip
    synth.add_argument("--config", help="TOML config (keys of SynthConfig)")
    synth.set_defaults(handler=_data_synth, takes_overrides=True)
    text = "pack the JPEG crop stores into crops.pack/ for random access (training reads it)"
    pack = data_commands.add_parser(
        "pack", help=text, description=text + ". Extra --key value options override the "
        "config (its out and crop_format are used), e.g. --out runs/mead",
        config="asccl.data.config:DataConfig",
    )  # fmt: skip
    pack.add_argument("--config", help="TOML config, e.g. configs/data/mead.toml")
    pack.set_defaults(handler=_data_pack, takes_overrides=True)

    train = commands.add_parser(
        "train-metric",
        help="stage 2: train the ASCCL metric on paired crops",
        description="Train (or resume) the metric. Extra --key value options override the "
        "config, e.g. --data runs/mead --arcface-weights backbone.pth --metric.backbone "
        "iresnet50. Under torchrun it trains with DDP.",
        config="asccl.training.config:TrainConfig",
    )
    train.add_argument("--config", help="TOML config, e.g. configs/metric/seed.toml")
    train.set_defaults(handler=_train_metric, takes_overrides=True)

    evaluate = commands.add_parser(
        "evaluate",
        help="FID/FAD, CSIM, LSE-D/LSE-C of a results folder -> tables, plots",
        description="Evaluate a results folder (<method>/<setting>/<emotion>/<clip>). Extra "
        "--key value options override the config, e.g. --results runs/dsm --arcface-weights "
        "backbone.pth --syncnet-weights syncnet_v2.model --max-frames-per-clip 64.",
        config="asccl.evaluation.config:EvalConfig",
    )
    evaluate.add_argument("--config", help="TOML config, e.g. configs/eval/demo.toml")
    evaluate.set_defaults(handler=_evaluate, takes_overrides=True)

    spfem = commands.add_parser("spfem", help="stage 3: reference SPFEM generators")
    spfem_commands = spfem.add_subparsers(dest="spfem_command", required=True, metavar="ACTION")
    spfem_train = spfem_commands.add_parser(
        "train",
        help="train (or resume) a GANmut- or ICface-style generator, optionally with ASCCL",
        description="Train a reference generator on stage-1 crops. Extra --key value options "
        "override the config, e.g. --model ganmut --asccl-weight 1 --asccl-checkpoint "
        "metric.safetensors --data runs/mead --out runs/ganmut_asccl. Under torchrun each "
        "process trains on its share of the batch and gradients are averaged.",
        config="asccl.spfem.config:SPFEMTrainConfig",
    )
    spfem_train.add_argument("--config", help="TOML config, e.g. configs/spfem/ganmut_demo.toml")
    spfem_train.set_defaults(handler=_spfem_train, takes_overrides=True)

    experiment = commands.add_parser(
        "experiment",
        help="baseline vs +ASCCL: train both, generate test results, evaluate, compare",
        description="Train each model with and without ASCCL (same seed and budget), write "
        "the test set's results, evaluate them and compare. Extra --key value options "
        "override the config, nested ones too, e.g. --metric runs/demo/metric/metric.safetensors "
        "--ganmut.steps 500 --eval.device cuda (or --ganmut configs/spfem/ganmut.toml).",
        config="asccl.spfem.experiment:ExperimentConfig",
    )
    experiment.add_argument("--config", help="TOML config, e.g. configs/experiments/demo.toml")
    experiment.set_defaults(handler=_experiment, takes_overrides=True)

    groundtruth = commands.add_parser(
        "groundtruth",
        help="the ground-truth SPFEM benchmark: synth data -> metric -> experiment over seeds",
        description="asccl data synth, data prepare, train-metric, metric evaluate, then "
        "asccl experiment over its seeds with the synthetic ground truth framed into the "
        "results (mouth/face landmark error, PSNR, SSIM columns); resumable. Nested keys "
        "override, e.g. --experiment.seeds '[0]' --train.max-steps 20.",
        config="asccl.groundtruth:GroundTruthConfig",
    )
    groundtruth.add_argument(
        "--config", help="TOML config, e.g. configs/experiments/groundtruth.toml"
    )
    groundtruth.set_defaults(handler=_groundtruth, takes_overrides=True)

    study = commands.add_parser(
        "study",
        help="blinded forced-choice user study: create, invite, serve, report",
        description="A web user study: raters compare two methods' results side by side. "
        "Needs the study extra: pip install 'asccl[study]'.",
    )
    study_commands = study.add_subparsers(
        dest="study_command", required=True, metavar="ACTION", parser_class=_OneLineParser
    )
    default = _StudyDefaults()  # StudyConfig's, read only when a help shows them
    study_file = "the study's definition file; its database, secrets and media sit beside it "
    study_file += "(default: %(default)s)"
    study_create = study_commands.add_parser(
        "create", help="draw the study's items from a results folder -> study.toml + database"
    )
    study_create.add_argument(
        "--results", required=True, help="results folder (<method>/<setting>/<emotion>/<clip>)"
    )
    study_create.add_argument(
        "--study", default=default.study, help="definition to write (default: %(default)s)"
    )
    study_create.add_argument(
        "--methods",
        nargs="+",
        default=default.methods,
        metavar="METHOD",
        help="the two method folders compared, baseline then ours (default: %(default)s: "
        "the ICface pair of `asccl experiment`/`asccl demo` "
        "results, in the settings inter_id and cross_id; GANmut's pair, ganmut "
        "ganmut_asccl, is in the setting single)",
    )
    study_create.add_argument(
        "--setting", default=default.setting, help="setting folder compared (default: %(default)s)"
    )
    study_create.add_argument(
        "--items-per-emotion",
        type=_number(int, 1),
        default=default.items_per_emotion,
        help="clips drawn per emotion (default: %(default)s)",
    )
    study_create.add_argument(
        "--seed",
        type=int,
        default=default.seed,
        help="seed of the item draw (default: %(default)s)",
    )
    study_create.add_argument(
        "--attention-checks",
        type=_number(int, 0),
        default=default.attention_checks,
        help="attention-check items (the neutral source vs the emotional reference: a careful "
        "rater picks the reference); raters failing them are left out of the report "
        "(default: %(default)s)",
    )
    study_invite = study_commands.add_parser("invite", help="make rater tokens, print links")
    study_invite.add_argument("--study", default=default.study, help=study_file)
    study_invite.add_argument(
        "-n",
        type=_number(int, 1, 10_000),
        default=default.raters,
        help="number of raters (default: %(default)s)",
    )
    study_invite.add_argument(
        "--base-url",
        default=default.base_url,
        help="public address of the server (default: %(default)s)",
    )
    study_serve = study_commands.add_parser("serve", help="serve the study (uvicorn)")
    study_serve.add_argument("--study", default=default.study, help=study_file)
    study_serve.add_argument(
        "--host", default=default.host, help="bind address (default: %(default)s, loopback)"
    )
    study_serve.add_argument(
        "--port",
        type=_number(int, 1, 65535),
        default=default.port,
        help="port (default: %(default)s)",
    )
    study_serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        help="public origin of a TLS reverse proxy in front, e.g. https://study.example.org",
    )
    study_report = study_commands.add_parser(
        "report", help="tables (MD/CSV/LaTeX), statistics, agreement, charts from the votes"
    )
    study_report.add_argument("--study", default=default.study, help=study_file)
    study_report.add_argument("--db", help="a study database instead of --study's")
    study_report.add_argument("--out", help="output folder (default: report/ beside it)")
    study_report.add_argument(
        "--min-pass",
        type=_number(float, 0.0, 1.0),
        default=1.0,
        help="share of attention checks a rater must pass",
    )
    for sub in (study_create, study_invite, study_serve, study_report):
        sub.set_defaults(handler=_study)

    face3d = commands.add_parser(
        "face3d", help="3DMM route: FLAME/BFM models for NED stage 1 and DSM"
    )
    face3d_commands = face3d.add_subparsers(dest="face3d_command", required=True, metavar="ACTION")
    convert_flame = face3d_commands.add_parser(
        "convert-flame",
        help="FLAME generic_model.pkl -> .npz (restricted unpickler: no code from the file runs)",
    )
    convert_flame.add_argument("source", help="FLAME's generic_model.pkl (flame.is.tue.mpg.de)")
    convert_flame.add_argument("output", help="output .npz path")
    convert_flame.set_defaults(handler=_face3d_convert_flame)

    metric = commands.add_parser("metric", help="inspect and convert metric checkpoints")
    metric_commands = metric.add_subparsers(dest="metric_command", required=True, metavar="ACTION")
    info = metric_commands.add_parser(
        "info", help="print a checkpoint's every setting (config, input, version)"
    )
    info.add_argument("checkpoint")
    info.set_defaults(handler=_metric_info)
    convert = metric_commands.add_parser(
        "convert", help="convert the authors' .pth checkpoint to an asccl .safetensors file"
    )
    convert.add_argument("source", help="the authors' checkpoint (resnet50.* / mlp.* keys)")
    convert.add_argument("output", help="output .safetensors path")
    convert.add_argument(
        "--channel-order",
        choices=("rgb", "bgr"),
        default=None,
        help="channel order the checkpoint was trained on (default: an asccl file's own; "
        "the authors' .pth: bgr)",
    )
    convert.add_argument(
        "--authors-compat",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="store the authors' loss arithmetic (their anchor window, adaptive weighting) "
        "in the header, so the file gives their loss with no flags at load (default: the "
        "source's own; the authors' .pth: theirs). --no-authors-compat: asccl's arithmetic",
    )
    convert.set_defaults(handler=_metric_convert)
    export = metric_commands.add_parser(
        "export",
        help="write the loss as one plain-PyTorch file + .npz weights for old environments "
        "(Python >= 3.8, PyTorch >= 1.7; no asccl needed)",
    )
    export.add_argument("checkpoint", help="metric checkpoint (.safetensors, or the authors' .pth)")
    export.add_argument("out", help="output folder: asccl_loss_standalone.py, weights, README.txt")
    export.set_defaults(handler=_metric_export)
    health = metric_commands.add_parser(
        "evaluate",
        help="a metric's health on held-out speakers: cosine gap, DTW-partner retrieval, "
        "vs its untrained init and pixel L2 -> table + PNG",
        description="Evaluate a trained metric on the held-out speakers of its data. Extra "
        "--key value options override the config, e.g. --checkpoint runs/metric/"
        "metric.safetensors --data runs/mead --val-speakers '[\"W021\"]' --max-pairs 50 "
        "--arcface-weights backbone.pth.",
        config="asccl.metric.health:MetricEvalConfig",
    )
    health.add_argument("--config", help="TOML config, e.g. configs/metric/health_demo.toml")
    health.set_defaults(handler=_metric_evaluate, takes_overrides=True)

    weights = commands.add_parser(
        "weights", help="check the pretrained files asccl reads (docs/weights.md)"
    )
    weights_commands = weights.add_subparsers(
        dest="weights_command", required=True, metavar="ACTION"
    )
    weights_check = weights_commands.add_parser(
        "check",
        help="verify each pretrained file found through flags, environment variables or a "
        "config: ok / wrong (checksum or layout) / missing, with where to get it",
        description="Verify the pretrained files asccl reads. Paths come from the flags "
        "below, else the ASCCL_*_WEIGHTS environment variables, else keys of --config "
        "(arcface_weights, syncnet_weights, inception_weights, asccl_checkpoint, metric, "
        "in any table). Exits 1 if a file is wrong or missing. Nothing is downloaded.",
    )
    weights_check.add_argument(
        "--config", help="a TOML config whose weights keys to check, e.g. configs/eval/demo.toml"
    )
    for name, text in _WEIGHTS_FLAGS.items():
        weights_check.add_argument(f"--{name}", metavar="PATH", help=text)
    weights_check.set_defaults(handler=_weights_check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``asccl`` command."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # --help ends here: torch is not imported

    from asccl.config import ConfigError
    from asccl.data.errors import DataError
    from asccl.io import CheckpointError
    from asccl.spfem.face3d.errors import Face3DModelError
    from asccl.weights import MissingWeightsError

    if extra and not getattr(args, "takes_overrides", False):
        parser.error(f"unrecognised arguments: {' '.join(extra)}")
    try:
        return args.handler(args, extra)
    except (ConfigError, CheckpointError, MissingWeightsError, DataError, Face3DModelError) as exc:
        _close_progress_bars()  # else the error line is glued to a half-drawn bar
        print(f"asccl: error: {exc}", file=sys.stderr)
        return 2


def _close_progress_bars() -> None:
    """Close the tqdm bars an exception left open, so that what follows starts a line."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
