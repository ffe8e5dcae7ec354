"""What each mode is asked to do: one frozen dataclass per mode, built and checked once.

`tf_biggan.main` builds a mode's request from the command line (`from_values`: each field from the
flag of the same name, a nested `Launch` from the launch flags) after its REQUIRED / EXACTLY_ONE /
EXCLUSIVE tables have checked which flags are given; the main job (`job/stages.py`) builds the
same requests for its stages. A mode is a function `run(hp, request)` (tf_biggan/modes.py): it
reads its request's fields and checks none of them again.

A request checks its own values on construction (the same bounds the flags declare, `RANGES` and
`CHOICES`, plus the rules that tie two fields together), so one built in Python is as sound as one
from the command line; which flags a mode needs is main.py's business.

Field defaults are the flags' defaults (tests/test_requests.py checks it), with one deliberate
exception: `PrepareDataRequest.num_shards` is None (sized from the images) unless --num_shards is
typed, whose default (1024) is synthesize's.

TensorFlow-free: main.py builds and checks a request in about a second, before TensorFlow starts.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

from tf_biggan.errors import UserError

# flag / field name -> (lowest, highest) allowed value (None = unbounded); main.py gives absl the
# same bounds, so the command line and a request built in Python refuse the same values.
RANGES: Dict[str, Tuple[Optional[float], Optional[float]]] = {
    "cpu_replicas": (0, None),
    "inspect_images": (0, None),
    "truncation": (0.0, None),
    "images_per_class": (1, None),
    "num_shards": (1, None),
    "jpeg_quality": (1, 100),
    "num_workers": (1, None),
    "worker_index": (0, None),
    "batch_size": (1, None),
    "validation_fraction": (0.0, 0.99),
    "resolution": (1, None),
}
# flag / field name -> the values it takes (main.py's DEFINE_enum lists).
CHOICES: Dict[str, Tuple[str, ...]] = {
    "shard_prefix": ("train", "validation"),
    # BigGAN Section 3.1's resampling; CAS A.1 footnote 5's at 2τ; the TF-Hub notebook's τ · TruncNormal(-2, 2)
    "latent_convention": ("paper_resample", "cas_resample", "hub_notebook"),
    "on_corrupt": ("skip", "fail"),
}


def flag_bounds(name: str) -> dict:
    """absl's lower_bound / upper_bound keywords for the flag `name` (RANGES)."""
    low, high = RANGES[name]
    return {key: value for key, value in (("lower_bound", low), ("upper_bound", high)) if value is not None}


def _show(number) -> str:
    return f"{number:g}" if isinstance(number, float) else str(number)  # -1.0 as -1, as typed


def _check_values(request) -> None:
    """A UserError naming the flag for a field outside RANGES / CHOICES (None = not given)."""
    for field in dataclasses.fields(request):
        value = getattr(request, field.name)
        if value is None:
            continue
        if field.name in RANGES:
            low, high = RANGES[field.name]
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"in [{_show(low)}, {_show(high)}]" if high is not None else f">= {_show(low)}"
                raise UserError(f"--{field.name}={_show(value)}: must be {bounds}")
        if field.name in CHOICES and value not in CHOICES[field.name]:
            raise UserError(f"--{field.name}={value}: use one of {', '.join(CHOICES[field.name])}")


def _check_workers(num_workers: Optional[int], worker_index: Optional[int]) -> None:
    """Synthesis hosts: shard i is written by the worker i % num_workers (synthesis/synthesize.py)."""
    if num_workers and not 0 <= (worker_index or 0) < num_workers:
        raise UserError(f"--worker_index={worker_index} must be in [0, --num_workers={num_workers})")


@dataclasses.dataclass(frozen=True)
class _Request:
    def __post_init__(self):
        _check_values(self)


@dataclasses.dataclass(frozen=True)
class Launch(_Request):
    """Where a run's tf.distribute strategy runs (training/strategy.py, paper Section 3): --tpu, or
    --cpu_replicas; a multi-worker cluster is TF_CONFIG's, read from the environment by strategy.py."""

    tpu: Optional[str] = None
    cpu_replicas: int = 0


@dataclasses.dataclass(frozen=True)
class SummaryRequest(_Request):
    """`--mode=summary`: the parameter counts of the configured G and D (the hparams say it all)."""


