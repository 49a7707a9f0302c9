"""``asccl experiment``: baseline vs +ASCCL for the reference generators, end to end.

For each model in ``models`` (``"ganmut"``, ``"icface"``):

1. **Train** twice with :func:`asccl.spfem.train.train_spfem` and the model's training
   config (``ExperimentConfig.ganmut`` / ``.icface``), same seed, same data and same step
   budget: ``baseline`` (``asccl_weight = 0``: the metric
   is never built) and ``asccl`` (``asccl_weight = asccl_weight`` with the frozen metric
   ``metric``). The test speakers are held out of training. Each run resumes from its
   newest checkpoint, so a killed experiment picks up where it stopped; a run whose
   checkpoints were made with other settings (another seed, learning rate, metric...) is
   refused in one line naming them, before anything is written (``--resume false``
   retrains from scratch).
2. **Generate** (:mod:`asccl.spfem.results`) the test set's results in the layout ``asccl
   evaluate`` reads (:mod:`asccl.evaluation.results`): for every DTW-paired (neutral,
   emotional) clip of a test speaker, the whole neutral clip is turned, frame by frame, into
   the emotional clip's emotion. Method folders are ``<model>`` and ``<model>_asccl``;
   settings are ``single`` for GANmut (no reference input) and, for ICface, ``inter_id``
   (the reference is another sentence of the same speaker in the target emotion, NED's
   protocol: never the target clip itself) and ``cross_id`` (a clip of the target emotion by
   another speaker, another sentence first); reference frame ``i`` drives source frame ``i``
   (its last frame past its end); see :func:`asccl.spfem.results.choose_reference`. Sources
   are the neutral crops resized to the model's size with the neutral clip's audio copied in
   (LSE-D/LSE-C use it); results are silent and frame-aligned with their source. A result
   that already exists is kept only while it was made by the same weights (per method) and
   the same data, clip selection, image sizes and crop format (``results/.settings.json``);
   otherwise it is made again, and the run says how many. Each model reads the crop stores
   of its training config's ``crop_format`` (the ones it trained on) and gets results only
   for the emotions it was trained on (its ``emotions``; the run says which it leaves out).
   The models share one ``sources/`` folder, so their ``image_size`` and ``crop_format``
   must agree (checked with the config), and a metric trained on a test speaker is refused
   before anything is written (its file records its training speakers). A test clip whose
   source has a frame without a face (stage 1's ``valid`` mask) is left out, and a
   reference with one among the frames it drives is passed over
   (:func:`asccl.spfem.results.test_clips`, :func:`~asccl.spfem.results.choose_reference`).
3. **Evaluate** the results folder with :func:`asccl.evaluation.runner.run_evaluation` and
   ``ExperimentConfig.eval`` (tables per setting in the seed's Tables 1-2 layout, bar
   plots, qualitative grids like its Figures 1-4), then write ``comparison.{md,csv}``
   (:mod:`asccl.spfem.comparison`): per model and setting the average of every metric for
   the baseline and +ASCCL, the difference and which is better, whatever the numbers say.

On the demo data (``configs/experiments/demo.toml``) the evaluation models have random
weights unless real ones are given, so the numbers show the plumbing, not the method.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from asccl._lazy import lazy_names
from asccl.config import (
    ConfigError,
    is_device,
    is_int,
    is_number,
    names_field,
    path_field,
    require,
)
from asccl.data.errors import DataError
from asccl.evaluation.config import EvalConfig
from asccl.spfem.config import MODELS, SPFEMTrainConfig

if TYPE_CHECKING:
    from asccl.spfem.comparison import compare
    from asccl.spfem.results import (
        MODEL_SETTINGS,
        TestClip,
        check_results_settings,
        generate_results,
        method_name,
        results_settings,
        test_clips,
    )

#: names re-exported from the steps' modules, which load (with torch) on first access, so
#: that ``ExperimentConfig`` (``--help``, config checks) imports no torch
_LAZY = {"compare": "asccl.spfem.comparison"} | {
    name: "asccl.spfem.results"
    for name in ("MODEL_SETTINGS", "TestClip", "check_results_settings", "generate_results",
                 "method_name", "results_settings", "test_clips")
}  # fmt: skip

__all__ = [
    "MODELS",
    "MODEL_SETTINGS",
    "REFERENCE_ROWS",
    "VARIANTS",
    "ExperimentConfig",
    "TestClip",
    "check_metric_speakers",
    "check_reference_rows",
    "check_results_settings",
    "compare",
    "eval_config",
    "evaluate_results",
    "generate_results",
    "method_name",
    "results_settings",
    "run_experiment",
    "test_clips",
    "train_configs",
    "train_variants",
]

VARIANTS = ("baseline", "asccl")
#: the ground-truth tables' reference rows (``reference_rows``): the unedited input, the truth
REFERENCE_ROWS = ("source", "truth")


__getattr__, __dir__ = lazy_names(__name__, _LAZY)


@dataclass(frozen=True)
class ExperimentConfig:
    """Settings of ``asccl experiment`` (see ``configs/experiments/demo.toml``).

    ``ganmut`` and ``icface`` are the models' training configs (``[ganmut]`` tables, or a
    file: ``ganmut = "configs/spfem/ganmut_demo.toml"``), ``eval`` the evaluation's. The
    experiment sets in each run's copy what makes its two variants one experiment: ``data``,
    ``seed``, ``resume``, ``exclude_speakers`` (the test speakers), ``out``
    (``<out>/train/<method>``), ``asccl_weight`` (0 for the baseline) and
    ``asccl_checkpoint`` (``metric``); in ``eval``: ``results``, ``out`` (``<out>/eval``)
    and ``methods``. Those keys of the nested configs are not used.
    """

    data: Path = Path("runs/demo/data")  #: stage-1 output (clips.csv, pairs.csv, crops/)
    metric: Path | None = None  #: the frozen ASCCL metric (.safetensors) for the +ASCCL runs
    out: Path = Path("runs/demo/experiment")  #: train/, results/, eval/, comparison.*
    models: tuple[str, ...] = MODELS  #: the generators compared: "ganmut", "icface"
    #: training of the GANmut-style runs (its ``model`` must be "ganmut")
    ganmut: SPFEMTrainConfig = field(default_factory=lambda: SPFEMTrainConfig(model="ganmut"))
    #: training of the ICface-style runs (its ``model`` must be "icface")
    icface: SPFEMTrainConfig = field(default_factory=lambda: SPFEMTrainConfig(model="icface"))
    asccl_weight: float = 1.0  #: the +ASCCL runs' weight of the ASCCL term (baseline: 0)
    seed: int = 0  #: every run's seed (both variants of a model train from the same one)
    #: several seeds: the whole experiment once per seed under ``<out>/seed_<s>/``, then
    #: mean and spread over seeds (``<out>/seeds/``, ``comparison.*``); () = ``seed`` only
    seeds: tuple[int, ...] = ()
    #: ``asccl data synth``'s ``ground_truth/`` (``<emotion>/<speaker>_<sentence>.mp4`` +
    #: ``.landmarks.npy``): framed like the outputs into ``results/ground_truth/`` (GT metrics)
    ground_truth: Path | None = None
    #: reference rows of the ground-truth tables (needs ``ground_truth``): "source" (the
    #: input returned unchanged), "truth" (the ground truth itself); scored like the methods
    #: into ``eval/references/``, never ranked, never in ``comparison.*`` (() = none)
    reference_rows: tuple[str, ...] = ()
    test_speakers: tuple[str, ...] = ("W903",)  #: held out of training, used for results
    cross_speakers: tuple[str, ...] = ()  #: cross-ID references from these; () = any other
    max_clips_per_emotion: int = 0  #: test clips per emotion; 0 = all
    generation_batch_size: int = 16  #: frames per generator call when writing results
    device: str = "cpu"  #: where results are generated (training: each model's ``device``)
    evaluate: bool = True  #: false: train and write the results only
    eval: EvalConfig = field(default_factory=EvalConfig)  #: how the results are evaluated
    #: false: train every run from scratch (the earlier runs' checkpoints are removed)
    resume: bool = True

    def __post_init__(self) -> None:
        """One :class:`~asccl.config.ConfigError` per nonsense value, naming its key."""
        names_field(self, "models", empty=f'name one or more of {list(MODELS)}, e.g. ["ganmut"]')
        names_field(self, "test_speakers", empty='name at least one held-out speaker (results '
                    'are generated for them), e.g. ["W903"]')  # fmt: skip
        names_field(self, "cross_speakers")  # (): any other speaker
        for name in ("data", "out"):
            path_field(self, name)
        path_field(self, "metric", optional=True)
        path_field(self, "ground_truth", optional=True)
        names_field(self, "reference_rows")
        odd = [r for r in self.reference_rows if r not in REFERENCE_ROWS]
        once = len(set(self.reference_rows)) == len(self.reference_rows)
        require(not odd and once, self, "reference_rows",
                f"must name some of {list(REFERENCE_ROWS)}, each once")  # fmt: skip
        require(isinstance(self.seeds, (list, tuple)) and all(is_int(s, 0, 2**63 - 3)
                for s in self.seeds) and len(set(self.seeds)) == len(self.seeds), self,
                "seeds", "must be a list of distinct seeds in [0, 2**63 - 2) (or [])")  # fmt: skip
        object.__setattr__(self, "seeds", tuple(self.seeds))
        unknown = [m for m in self.models if m not in MODELS]
        if unknown:
            raise ConfigError(f"models: unknown {unknown}; valid: {list(MODELS)}")
        require(0 < len(self.models) == len(set(self.models)), self, "models",
                f"must name one or more of {list(MODELS)}, each once")  # fmt: skip
        for model in MODELS:
            train = getattr(self, model)
            require(isinstance(train, SPFEMTrainConfig), self, model,
                    "must be a training config (a table or a config file name)")  # fmt: skip
            if train.model != model:
                raise ConfigError(f'{model}.model must be "{model}" (the table is the {model} '
                                  f"runs' training config), got {train.model!r}")  # fmt: skip
        for key in ("image_size", "crop_format"):  # one sources/ folder serves every model
            values = {m: getattr(getattr(self, m), key) for m in self.models}
            if len(set(values.values())) > 1:
                named = " and ".join(f"{m}.{key} = {v!r}" for m, v in values.items())
                raise ConfigError(f"{named} differ: the models' results share one sources/ "
                                  f"folder (one {key}); give them the same {key}, or run "
                                  "each model in its own experiment (another out)")  # fmt: skip
        require(isinstance(self.eval, EvalConfig), self, "eval",
                "must be an evaluation config (a table or a config file name)")  # fmt: skip
        require(is_number(self.asccl_weight) and self.asccl_weight > 0, self, "asccl_weight",
                "must be a finite number > 0 (the baseline is weight 0)")  # fmt: skip
        require(is_int(self.seed, 0, 2**63 - 3), self, "seed", "must be in [0, 2**63 - 2)")
        require(is_int(self.max_clips_per_emotion, 0), self, "max_clips_per_emotion",
                "must be an integer >= 0 (0: all)")  # fmt: skip
        require(is_int(self.generation_batch_size, 1), self, "generation_batch_size",
                "must be an integer >= 1")  # fmt: skip
        require(is_device(self.device), self, "device",
                'must be "cpu", "mps", "cuda" or "cuda:N"')  # fmt: skip
        for name in ("evaluate", "resume"):
            require(isinstance(getattr(self, name), bool), self, name, "must be true or false")


# ----------------------------------------------------------------------------- 1. training


def train_configs(config: ExperimentConfig, model: str) -> dict[str, SPFEMTrainConfig]:
    """``{variant: SPFEMTrainConfig}`` of ``model``'s baseline and +ASCCL runs: its training
    config with the experiment's data, seed, held-out speakers, output folders and ASCCL
    settings (a bad combination is a ConfigError naming the model and key)."""
    from asccl.spfem.results import method_name

    if config.metric is None:
        raise ConfigError("metric is not set: the +ASCCL runs need a trained ASCCL metric "
                          "(.safetensors from `asccl train-metric`)")  # fmt: skip
    configs = {}
    for variant in VARIANTS:
        try:
            configs[variant] = replace(
                getattr(config, model),
                data=config.data,
                out=config.out / "train" / method_name(model, variant),
                seed=config.seed,
                exclude_speakers=config.test_speakers,
                asccl_weight=0.0 if variant == "baseline" else config.asccl_weight,
                asccl_checkpoint=config.metric,
                resume=config.resume,
            )
        except ConfigError as exc:
            raise ConfigError(f"{model}: {exc}") from None
    return configs


def train_variants(config: ExperimentConfig, model: str) -> dict[str, Path]:
    """Train (or resume) ``model``'s baseline and +ASCCL runs; ``{variant: checkpoint}``.
    A run whose checkpoints were made with other settings is refused (one line naming the
    keys), not resumed: rerun with ``--resume false`` or another ``--out``."""
    from asccl.spfem.results import method_name
    from asccl.spfem.train import train_spfem

    checkpoints = {}
    for variant, train in train_configs(config, model).items():
        print(f"\ntraining {method_name(model, variant)} (ASCCL weight "
              f"{train.asccl_weight:g}) -> {train.out}")  # fmt: skip
        checkpoints[variant] = train_spfem(train)
    return checkpoints


def check_reference_rows(config: ExperimentConfig) -> None:
    """Refuse ``reference_rows`` without ``ground_truth`` (one line naming the key): the
    rows are scores against the ground truth. Checked when the experiment starts, since
    ``asccl groundtruth`` sets ``ground_truth`` after reading its ``[experiment]`` table."""
    if config.reference_rows and config.ground_truth is None:
        raise ConfigError(f"reference_rows {list(config.reference_rows)} needs ground_truth "
                          "(the rows are scored against it and this experiment has none): "
                          "set ground_truth, or reference_rows = []")  # fmt: skip


def check_metric_speakers(config: ExperimentConfig) -> None:
    """Refuse (one line naming them and the file) a metric trained on a test speaker: its
    training speakers are in its header (:func:`asccl.metric.checkpoint.read_metric_speakers`;
    its validation speakers are fine). A file without that record gets one warning line."""
    from asccl.metric.checkpoint import read_metric_speakers

    if config.metric is None:
        return
    speakers = read_metric_speakers(config.metric)
    if speakers is None:
        test = ", ".join(config.test_speakers)
        print(f"warning: {config.metric} records no training speakers (written before asccl "
              "recorded them, or not by `asccl train-metric`): could not check that the test "
              f"speakers ({test}) were held out of its training")  # fmt: skip
        return
    seen = [s for s in config.test_speakers if s in speakers["train"]]
    if seen:
        raise ConfigError(f"metric {config.metric} was trained on test speaker(s) "
                          f"{', '.join(seen)} (its training speakers: "
                          f"{', '.join(speakers['train'])}): the +ASCCL results would be "
                          "scored on speakers its loss has seen; train the metric with them "
                          "in val_speakers, or choose other test_speakers")  # fmt: skip


# --------------------------------------------------------------------------- 3. evaluation


def eval_config(config: ExperimentConfig, results: Path) -> EvalConfig:
    """The :class:`~asccl.evaluation.config.EvalConfig` of ``results``: ``eval`` with the
    results folder, ``<out>/eval`` and all models' methods in table order."""
    from asccl.spfem.results import method_name

    methods = tuple(method_name(m, v) for m in config.models for v in VARIANTS)
    return replace(config.eval, results=results, out=config.out / "eval", methods=methods)


