"""``asccl study``: the blinded user study (create, invite, serve, report)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


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


def add_study(commands: argparse._SubParsersAction) -> None:
    """``asccl study ACTION``."""
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
        help="clips drawn per emotion, among those both methods have; create prints, per "
        "emotion, what was drawn and the clips left out (default: %(default)s)",
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