@dataclasses.dataclass(frozen=True)
class TrainRequest(_Request):
    """`--mode=train` (training/trainer.py): train or resume `model_dir`; `checkpoint` + `intervene`
    resume from an older checkpoint with changes (paper Appendix G.1)."""

    model_dir: str
    checkpoint: Optional[str] = None
    intervene: Optional[str] = None
    inception_path: Optional[str] = None  # the best-FID keeper's extractor (eval.best_fid_every)
    launch: Launch = Launch()

    def __post_init__(self):
        super().__post_init__()
        if self.checkpoint and not self.intervene:
            raise UserError("--mode=train --checkpoint=... resumes from an older checkpoint only as an intervention: "
                            "add --intervene=... (e.g. --intervene=g_lr=2.5e-5); without --checkpoint the run "
                            "resumes from its latest checkpoint")


@dataclasses.dataclass(frozen=True)
class InspectDataRequest(_Request):
    """`--mode=inspect_data` (data/inspect.py): a grid and counts of hp.data into `model_dir`."""

    model_dir: str
    inspect_images: Optional[int] = None  # None: data/inspect.py's default; 0: the whole split


@dataclasses.dataclass(frozen=True)
class EvalRequest(_Request):
    """`--mode=eval` (evaluation/evaluate.py): the run's EMA-G scored at one truncation. `hparams`
    (a file named) lends its eval section, `hparams_overrides`' eval.* keys go on top (runs.run_hparams)."""

    model_dir: str
    checkpoint: Optional[str] = None
    truncation: Optional[float] = None  # None: the run's eval.truncation
    seed: int = 0
    inception_path: Optional[str] = None
    hparams: Optional[str] = None
    hparams_overrides: str = ""


@dataclasses.dataclass(frozen=True)
class SweepRequest(_Request):
    """`--mode=sweep` (evaluation/evaluate.py): every threshold of eval.truncations (Table 2)."""

    model_dir: str
    checkpoint: Optional[str] = None
    seed: int = 0
    inception_path: Optional[str] = None
    hparams: Optional[str] = None
    hparams_overrides: str = ""


@dataclasses.dataclass(frozen=True)
class InterpolateRequest(_Request):
    """`--mode=interpolate` (evaluation/qualitative.py): Figures 8-9 into `output_dir` (default: the run)."""

    model_dir: str
    checkpoint: Optional[str] = None
    truncation: Optional[float] = None
    seed: int = 0
    output_dir: Optional[str] = None
    hparams: Optional[str] = None
    hparams_overrides: str = ""


@dataclasses.dataclass(frozen=True)
class NeighborsRequest(_Request):
    """`--mode=neighbors` (evaluation/qualitative.py): Figures 10-14 into `output_dir` (default: the run)."""

    model_dir: str
    checkpoint: Optional[str] = None
    truncation: Optional[float] = None
    seed: int = 0
    inception_path: Optional[str] = None
    output_dir: Optional[str] = None
    hparams: Optional[str] = None
    hparams_overrides: str = ""


@dataclasses.dataclass(frozen=True)
class MemorizationRequest(_Request):
    """`--mode=memorization` (evaluation/qualitative.py, Section 4.2): D on training vs held-out images."""

    model_dir: str
    checkpoint: Optional[str] = None
    output_dir: Optional[str] = None
    hparams: Optional[str] = None
    hparams_overrides: str = ""


@dataclasses.dataclass(frozen=True)
class ExportRequest(_Request):
    """`--mode=export` (hub/export.py): the EMA-G as a TF-Hub module in `export_dir` (default RUN/export)."""

    model_dir: str
    checkpoint: Optional[str] = None
    export_dir: Optional[str] = None
    hparams: Optional[str] = None
    hparams_overrides: str = ""


@dataclasses.dataclass(frozen=True)
class ImportHubRequest(_Request):
    """`--mode=import_hub` (hub/importer.py): an official TF-Hub BigGAN module into a new run."""

    module: str
    model_dir: str
    hparams_overrides: str = ""


