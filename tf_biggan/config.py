"""Typed hyper-parameters: YAML files in `hparams/` validated into dataclasses.

A configuration has seven sections, `model`, `train`, `data`, `eval`, `augment` (what D sees),
`cas` (the CAS classifier) and `stability` (the paper's Section 4 knobs). Every key is
declared below with its type; an unknown key, a key of the wrong type or a value out of
range is a `HParamsError` that names the file and the key and says what would be valid.
Command-line overrides use the same names: `--hparams_overrides model.ch=64,train.disc_steps=1`.

The resolved configuration (file + overrides + defaults) is written beside each run as
`hparams.yaml` (`save_hparams`), so a run can always be reproduced and resumed.

Why this module is longer than the project's ~450-line norm: it is the ONE glossary of every
hyper-parameter, each field with its type and its source in the paper beside it; split across the
packages that use them, the glossary would be scattered and the strict loader would have to find them.
docs/configuration.md is generated from it (tf_biggan/config_doc.py): the comment above a field, or
after it on its line, is its documentation there; regenerate after a change
(`python3 -m tf_biggan.config_doc docs/configuration.md`, checked by tests/test_configuration_doc.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from typing import Literal, Optional

import yaml

from tf_biggan import paths
from tf_biggan.atomic import write_text
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
    resolution: int = 128  # image side: 16, 32, 64 (BigGAN-PyTorch's layouts) or 128, 256, 512 (Tables 4-9)
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
    # Block power iterations that set EMA-G's SN vectors to its own kernels' top singular vectors
    # before standing statistics (layers/spectral_norm.settle_spectral_norm); 0 keeps the stored u
    # (imported TF-Hub modules, whose inference arithmetic a run reproduces).
    sn_settle_iterations: int = 50
    # How spectral norm's power iteration normalises its vectors: "max", x / max(|x|, eps) (SN-GAN,
    # BigGAN-PyTorch), or "rsqrt_add", x * rsqrt(sum x^2 + eps) (the official TF-Hub modules' graph;
    # `--mode=import_hub` sets it). layers/spectral_norm.py.
    sn_normalize: Literal["max", "rsqrt_add"] = "max"
    # Rows of truncation-indexed BN statistics each G BatchNorm stores (0 = none: standing statistics
    # are computed per truncation, Appendix C.1). The official BigGAN-deep modules hold 51 (truncation
    # 0, 0.02, ..., 1.0, interpolated linearly); `--mode=import_hub` sets it. Used when sampling with
    # eval.latent_convention hub_notebook at a truncation in (0, 1] from the import's own checkpoint; once
    # the generator has trained a step, its statistics are computed (sampling/standing_stats.py).
    truncation_stats: int = 0
    # Decay of the BN moving statistics G keeps while training (used at sampling until standing
    # statistics replace them, Appendix C.1).
    bn_moving_decay: float = 0.9
    # BigGAN-deep only: the official TF-Hub modules end in a 3x3 conv ch -> ch sliced to RGB,
    # where Table 7 says ch -> 3. False follows the paper.
    hub_output_conv: bool = False
    # "float32", or "mixed_bfloat16" (bf16 compute, float32 variables: the TPU path).
    dtype: Literal["float32", "mixed_bfloat16"] = "float32"
    # Not in the paper: a memory/time trade of the non-local block (SA-GAN, Section 3). True computes
    # training-mode attention one image at a time and recomputes the map in the backward computation (same
    # values within float round-off): 0.2 GB less peak at BigGAN-128 batch 8, about 10% slower
    # (benchmarks/bench_memory_speed.py).
    attention_per_image: bool = False

    def validate(self, where: str) -> None:
        from tf_biggan.models.arch import check_model_config  # avoids an import cycle

        _require(self.ch >= 1, where, "model.ch", f"must be >= 1, got {self.ch}")
        _require(self.dim_z >= 1, where, "model.dim_z", f"must be >= 1, got {self.dim_z}")
        _require(self.shared_dim >= 1, where, "model.shared_dim", f"must be >= 1, got {self.shared_dim}")
        _require(self.ortho_reg >= 0, where, "model.ortho_reg", f"must be >= 0, got {self.ortho_reg}")
        _require(self.bn_epsilon > 0, where, "model.bn_epsilon", "must be > 0")
        _require(self.sn_epsilon > 0, where, "model.sn_epsilon", "must be > 0")
        _require(self.sn_settle_iterations >= 0, where, "model.sn_settle_iterations", "must be >= 0")
        _require(self.truncation_stats == 0 or self.truncation_stats >= 2, where, "model.truncation_stats",
                 f"must be 0 (none) or >= 2 rows, got {self.truncation_stats}")
        _require(0 <= self.bn_moving_decay < 1, where, "model.bn_moving_decay", "must be in [0, 1)")
        problem = check_model_config(self)
        if problem:
            key, message = problem
            raise HParamsError(f"{where}: {key}: {message}")


@dataclass
class TrainConfig:
    """Optimisation (paper Section 3, Appendix C)."""

    batch_size: int = 2048  # global batch, over all replicas
    g_lr: float = 5e-5  # Adam's constant learning rate of G (Appendix C: 5e-5 at 128 px)
    d_lr: float = 2e-4  # Adam's constant learning rate of D (Appendix C: 2e-4 at 128 px)
    # Adam's β1 and β2, of G and D (Appendix C: 0 and 0.999).
    beta1: float = 0.0
    beta2: float = 0.999
    adam_epsilon: float = 1e-8  # Adam's ε (Kingma & Ba's default)
    disc_steps: int = 2  # D updates per G update, each on a fresh real batch
    # Gradient accumulation (not in the paper; BigGAN-PyTorch's --num_D_accumulations /
    # --num_G_accumulations): each D / G update averages the gradients of this many micro-batches of
    # batch_size (each D micro-batch on its own fresh real batch and z), an effective batch of
    # batch_size x k (peak memory: docs/results.md). BatchNorm statistics stay per micro-batch.
    # training/step.py.
    d_accumulations: int = 1
    g_accumulations: int = 1
    loss: Literal["hinge"] = "hinge"  # the hinge loss (Section 3)
    ema_decay: float = 0.9999  # decay of the moving average of G's weights sampled from (Appendix C)
    ema_start_step: int = 0  # before this step the average is a copy of G (training/ema.py)
    train_steps: int = 250000  # G updates of the whole run (the target of a resumed run too)
    # Warm start (seed 003's transfer setting): a run directory (its latest checkpoint; a run made by
    # --mode=import_hub: its module) or a checkpoint prefix RUN/ckpt-N whose G, EMA-G and D (a module: G
    # and EMA-G, D fresh) start this run, of the same model.*; the class tables follow data.class_map, BN
    # statistics are recomputed, optimisers and step start fresh (training/warm_start.py). Read only
    # before the run's first checkpoint: a resumed run continues from its own. "" = fresh weights.
    init_from: str = ""
    steps_per_loop: int = 1  # at most this many steps per tf.function call (training/loop.py)
    save_every: int = 1000  # checkpoint every this many steps
    log_every: int = 100  # a progress line and TensorBoard scalars every this many steps
    sv_every: int = 1000  # σ0-σ2 of every weight (Appendix F)
    sample_every: int = 1000  # a PNG grid of EMA-G samples every this many steps
    seed: int = 0  # initial weights and the step's random draws (z, dropout, augmentation)
    # Checkpoints kept by the CheckpointManager (older ones are deleted).
    keep_checkpoints: int = 5
    # The input position is part of the checkpoint through the step: the input stream is a seeded,
    # deterministic function of its position (step x disc_steps x d_accumulations batches per
    # pipeline), so a resumed run fast-forwards it and replays the same batches. tf.distribute's
    # DistributedIterator itself cannot be checkpointed. Fast-forwarding reads the skipped data,
    # cheap for the embedded digits; for ImageNet-size runs set false: resume then starts a fresh
    # pass reseeded by the step.
    replay_input: bool = True
    # Columns of the PNG grid of EMA-G samples (rows are classes, at most 10).
    sample_columns: int = 8
    # Compile each replica's training step with XLA (tf.function(jit_compile=True); not in the paper,
    # whose TPU steps are always XLA-compiled). Same numerics to float rounding; off by default on
    # CPU/GPU (benchmarks/bench_memory_speed.py measures what it gives on a machine).
    jit_compile: bool = False
    # Standing statistics of the periodic sample grid (a monitoring picture, Appendix C.1's method
    # at a small budget): passes x batch latents through EMA-G under the strategy before the grid.
    # 0 passes = EMA-G's own BN statistics (copied from G). The full Appendix C.1 budget
    # (eval.standing_stats_*) stays for eval, sweep, export and synthesis.
    sample_stats_passes: int = 4
    sample_stats_batch: int = 64
    # R1 zero-centred gradient penalty γ/2 E||∇D(x)||² on real data (Section 4.2, Eq. 5; Appendix I
    # sweeps 1e-3..10, 10 = Mescheder's default). 0 = off. r1_every = k > 1: lazy, every k-th D step
    # with weight k.
    r1_gamma: float = 0.0
    r1_every: int = 1
    # Training prior of z (Appendix E), a name of sampling.latents.LATENT_DISTRIBUTIONS; "normal"
    # is the paper's main setting. Its parameters: latents_p = P(1) of the Bernoulli-based priors
    # (the paper gives none; 0.5); variance annealing σ from latents_sigma_start (2) to
    # latents_sigma_end (1) over latents_anneal_steps (0 = train_steps); per-sample variance
    # σ_i ~ U[latents_sigma_low, latents_sigma_high] (hyper-parameters in the paper).
    latents: Literal["normal", "uniform", "bernoulli", "censored_normal", "bernoulli_symmetric", "categorical",
                     "normal_times_bernoulli", "normal_bernoulli_concat", "variance_annealed",
                     "variable_variance"] = "normal"
    latents_p: float = 0.5
    latents_sigma_start: float = 2.0
    latents_sigma_end: float = 1.0
    latents_anneal_steps: int = 0
    latents_sigma_low: float = 0.5
    latents_sigma_high: float = 1.5

    def validate(self, where: str) -> None:
        for key in ("batch_size", "disc_steps", "d_accumulations", "g_accumulations", "train_steps",
                    "steps_per_loop", "save_every", "log_every", "sv_every", "sample_every", "keep_checkpoints",
                    "sample_columns", "sample_stats_batch"):
            value = getattr(self, key)
            _require(value >= 1, where, f"train.{key}", f"must be >= 1, got {value}")
        _require(self.sample_stats_passes >= 0, where, "train.sample_stats_passes",
                 f"must be >= 0 (0 = EMA-G's own statistics), got {self.sample_stats_passes}")
        _require(self.g_lr > 0 and self.d_lr > 0, where, "train.g_lr/d_lr", "learning rates must be > 0")
        _require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, where, "train.beta1/beta2", "must be in [0, 1)")
        _require(0 <= self.ema_decay < 1, where, "train.ema_decay", f"must be in [0, 1), got {self.ema_decay}")
        _require(self.ema_start_step >= 0, where, "train.ema_start_step", "must be >= 0")
        _require(self.r1_gamma >= 0, where, "train.r1_gamma", f"must be >= 0 (0 = off), got {self.r1_gamma}")
        _require(self.r1_every >= 1, where, "train.r1_every", f"must be >= 1, got {self.r1_every}")
        _require(0 <= self.latents_p <= 1, where, "train.latents_p", f"must be in [0, 1], got {self.latents_p}")
        _require(self.latents_anneal_steps >= 0, where, "train.latents_anneal_steps", "must be >= 0")
        _require(self.latents_sigma_start > 0 and self.latents_sigma_end > 0, where,
                 "train.latents_sigma_start/end", "must be > 0 (variances)")
        _require(0 <= self.latents_sigma_low <= self.latents_sigma_high, where, "train.latents_sigma_low/high",
                 f"need 0 <= low <= high, got {self.latents_sigma_low}, {self.latents_sigma_high}")


@dataclass
class StabilityConfig:
    """The stability study's knobs (Section 4, Appendices G-I); every default is off.

    R1 and the training latents live in `train` (train.r1_gamma, train.latents).
    """

    # Section 4.1: regularise σ0 of every G weight, strength x (σ0 - target)², 0 = off; or clamp σ0
    # after every G update by the partial SVD of Eq. (4). target: "fixed" = sigma_reg (Figure 21
    # regularises towards 1), "ratio" = sigma_ratio x sg(σ1) (the paper names no r).
    g_sigma0_reg: float = 0.0
    g_sigma0_clamp: bool = False
    sigma0_target: Literal["fixed", "ratio"] = "fixed"
    sigma_reg: float = 1.0
    sigma_ratio: float = 2.0
    # Subspace-iteration steps of the partial SVD (layers/conditioning.py).
    sigma_iterations: int = 10
    # Dropout on D's last feature layer, as a DROP probability (Appendix I sweeps keep 0.5-0.95;
    # Figures 25-26 keep 0.8 = 0.2 here). 0 = off.
    d_dropout: float = 0.0
    # Hinge margin (Appendix G.2: x0.5 hurt, up to x3 no change, > 3 unstable). 1 = the hinge loss.
    hinge_margin: float = 1.0
    # D's Adam β1 (Appendix I sweeps 0.1-0.5: light regularisation). None = train.beta1.
    d_beta1: Optional[float] = None
    # Weight decay λ||E||² on G's shared embedding only (Appendix H: 1e-6 hurt, 1e-8 too weak). 0 = off.
    shared_embedding_decay: float = 0.0
    # Gradient norm clipping of G and D (Appendix H): global norm and per-parameter norm; 0 = off.
    grad_clip_global: float = 0.0
    grad_clip_per_param: float = 0.0
    # Appendix G.1 interventions: stop updating G or D (set with --intervene=freeze=g|d).
    freeze: Literal["none", "g", "d"] = "none"
    # Online collapse detection (training/collapse.py documents the rule), at every sv_every step.
    detect_collapse: bool = False
    on_collapse: Literal["stop", "continue"] = "stop"
    collapse_window: int = 5
    collapse_sigma_jump: float = 2.0
    collapse_d_loss_floor: float = 0.1
    collapse_g_loss_jump: float = 1.0
    collapse_d_loss_jump: float = 1.0
    collapse_patience: int = 2
    # Checkpoints from before a detected collapse copied to MODEL_DIR/pre_collapse (never rotated).
    keep_before_collapse: int = 2

    def validate(self, where: str) -> None:
        for key in ("g_sigma0_reg", "sigma_reg", "sigma_ratio", "shared_embedding_decay", "grad_clip_global",
                    "grad_clip_per_param"):
            value = getattr(self, key)
            _require(value >= 0, where, f"stability.{key}", f"must be >= 0 (0 = off), got {value}")
        _require(0 <= self.d_dropout < 1, where, "stability.d_dropout",
                 f"is a drop probability in [0, 1), got {self.d_dropout}")
        _require(self.hinge_margin > 0, where, "stability.hinge_margin", f"must be > 0, got {self.hinge_margin}")
        _require(self.d_beta1 is None or 0 <= self.d_beta1 < 1, where, "stability.d_beta1", "must be in [0, 1)")
        for key in ("sigma_iterations", "collapse_window", "collapse_patience", "keep_before_collapse"):
            value = getattr(self, key)
            _require(value >= 1, where, f"stability.{key}", f"must be >= 1, got {value}")
        _require(self.collapse_sigma_jump > 1, where, "stability.collapse_sigma_jump", "must be > 1")


@dataclass
class DataConfig:
    """Where real images come from (paper Appendix C: crop the long edge, area resize)."""

    # digits: the embedded scikit-learn digits (no download); tfrecord: ImageNet-layout TFRecord shards
    # (data.pattern; --mode=prepare_data writes them from a folder); tfds: a prepared TFDS dataset.
    kind: Literal["digits", "tfrecord", "tfds"] = "digits"
    num_classes: int = 1000  # labels are 0 .. num_classes - 1
    pattern: str = ""  # file glob of TFRecords (kind: tfrecord), local or gs://
    name: str = ""  # TFDS dataset name (kind: tfds)
    split: str = "train"  # TFDS split expression (kind: tfds), e.g. "train[:10%]"
    data_dir: str = ""  # TFDS data directory (kind: tfds); "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
    random_flip: bool = False  # off in the paper
    cache: bool = False  # cache decoded + resized images (small datasets)
    on_corrupt: Literal["fail", "skip"] = "fail"  # a bad record stops reading (named), or is skipped and counted
    multi_label: bool = False  # a label list per image: sample one uniformly per read (JFT)
    shuffle_buffer: int = 10000  # records in the shuffle buffer
    seed: int = 0  # file order, shuffle, flips and multi-label draws (data/pipeline.py)
    # Limited data (kind: digits): at most this many training images per class, 0 = all. Seed 003
    # (ADA) studies GANs trained on small subsets; tf_biggan.augment is the remedy it proposes.
    max_per_class: int = 0
    # A subset of the classes (kind: digits): only these digits, relabelled 0..K-1 in the order listed
    # (data.num_classes = K), e.g. [5, 6, 7, 8, 9]; the held-out split is cut alike. [] = all. The
    # transfer benchmark's source and target (benchmarks/bench_transfer.py).
    classes: typing.Tuple[int, ...] = ()
    # A warm start's class embedding (a module imported by --mode=import_hub, or train.init_from): a file of
    # 'CLASS SOURCE_INDEX' lines (CLASS as in prepare_data's labels.txt, or the class id without one;
    # SOURCE_INDEX the module's ImageNet class or the source run's class); class k's rows of G's shared
    # embedding and D's projection start from the source's rows of its class, unmapped classes at the source
    # rows' mean norm (data/class_map.py, training/warm_start.py). "" = none.
    class_map: str = ""

    def validate(self, where: str) -> None:
        # data.pattern / data.name are checked by the reader, when data is actually read, so that
        # published configurations load for `--mode=summary` without a dataset.
        _require(self.num_classes >= 1, where, "data.num_classes", f"must be >= 1, got {self.num_classes}")
        _require(self.shuffle_buffer >= 1, where, "data.shuffle_buffer", "must be >= 1")
        _require(self.max_per_class >= 0, where, "data.max_per_class", f"must be >= 0 (0 = all), got {self.max_per_class}")
        if self.classes:
            _require(self.kind == "digits", where, "data.classes", "is supported for data.kind=digits only "
                     "(for TFRecords write shards of the classes you want); leave it out")
            _require(len(set(self.classes)) == len(self.classes) and min(self.classes) >= 0, where, "data.classes",
                     f"must be distinct class ids >= 0, got {list(self.classes)}")
            _require(self.num_classes == len(self.classes), where, "data.num_classes",
                     f"must be {len(self.classes)}, the number of data.classes {list(self.classes)} (relabelled "
                     f"0..{len(self.classes) - 1}), got {self.num_classes}")


@dataclass
class EvalConfig:
    """Sampling and evaluation (Appendix C.1 standing statistics; Section 3.1 truncation; Table 2)."""

    # Standing statistics (Appendix C.1): BN statistics of EMA-G averaged over this many forward passes
    # ("typically 100") of this batch of latents, computed per truncation before sampling.
    standing_stats_passes: int = 100
    standing_stats_batch: int = 256
    num_samples: int = 50000  # samples per FID / IS (the paper's 50k)
    truncations: typing.Tuple[float, ...] = (0.2, 0.42, 0.5, 0.8, 1.0, 1.5, 2.0, 0.0)  # 0 = untruncated
    # How z is drawn at a truncation (tf_biggan.sampling.latents): paper_resample (Section 3.1: resample
    # |z| > t), cas_resample (the CAS paper's: resample outside +-2t) or hub_notebook (t x truncnorm(-2, 2),
    # the official modules' convention, which `--mode=import_hub` sets).
    latent_convention: Literal["paper_resample", "cas_resample", "hub_notebook"] = "paper_resample"
    # The truncation --mode=eval, synthesize, interpolate and neighbors and the best-FID keeper use when no
    # --truncation is given: 0 = untruncated; must be > 0 with hub_notebook, where t = 0 makes z all zeros
    # (`--mode=import_hub` writes 1.0, the modules' widest truncation).
    truncation: float = 0.0
    batch_size: int = 256  # images per generator call when sampling
    # Truncation thresholds whose standing statistics an exported module stores (plus untruncated, except
    # under hub_notebook); the module interpolates between them (tf_biggan/hub/export.py). An imported
    # biggan-deep run exports the module's 51 sets instead, until it has trained.
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
    # Periodic FID during training (tf_biggan.evaluation.best_fid.BestFidKeeper): every best_fid_every steps
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
        _require(self.truncation >= 0, where, "eval.truncation", f"must be >= 0 (0 = untruncated), got {self.truncation}")
        _require(self.latent_convention != "hub_notebook" or self.truncation > 0, where, "eval.truncation",
                 "must be > 0 with eval.latent_convention hub_notebook (z = t x truncnorm is all zeros at t = 0); "
                 "an imported run's is 1.0")
        _require(self.latent_convention != "hub_notebook" or all(t > 0 for t in self.truncations), where,
                 "eval.truncations", "must all be > 0 with eval.latent_convention hub_notebook (z = t x truncnorm)")


# ------------------------------------------------------------------------------------------------
# CAS: the classifier protocol of the Classification Accuracy Score (tf_biggan/cas/).


@dataclass
class CasConfig:
    """Classification Accuracy Score protocol (Ravuri & Vinyals 2019 Appendix A; Azizi et al. 2023
    Table A.1 / A.3). The defaults are the "10-hour" v2-8 ResNet-50 setup (hparams/cas_resnet50_v2-8.yaml
    traces each value); the class count is `data.num_classes`."""

    # "resnet50" (keras.applications, A.1) or "resnet_cifar" (He et al. 2016 ResNet-(6n+2), A.2).
    arch: Literal["resnet50", "resnet_cifar"] = "resnet50"
    depth: int = 56  # resnet_cifar only: 6n + 2
    width: int = 16  # resnet_cifar only: channels of the first stage
    image_size: int = 224  # the classifier's input side (A.1: 224)
    batch_size: int = 1024  # global batch over all replicas (A.1: v2-8, batch 1,024)
    epochs: int = 90  # A.1
    # Peak learning rate reached at the end of warm-up (A.1: 0.4 = 0.1 x 1024 / 256).
    learning_rate: float = 0.4
    warmup_epochs: float = 5.0  # linear 0 -> learning_rate (A.1)
    decay_epochs: typing.Tuple[float, ...] = (30.0, 60.0, 80.0)  # x decay_factor at each (A.1)
    decay_factor: float = 0.1  # the factor of each decay (A.1)
    momentum: float = 0.9  # tensorflow/tpu resnet_main.py MOMENTUM, Nesterov
    nesterov: bool = True  # Nesterov momentum (the reference's)
    weight_decay: float = 1e-4  # Table A.1; on conv / dense kernels only (not BN, not biases)
    label_smoothing: float = 0.0  # Table A.1: none for ResNet-50 (CAS)
    # Training crop: "inception" = random distorted box (area 0.08-1, aspect 3/4-4/3) resized to
    # image_size (resnet_preprocessing.py); "pad_crop" = pad `pad` pixels, random image_size crop
    # (He et al. CIFAR); "none" = resize only.
    train_crop: Literal["inception", "pad_crop", "none"] = "inception"
    pad: int = 4
    random_flip: bool = True  # horizontal flip while training (resnet_preprocessing.py)
    # Evaluation: central crop of this fraction of the short side, resized to image_size
    # (resnet_preprocessing.py: 224 / (224 + 32)); 1.0 = the whole image.
    eval_crop_fraction: float = 0.875
    # Per-channel normalisation of [0, 1] pixels (ImageNet MEAN_RGB / STDDEV_RGB of the reference).
    mean: typing.Tuple[float, ...] = (0.485, 0.456, 0.406)
    std: typing.Tuple[float, ...] = (0.229, 0.224, 0.225)
    bn_momentum: float = 0.9  # resnet_model.py BATCH_NORM_DECAY
    bn_epsilon: float = 1e-5  # resnet_model.py BATCH_NORM_EPSILON
    # Cross-replica BN moments (keras BatchNormalization(synchronized=True)); the reference uses
    # per-replica moments (false).
    sync_bn: bool = False
    dtype: Literal["float32", "mixed_bfloat16"] = "float32"  # bf16 on TPU (A.1 reference)
    # Real + synthetic mixtures (Azizi et al. Table A.3): add this many synthetic images to the real
    # ones (class-balanced, seeded), or the number making them this fraction of the training set.
    # 0 / 0.0: every image of every --train_data source.
    synthetic_images: int = 0
    synthetic_fraction: float = 0.0
    # Per TFRecord source: records permuted together, in windows of this many after a per-epoch file
    # order (resnet_main.py: 1024 files shuffled + a record buffer); in-memory sources: fully permuted.
    shuffle_buffer: int = 10000
    eval_batch_size: int = 1024  # global batch of the evaluation
    seed: int = 0  # the classifier's initial weights, data order, crops and flips, and mixtures
    steps_per_loop: int = 50  # steps per tf.function call (reference iterations_per_loop)
    save_every: int = 1000  # checkpoint every this many steps
    log_every: int = 100  # a progress line every this many steps
    keep_checkpoints: int = 3  # checkpoints kept (older ones are deleted)
    # --mode=cas_sweep: the truncations synthesized and scored (CAS A.1 footnote 5 sweep), the
    # synthetic images per class (0 = the real training set's counts) and the "real + k synthetic"
    # mixtures of the Table A.3-like table (k, synthetic images added; needs real --train_data).
    sweep_truncations: typing.Tuple[float, ...] = (0.2, 0.42, 0.5, 0.8, 1.0, 1.5, 2.0)
    sweep_images_per_class: int = 0
    sweep_real_plus: typing.Tuple[int, ...] = ()

    def validate(self, where: str) -> None:
        for key in ("depth", "width", "image_size", "batch_size", "epochs", "eval_batch_size", "steps_per_loop",
                    "save_every", "log_every", "keep_checkpoints", "shuffle_buffer"):
            value = getattr(self, key)
            _require(value >= 1, where, f"cas.{key}", f"must be >= 1, got {value}")
        _require(self.learning_rate > 0, where, "cas.learning_rate", "must be > 0")
        _require(self.warmup_epochs >= 0, where, "cas.warmup_epochs", "must be >= 0")
        _require(list(self.decay_epochs) == sorted(self.decay_epochs), where, "cas.decay_epochs",
                 "must be increasing")
        _require(0 < self.decay_factor <= 1, where, "cas.decay_factor", "must be in (0, 1]")
        _require(0 <= self.momentum < 1, where, "cas.momentum", "must be in [0, 1)")
        _require(self.weight_decay >= 0, where, "cas.weight_decay", "must be >= 0")
        _require(0 <= self.label_smoothing < 1, where, "cas.label_smoothing", "must be in [0, 1)")
        _require(0 < self.eval_crop_fraction <= 1, where, "cas.eval_crop_fraction", "must be in (0, 1]")
        _require(len(self.mean) == 3 and len(self.std) == 3 and all(s > 0 for s in self.std), where,
                 "cas.mean/std", "must be 3 values each (RGB), std > 0")
        _require(self.synthetic_images >= 0, where, "cas.synthetic_images", "must be >= 0")
        _require(0 <= self.synthetic_fraction < 1, where, "cas.synthetic_fraction", "must be in [0, 1)")
        _require(not (self.synthetic_images and self.synthetic_fraction), where, "cas.synthetic_images",
                 "and cas.synthetic_fraction are exclusive: set one")
        _require(self.pad >= 0, where, "cas.pad", "must be >= 0")
        _require(self.sweep_images_per_class >= 0, where, "cas.sweep_images_per_class", "must be >= 0")
        _require(all(t >= 0 for t in self.sweep_truncations), where, "cas.sweep_truncations", "must be >= 0")
        _require(all(k >= 1 for k in self.sweep_real_plus), where, "cas.sweep_real_plus", "must be >= 1")


@dataclass
class AugmentConfig:
    """Augmentation of everything D sees (Karras et al. 2020 = seed 003; Zhao et al. 2020 DiffAugment).

    Off by default, as in the paper (BigGAN trains on ImageNet without it); for small datasets, where
    D memorises the training set early (Section 4.2), `kind: ada`.
    """

    # none | ada (p adapted from sign(D(real)), seed 003 Section 3) | fixed (constant p) |
    # diffaugment (Zhao et al.'s policy).
    kind: Literal["none", "ada", "fixed", "diffaugment"] = "none"
    # ADA transforms (seed 003 Section 2.3 / Appendix B): blit (x-flip, 90-degree rotations, integer
    # translation), geom (scaling, rotation, anisotropy, fractional translation), color (brightness,
    # contrast, luma flip, hue, saturation), bg = blit + geom, bgc = all three (the reference
    # default), bgcnc = bgc + additive noise + cutout.
    pipeline: Literal["blit", "geom", "color", "bg", "bgc", "bgcnc"] = "bgc"
    # kind=ada: the overfitting heuristic that moves p (seed 003 Section 3). rt: r_t = E[sign(D(real))]
    # (the paper's choice: needs no held-out data). rv: the validation heuristic r_v = (E[D(train
    # reals)] - E[D(held-out reals)]) / (E[D(train reals)] - E[D(generated)]), invariant to an offset
    # of D's outputs (which swings from step to step under the hinge loss); needs held-out reals.
    heuristic: Literal["rt", "rv"] = "rt"
    # Target of the heuristic (seed 003 Section 3: r_t target 0.6); r = 0: no overfitting, 1: complete.
    target: float = 0.6
    # p can move from 0 to 1 in this many thousand real images (seed 003: 500k).
    speed_kimg: float = 500.0
    # Steps between two updates of p (seed 003: every 4 minibatches).
    interval: int = 4
    # kind=fixed: the augmentation probability. kind=diffaugment: the probability of cutout per
    # image (Zhao et al. always cut out, which leaks: seed 003 Appendix C.4.4).
    p: float = 0.5
    # Upper bound of p (ADA and fixed). Seed 003 Appendix C.5.1: applying a finite group uniformly
    # with probability p has condition number 1 / (1 - p): 0.8 gives 5; p = 1 leaks and is refused.
    p_max: float = 0.8
    # kind=diffaugment: comma list of color, translation, cutout (Zhao et al.'s policies).
    policy: str = "color,translation,cutout"
    # heuristic=rv: held-out real images D never trains on (seed 003 Section 3's validation set):
    # a TFRecord file glob, read like data.pattern. "" = for data.kind=digits with
    # data.max_per_class > 0, the training digits beyond data.max_per_class.
    validation_pattern: str = ""
    # heuristic=rv: at most this many held-out images are read once and kept in memory (per replica).
    validation_examples: int = 1000

    def validate(self, where: str) -> None:
        from tf_biggan.augment.spec import parse_policy  # here: config.py imports no TF (augment/spec.py)
        from tf_biggan.augment.startup import check_config

        _require(0.0 < self.p_max <= 1.0, where, "augment.p_max", f"must be in (0, 1) (1 leaks), got {self.p_max}")
        _require(0.0 <= self.p <= 1.0, where, "augment.p", f"must be in [0, 1], got {self.p}")
        if self.heuristic == "rt":
            _require(-1.0 < self.target < 1.0, where, "augment.target",
                     f"is a target for E[sign(D(real))], must be in (-1, 1), got {self.target}")
        else:
            _require(0.0 < self.target < 1.0, where, "augment.target",
                     f"is a target for r_v (0: no overfitting, 1: complete), must be in (0, 1), got {self.target}")
        _require(self.validation_examples >= 1, where, "augment.validation_examples",
                 f"must be >= 1, got {self.validation_examples}")
        _require(self.speed_kimg > 0, where, "augment.speed_kimg", f"must be > 0, got {self.speed_kimg}")
        _require(self.interval >= 1, where, "augment.interval", f"must be >= 1, got {self.interval}")
        if self.kind == "fixed":
            _require(self.p <= self.p_max, where, "augment.p",
                     f"={self.p} is above augment.p_max={self.p_max} (the safe distance from p = 1, "
                     "Appendix C.5.1); lower augment.p or raise augment.p_max")
        try:
            parse_policy(self.policy)
        except ValueError as exc:
            raise HParamsError(f"{where}: augment.policy: {exc}") from None
        check_config(self, where)


@dataclass
class HParams:
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cas: CasConfig = field(default_factory=CasConfig)
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    # Where this configuration was read from (not a key of the file).
    source: str = field(default="<defaults>", compare=False, repr=False)

    def validate(self) -> "HParams":
        for section in SECTIONS:
            getattr(self, section).validate(self.source)
        return self

    def to_dict(self) -> dict:
        return {s: _plain(dataclasses.asdict(getattr(self, s))) for s in SECTIONS}


SECTIONS = ("model", "train", "data", "eval", "augment", "cas", "stability")
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
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            # YAML 1.1 reads 1e-4 (no dot) as a string; it is a float to anyone typing it.
            return float(value)
        raise bad
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad
    raise TypeError(f"unsupported hparams type {tp!r} for {key}")


_YAML11_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


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


def hparams_path(path: Optional[str] = None) -> str:
    """The YAML file `--hparams` names: a path (local or gs://), or a bare name in `hparams/`."""
    path = path or DEFAULT_HPARAMS
    if paths.exists(path):  # may be gs:// (a run's own hparams.yaml)
        return path
    candidate = os.path.join(HPARAMS_DIR, path if path.endswith(".yaml") else path + ".yaml")
    if os.path.exists(candidate):
        return candidate
    known = sorted(f for f in os.listdir(HPARAMS_DIR) if f.endswith(".yaml")) if os.path.isdir(HPARAMS_DIR) else []
    raise HParamsError(f"--hparams: file '{path}' does not exist. Pass a YAML path or one of: {', '.join(known)}")


def load_hparams(path: Optional[str] = None, overrides: str = "") -> HParams:
    """Reads a YAML file from `hparams/` (or any path), applies overrides and validates."""
    path = hparams_path(path)
    try:
        raw = yaml.safe_load(paths.read_text(path))
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
    """Writes the resolved configuration atomically (tf_biggan.atomic: temp file + rename)."""
    write_text(path, dump_hparams(hp))
