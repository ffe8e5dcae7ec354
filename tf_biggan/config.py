"""Typed hyper-parameters: YAML files in `hparams/` validated into dataclasses.

A configuration has four sections, `model`, `train`, `data` and `eval`. Every key is
declared below with its type; an unknown key, a key of the wrong type or a value out of
range is a `HParamsError` that names the file and the key and says what would be valid.
Command-line overrides use the same names: `--hparams_overrides model.ch=64,train.disc_steps=1`.

The resolved configuration (file + overrides + defaults) is written beside each run as
`hparams.yaml` (`save_hparams`), so a run can always be reproduced and resumed.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tempfile
import typing
from dataclasses import dataclass, field
from typing import Literal, Optional

import yaml

from tf_biggan.errors import UserError

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
HPARAMS_DIR = os.path.join(os.path.dirname(PACKAGE_DIR), "hparams")
DEFAULT_HPARAMS = os.path.join(HPARAMS_DIR, "digits.yaml")


class HParamsError(UserError, ValueError):
    """A configuration problem, worded for the person who wrote the file or flag."""


@dataclass
class ModelConfig:
    """G and D architecture (paper Section 3, Appendix B, Tables 1 and 4-9)."""

    # "biggan" (Tables 4-6, Figure 15) or "biggan_deep" (Tables 7-9, Figure 16).
    family: Literal["biggan", "biggan_deep"] = "biggan"
    resolution: int = 128
    # Channel width multiplier `ch` of Table 1 (96 for BigGAN row 8, 128 for BigGAN-deep).
    ch: int = 96
    # Size of z: 120 / 140 / 160 for BigGAN at 128 / 256 / 512 (20-d chunks), 128 for BigGAN-deep.
    dim_z: int = 120
    # Size of the shared class embedding (Appendix B: 128).
    shared_dim: int = 128
    # Table 1 ablation switches.
    shared_embedding: bool = True
    skip_z: bool = True
    # β of the modified orthogonal regulariser, Eq. (3); 0 turns it off.
    ortho_reg: float = 1e-4
    # Resolution of the non-local block in G / D; None = where the paper's table puts it, 0 = none.
    g_attention_resolution: Optional[int] = None
    d_attention_resolution: Optional[int] = None
    # Appendix C: ε raised from 1e-8 to 1e-4 in BatchNorm and Spectral Norm.
    bn_epsilon: float = 1e-4
    sn_epsilon: float = 1e-4
    # Decay of the BN moving statistics G keeps while training (used at sampling until standing
    # statistics replace them, Appendix C.1).
    bn_moving_decay: float = 0.9
    # BigGAN-deep only: the official TF-Hub modules end in a 3x3 conv ch -> ch sliced to RGB,
    # where Table 7 says ch -> 3. False follows the paper.
    hub_output_conv: bool = False
    # "float32", or "mixed_bfloat16" (bf16 compute, float32 variables: the TPU path).
    dtype: Literal["float32", "mixed_bfloat16"] = "float32"

    def validate(self, where: str) -> None:
        from tf_biggan.models.arch import check_model_config  # avoids an import cycle

        _require(self.ch >= 1, where, "model.ch", f"must be >= 1, got {self.ch}")
        _require(self.dim_z >= 1, where, "model.dim_z", f"must be >= 1, got {self.dim_z}")
        _require(self.shared_dim >= 1, where, "model.shared_dim", f"must be >= 1, got {self.shared_dim}")
        _require(self.ortho_reg >= 0, where, "model.ortho_reg", f"must be >= 0, got {self.ortho_reg}")
        _require(self.bn_epsilon > 0, where, "model.bn_epsilon", "must be > 0")
        _require(self.sn_epsilon > 0, where, "model.sn_epsilon", "must be > 0")
        _require(0 <= self.bn_moving_decay < 1, where, "model.bn_moving_decay", "must be in [0, 1)")
        problem = check_model_config(self)
        if problem:
            key, message = problem
            raise HParamsError(f"{where}: {key}: {message}")


@dataclass
class TrainConfig:
    """Optimisation (paper Section 3, Appendix C)."""

    batch_size: int = 2048  # global batch, over all replicas
    g_lr: float = 5e-5
    d_lr: float = 2e-4
    beta1: float = 0.0
    beta2: float = 0.999
    adam_epsilon: float = 1e-8
    disc_steps: int = 2  # D updates per G update, each on a fresh real batch
    loss: Literal["hinge"] = "hinge"
    ema_decay: float = 0.9999
    ema_start_step: int = 0
    train_steps: int = 250000
    steps_per_loop: int = 1
    save_every: int = 1000
    log_every: int = 100
    sv_every: int = 1000  # σ0-σ2 of every weight (Appendix F)
    sample_every: int = 1000
    seed: int = 0
    # Checkpoints kept by the CheckpointManager (older ones are deleted).
    keep_checkpoints: int = 5
    # The input position is part of the checkpoint through the step: the input stream is a seeded,
    # deterministic function of its position (step x disc_steps batches per pipeline), so a resumed
    # run fast-forwards it and replays the same batches. tf.distribute's DistributedIterator itself
    # cannot be checkpointed. Fast-forwarding reads the skipped data, cheap for the embedded digits;
    # for ImageNet-size runs set false: resume then starts a fresh pass reseeded by the step.
    replay_input: bool = True
    # Columns of the PNG grid of EMA-G samples (rows are classes, at most 10).
    sample_columns: int = 8
    # Compile each replica's training step with XLA (tf.function(jit_compile=True); not in the paper,
    # whose TPU steps are always XLA-compiled). Same numerics to float rounding; off by default on
    # CPU/GPU (benchmarks/bench_memory_speed.py measures what it gives on a machine).
    jit_compile: bool = False

    def validate(self, where: str) -> None:
        for key in ("batch_size", "disc_steps", "train_steps", "steps_per_loop", "save_every",
                    "log_every", "sv_every", "sample_every", "keep_checkpoints", "sample_columns"):
            value = getattr(self, key)
            _require(value >= 1, where, f"train.{key}", f"must be >= 1, got {value}")
        _require(self.g_lr > 0 and self.d_lr > 0, where, "train.g_lr/d_lr", "learning rates must be > 0")
        _require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, where, "train.beta1/beta2", "must be in [0, 1)")
        _require(0 <= self.ema_decay < 1, where, "train.ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        _require(self.ema_start_step >= 0, where, "train.ema_start_step", "must be >= 0")


@dataclass
class DataConfig:
    """Where real images come from (paper Appendix C: crop the long edge, area resize)."""

    kind: Literal["digits", "tfrecord", "tfds"] = "digits"
    num_classes: int = 1000
    pattern: str = ""  # file glob of TFRecords (kind: tfrecord), local or gs://
    name: str = ""  # TFDS dataset name (kind: tfds)
    split: str = "train"
    data_dir: str = ""
    random_flip: bool = False  # off in the paper
    cache: bool = False  # cache decoded + resized images (small datasets)
    on_corrupt: Literal["fail", "skip"] = "fail"
    multi_label: bool = False  # a label list per image: sample one uniformly per read (JFT)
    shuffle_buffer: int = 10000
    seed: int = 0

    def validate(self, where: str) -> None:
        # data.pattern / data.name are checked by the reader, when data is actually read, so that
        # published configurations load for `--mode=summary` without a dataset.
        _require(self.num_classes >= 1, where, "data.num_classes", f"must be >= 1, got {self.num_classes}")
        _require(self.shuffle_buffer >= 1, where, "data.shuffle_buffer", "must be >= 1")


@dataclass
class EvalConfig:
    """Sampling and evaluation (Appendix C.1 standing statistics; Section 3.1 truncation; Table 2)."""

    standing_stats_passes: int = 100
    standing_stats_batch: int = 256
    num_samples: int = 50000
    truncations: typing.Tuple[float, ...] = (0.2, 0.42, 0.5, 0.8, 1.0, 1.5, 2.0, 0.0)  # 0 = untruncated
    batch_size: int = 256
    # Truncation thresholds whose standing statistics an exported module stores (plus untruncated);
    # the module interpolates between them (tf_biggan/export.py).
    export_truncations: typing.Tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0)
    # Splits of the Inception Score (Salimans et al.; the paper's Table 2 numbers use 10).
    is_splits: int = 10
    # Real data FID is measured against: "train" (the run's training data, as BigGAN-PyTorch and
    # compare_gan do for ImageNet) or "validation" (the held-out data below).
    fid_reference: Literal["train", "validation"] = "train"
    # Held-out real data: its IS picks Table 2's middle column ("IS of validation data") and D's
    # memorisation test (Section 4.2) compares against it. "" = "test" for digits, "validation"
    # for tfds; TFRecord runs name the files with validation_pattern (ImageNet: validation-*).
    validation_split: str = ""
    validation_pattern: str = ""
    # At most this many real images enter the cached real statistics (the paper's 50k).
    real_max_examples: int = 50000
    # The project's classifier (used when no --inception_path is given) is trained once per run on
    # at most this many real training images, for this many epochs, and cached in MODEL_DIR.
    classifier_max_examples: int = 20000
    classifier_epochs: int = 15
    # Where real statistics are cached ("" = MODEL_DIR/eval_cache). Point several runs at one
    # directory to share Inception statistics; keys name the dataset and the extractor.
    stats_cache_dir: str = ""
    # Periodic FID during training (tf_biggan.evaluate.BestFidKeeper): every best_fid_every steps
    # (0 = off) the EMA-G is scored with best_fid_samples samples (0 = num_samples) and the best
    # checkpoint is kept in MODEL_DIR/best_fid (the paper stops early, before collapse).
    best_fid_every: int = 0
    best_fid_samples: int = 0
    # Qualitative modes (Appendix A): interpolation steps per row (Figures 8-9), rows per grid,
    # nearest neighbours per sample (Figures 10-14), real images per split D sees (Section 4.2;
    # 0 = all).
    interpolation_steps: int = 8
    qualitative_rows: int = 6
    neighbors_k: int = 5
    memorization_max_examples: int = 10000

    def validate(self, where: str) -> None:
        for key in ("is_splits", "real_max_examples", "classifier_max_examples", "classifier_epochs",
                    "interpolation_steps", "qualitative_rows", "neighbors_k"):
            value = getattr(self, key)
            _require(value >= 1, where, f"eval.{key}", f"must be >= 1, got {value}")
        _require(self.interpolation_steps >= 2, where, "eval.interpolation_steps",
                 f"must be >= 2 (the two end points), got {self.interpolation_steps}")
        for key in ("best_fid_every", "best_fid_samples", "memorization_max_examples"):
            value = getattr(self, key)
            _require(value >= 0, where, f"eval.{key}", f"must be >= 0, got {value}")
        _require(bool(self.export_truncations) and all(t > 0 for t in self.export_truncations), where,
                 "eval.export_truncations", "must be a non-empty list of thresholds > 0")
        _require(self.standing_stats_passes >= 1, where, "eval.standing_stats_passes", "must be >= 1")
        _require(self.standing_stats_batch >= 1, where, "eval.standing_stats_batch", "must be >= 1")
        _require(self.num_samples >= 1, where, "eval.num_samples", "must be >= 1")
        _require(self.batch_size >= 1, where, "eval.batch_size", "must be >= 1")
        _require(all(t >= 0 for t in self.truncations), where, "eval.truncations", "must all be >= 0")


@dataclass
class HParams:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Where this configuration was read from (not a key of the file).
    source: str = field(default="<defaults>", compare=False, repr=False)

    def validate(self) -> "HParams":
        for section in SECTIONS:
            getattr(self, section).validate(self.source)
        return self

    def to_dict(self) -> dict:
        return {s: _plain(dataclasses.asdict(getattr(self, s))) for s in SECTIONS}


SECTIONS = ("model", "train", "data", "eval")
_SECTION_TYPES = {f.name: f.type for f in dataclasses.fields(HParams) if f.name in SECTIONS}


def _require(ok: bool, where: str, key: str, message: str) -> None:
    if not ok:
        raise HParamsError(f"{where}: {key} {message}")


def _plain(obj):
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    return obj


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is typing.Union:
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, typing.Tuple):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(value, tp, where: str, key: str):
    """Checks `value` against the declared type `tp`; ints widen to floats, nothing else converts."""
    origin = typing.get_origin(tp)
    bad = HParamsError(f"{where}: {key} must be {_type_name(tp)}, got {value!r} ({type(value).__name__})")
    if origin is typing.Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, key)
            except HParamsError:
                pass
        raise bad
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise bad
    if origin in (tuple, typing.Tuple):
        if not isinstance(value, (list, tuple)):
            raise bad
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, inner, where, f"{key}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise TypeError(f"unsupported hparams type {tp!r} for {key}")


def _section_from_dict(section: str, values: dict, base, where: str):
    cls = type(base)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(values, dict):
        raise HParamsError(f"{where}: section '{section}' must be a mapping of key: value, got {values!r}")
    updates = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{section}.{close[0]}'?)" if close else ""
            raise HParamsError(
                f"{where}: unknown key '{section}.{key}'{hint}. Valid keys in '{section}': {', '.join(names)}")
        updates[key] = _coerce(value, hints[key], where, f"{section}.{key}")
    return dataclasses.replace(base, **updates)


def hparams_from_dict(raw: dict, where: str, base: Optional[HParams] = None) -> HParams:
    """Builds validated HParams from a nested dict (as read from YAML) on top of `base`."""
    base = base or HParams()
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise HParamsError(f"{where}: expected a mapping with sections {', '.join(SECTIONS)}, got {type(raw).__name__}")
    sections = {s: getattr(base, s) for s in SECTIONS}
    for name, values in raw.items():
        if name not in SECTIONS:
            close = difflib.get_close_matches(str(name), SECTIONS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise HParamsError(f"{where}: unknown section '{name}'{hint}. Valid sections: {', '.join(SECTIONS)}")
        sections[name] = _section_from_dict(name, values or {}, sections[name], where)
    return HParams(**sections, source=where)


def parse_overrides(text: str, where: str = "--hparams_overrides") -> dict:
    """Parses `section.key=value,section.key=value` into a nested dict; values are YAML scalars.

    A list value is written in brackets: `eval.truncations=[0.5,1.0]` (commas inside brackets
    do not split pairs).
    """
    result: dict = {}
    text = (text or "").strip()
    if not text:
        return result
    pairs, depth, current = [], 0, ""
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            pairs.append(current)
            current = ""
        else:
            current += char
    pairs.append(current)
    for pair in pairs:
        pair = pair.strip()
        if not pair:
            continue
        if "=" not in pair or "." not in pair.split("=", 1)[0]:
            raise HParamsError(f"{where}: '{pair}' is not of the form section.key=value (e.g. model.ch=64)")
        dotted, value_text = pair.split("=", 1)
        section, key = dotted.strip().split(".", 1)
        try:
            value = yaml.safe_load(value_text)
        except yaml.YAMLError as exc:
            raise HParamsError(f"{where}: cannot parse the value of '{dotted}': {exc}") from None
        result.setdefault(section, {})[key] = value
    return result


def load_hparams(path: Optional[str] = None, overrides: str = "") -> HParams:
    """Reads a YAML file from `hparams/` (or any path), applies overrides and validates."""
    path = path or DEFAULT_HPARAMS
    if not os.path.exists(path):
        candidate = os.path.join(HPARAMS_DIR, path if path.endswith(".yaml") else path + ".yaml")
        if os.path.exists(candidate):
            path = candidate
        else:
            known = sorted(f for f in os.listdir(HPARAMS_DIR) if f.endswith(".yaml")) if os.path.isdir(HPARAMS_DIR) else []
            raise HParamsError(
                f"--hparams: file '{path}' does not exist. Pass a YAML path or one of: {', '.join(known)}")
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as exc:
        raise HParamsError(f"{path}: not valid YAML: {exc}") from None
    hp = hparams_from_dict(raw, path)
    if overrides:
        hp = hparams_from_dict(parse_overrides(overrides), "--hparams_overrides", base=hp)
        hp.source = f"{path} + --hparams_overrides"
    return hp.validate()


def dump_hparams(hp: HParams) -> str:
    return yaml.safe_dump(hp.to_dict(), sort_keys=False, default_flow_style=None)


def save_hparams(hp: HParams, path: str) -> None:
    """Writes the resolved configuration atomically (temp file + rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".hparams-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(dump_hparams(hp))
    os.replace(tmp, path)