def evaluate_results(config: ExperimentConfig, results: Path) -> dict[str, Path]:
    """``asccl evaluate`` on the results folder (all models' methods, table order)."""
    from asccl.evaluation.runner import run_evaluation

    return run_evaluation(eval_config(config, results))


def run_experiment(config: ExperimentConfig) -> dict[str, Path]:
    """Train, generate, evaluate, compare; returns ``{name: path}`` of what it wrote.

    Every setting (each run's training config, the evaluation config) is checked before
    anything is written; a rerun with other settings redoes what
    they change (training refuses to resume from other settings: ``--resume false``)."""
    from asccl.config import save_config
    from asccl.spfem.comparison import compare
    from asccl.spfem.results import (
        check_results_settings,
        generate_results,
        method_name,
        model_clips,
        results_settings,
        test_clips,
    )

    check_reference_rows(config)
    if config.seeds:
        from asccl.spfem.reference_rows import write_seed_references
        from asccl.spfem.seeds import run_seeds

        paths = run_seeds(config, run_experiment)
        if config.evaluate and config.reference_rows:
            paths |= write_seed_references(config)
        return paths
    test, _ = test_clips(config)  # a bad data folder or test speaker fails before training
    if not test:
        raise DataError(config.data / "pairs.csv", "no clip pairs of the test speakers")
    for model in config.models:  # a model trained on none of the test clips' emotions
        emotions = getattr(config, model).emotions
        if not model_clips(test, getattr(config, model)):
            found = ", ".join(sorted({c.pair.emotion for c in test}))
            raise ConfigError(f"{model}.emotions {list(emotions or ())}: the test speakers "
                              f"have no clip pair in them (they have {found})")  # fmt: skip
    from asccl.spfem.train import check_resumable

    trains = {model: train_configs(config, model) for model in config.models}
    results = config.out / "results"
    if config.evaluate:
        eval_config(config, results)
    check_metric_speakers(config)
    for runs in trains.values():  # a run that cannot resume stops the experiment here
        for train in runs.values():
            check_resumable(train)
    config.out.mkdir(parents=True, exist_ok=True)
    paths = {"config": save_config(config, config.out / "config.json")}
    checkpoints = {}
    for model in config.models:
        checkpoints[model] = train_variants(config, model)
        for variant, path in checkpoints[model].items():
            paths[f"checkpoint_{method_name(model, variant)}"] = path
            log = config.out / "train" / method_name(model, variant) / "curves.png"
            if log.is_file():
                paths[f"curves_{method_name(model, variant)}"] = log
    sizes = {model: trains[model]["baseline"].image_size for model in config.models}
    formats = {model: trains[model]["baseline"].crop_format for model in config.models}
    check_results_settings(config, results_settings(config, sizes, formats))
    for model in config.models:
        results = generate_results(config, model, checkpoints[model])
    paths["results"] = results
    if not config.evaluate:
        return paths
    evaluation = evaluate_results(config, results)
    paths |= {f"eval_{k}": v for k, v in evaluation.items()}
    paths |= compare(config, evaluation["scores"])
    if config.reference_rows:  # after compare: scored apart, so never in comparison.*
        from asccl.spfem.reference_rows import write_references

        paths |= write_references(eval_config(config, results), config.reference_rows)
    return paths
