"""``asccl weights check``: the pretrained files asccl reads."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


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


def add_weights(commands: argparse._SubParsersAction) -> None:
    """``asccl weights ACTION``."""
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
        "below, else keys of --config (arcface_weights, syncnet_weights, inception_weights, "
        "asccl_checkpoint, metric, in any table), else the ASCCL_*_WEIGHTS environment "
        "variables: the order asccl's commands use. Exits 1 if a file is wrong or missing. "
        "Nothing is downloaded.",
    )
    weights_check.add_argument(
        "--config", help="a TOML config whose weights keys to check, e.g. configs/eval/demo.toml"
    )
    for name, text in _WEIGHTS_FLAGS.items():
        # --arcface-weights ...: the spelling train-metric and evaluate use, accepted too
        alias = [f"--{name}-weights"] if name in ("arcface", "syncnet", "inception") else []
        weights_check.add_argument(f"--{name}", *alias, dest=name, metavar="PATH", help=text)
    weights_check.set_defaults(handler=_weights_check)