@dataclasses.dataclass(frozen=True)
class SynthesizeRequest(_Request):
    """`--mode=synthesize` (synthesis/synthesize.py): ImageNet-style TFRecord shards from a run's EMA-G
    (`model_dir`, at `checkpoint`) or an exported `module`; None fields take the run's / module's value."""

    output_dir: str
    model_dir: Optional[str] = None
    module: Optional[str] = None
    checkpoint: Optional[str] = None
    truncation: Optional[float] = None
    latent_convention: Optional[str] = None
    seed: int = 0
    images_per_class: Optional[int] = None  # None: the real training set's counts
    num_shards: int = 1024
    shard_prefix: str = "train"
    jpeg_quality: int = 95
    synsets_file: Optional[str] = None
    also_write_npz: bool = False
    num_workers: Optional[int] = None  # None: from TF_CONFIG, else 1
    worker_index: Optional[int] = None
    batch_size: Optional[int] = None
    hparams: Optional[str] = None
    hparams_overrides: str = ""

    def __post_init__(self):
        super().__post_init__()
        _check_workers(self.num_workers, self.worker_index)


@dataclasses.dataclass(frozen=True)
class CasRequest(_Request):
    """`--mode=cas` (cas/train.py, Ravuri & Vinyals): a classifier trained on `train_data`, scored on the
    REAL `eval_data`."""

    model_dir: str
    train_data: str
    eval_data: str
    launch: Launch = Launch()


@dataclasses.dataclass(frozen=True)
class CasSweepRequest(_Request):
    """`--mode=cas_sweep` (cas/truncation_sweep.py): CAS over truncations of the GAN run `model_dir`."""

    model_dir: str
    eval_data: Optional[str] = None
    train_data: Optional[str] = None
    inception_path: Optional[str] = None
    launch: Launch = Launch()


@dataclasses.dataclass(frozen=True)
class PrepareDataRequest(_Request):
    """`--mode=prepare_data` (data/image_folder.py): a folder of images into TFRecord shards."""

    image_dir: str
    output_dir: str
    validation_fraction: float = 0.0
    resolution: Optional[int] = None
    on_corrupt: str = "skip"
    seed: int = 0
    jpeg_quality: int = 95
    num_shards: Optional[int] = None  # None: sized from the images (module docstring)


@dataclasses.dataclass(frozen=True)
class RealStatsRequest(_Request):
    """`--mode=real_stats` (evaluation/real_stats.py): the run's real-data statistics, computed once
    into its cache (eval.stats_cache_dir, else MODEL_DIR/eval_cache), .npz files into `output_dir`."""

    model_dir: str
    inception_path: Optional[str] = None
    output_dir: Optional[str] = None
    hparams: Optional[str] = None
    hparams_overrides: str = ""


@dataclasses.dataclass(frozen=True)
class AllRequest(_Request):
    """`--mode=all` (job/stages.py): the main job. Each stage's request takes the fields of this one
    that it shares by name (the job sets the rest: the run, paths, the sweep's truncation)."""

    model_dir: Optional[str] = None  # None: a fresh folder under runs/
    cas_hparams: Optional[str] = None
    hparams_overrides: str = ""  # its cas.* keys apply to the CAS protocol
    train_data: Optional[str] = None
    eval_data: Optional[str] = None
    inception_path: Optional[str] = None
    seed: int = 0
    latent_convention: Optional[str] = None
    images_per_class: Optional[int] = None
    jpeg_quality: int = 95
    synsets_file: Optional[str] = None
    also_write_npz: bool = False
    num_workers: Optional[int] = None
    worker_index: Optional[int] = None
    batch_size: Optional[int] = None
    launch: Launch = Launch()

    def __post_init__(self):
        super().__post_init__()
        _check_workers(self.num_workers, self.worker_index)


def from_values(kind: type, values: Mapping[str, Any]):
    """A `kind` request whose fields are the entries of `values` of the same names (a field it lacks
    keeps its default); a nested request (`launch`) is built from the same values."""
    given = {}
    for field in dataclasses.fields(kind):
        if field.name in values:
            given[field.name] = values[field.name]
        elif dataclasses.is_dataclass(field.default):
            given[field.name] = from_values(type(field.default), values)
    return kind(**given)


def shared_values(request) -> Dict[str, Any]:
    """name -> value of each field of `request` (a nested request as itself): what `from_values`
    takes to build another mode's request from this one."""
    return {field.name: getattr(request, field.name) for field in dataclasses.fields(request)}


def launch_of(request) -> Optional[Launch]:
    """The request's Launch when its mode runs under the launch's strategy, else None."""
    return next((value for value in shared_values(request).values() if isinstance(value, Launch)), None)
