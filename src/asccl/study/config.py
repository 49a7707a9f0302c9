"""``StudyConfig``: the settings of ``asccl study create | invite | serve | report``.

The study commands take plain flags (``--results``, ``-n``, ``--port``...); the CLI builds
one :class:`StudyConfig` from them and :func:`asccl.study.commands.run` runs the action.
The Python functions (:func:`~asccl.study.commands.create`, ``invite``...) check their
arguments with it too, so a bad value is the same one-line error, naming the flag, however
a command is started.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asccl.config import is_int, is_number, names_field, path_field, require

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
#: ``-n`` of ``invite`` at most (a study has tens of raters; this stops a typo's millions).
MAX_INVITES = 10_000
#: the command-line flag of each setting whose flag is not ``--<key-with-dashes>``
FLAGS = {"raters": "-n", "allowed_origins": "--allow-origin"}


@dataclass(frozen=True)
class StudyConfig:
    """Every setting of the study commands; each action reads its own (see the fields)."""

    #: the definition; its database, secrets file, media and report sit beside it
    study: Path = Path("study.toml")
    results: Path | None = None  #: create: the results folder the items are drawn from
    #: create: (baseline, ours); the default is the ICface pair that ``asccl experiment``
    #: (and ``asccl demo``) writes, in the settings inter_id and cross_id
    methods: tuple[str, str] = ("icface", "icface_asccl")
    setting: str = "inter_id"  #: create: the results setting compared
    items_per_emotion: int = 10  #: create
    seed: int = 0  #: create: seed of the item draw
    attention_checks: int = 2  #: create
    raters: int = 25  #: invite: invitation links to make
    base_url: str = DEFAULT_BASE_URL  #: invite: public address of the server
    host: str = "127.0.0.1"  #: serve: bind address (loopback)
    port: int = 8000  #: serve
    allowed_origins: tuple[str, ...] = ()  #: serve: public origins of a TLS proxy in front
    db: Path | None = None  #: report: a study database instead of ``study``'s
    out: Path | None = None  #: report: output folder (default: ``report/`` beside it)
    min_pass: float = 1.0  #: report: share of attention checks a rater must pass

    def __post_init__(self) -> None:
        """One :class:`~asccl.config.ConfigError` per nonsense value, naming its flag."""
        for key in ("study", "results", "db", "out"):
            path_field(self, key, optional=key != "study", name=_flag(key))
        names_field(self, "allowed_origins", name=_flag("allowed_origins"),
                    problem="must be origins such as https://study.example.org")  # fmt: skip
        self._require(isinstance(self.methods, (list, tuple)) and len(self.methods) == 2
                       and all(isinstance(m, str) and m for m in self.methods)
                       and self.methods[0] != self.methods[1], "methods",
                       "must be two different method folder names (BASELINE OURS)")  # fmt: skip
        object.__setattr__(self, "methods", tuple(self.methods))
        for key in ("setting", "host"):
            self._require(isinstance(getattr(self, key), str) and getattr(self, key) != "", key,
                          "must be a non-empty name")  # fmt: skip
        for key, low, high in (("items_per_emotion", 1, None), ("attention_checks", 0, None),
                               ("seed", 0, None), ("raters", 1, MAX_INVITES),
                               ("port", 1, 65535)):  # fmt: skip
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            self._require(is_int(getattr(self, key), low, high), key, f"must be {bounds}")
        self._require(isinstance(self.base_url, str)
                      and self.base_url.startswith(("http://", "https://")), "base_url",
                      "must start with http:// or https://")  # fmt: skip
        self._require(is_number(self.min_pass) and 0 <= self.min_pass <= 1, "min_pass",
                      "must be between 0.0 and 1.0")  # fmt: skip

    def _require(self, ok: bool, key: str, problem: str) -> None:
        require(ok, self, key, problem, name=_flag(key))


def _flag(key: str) -> str:
    """The command-line flag of setting ``key``: ``--items-per-emotion``, ``-n``..."""
    return FLAGS.get(key, f"--{key.replace('_', '-')}")


__all__ = ["DEFAULT_BASE_URL", "MAX_INVITES", "StudyConfig"]
