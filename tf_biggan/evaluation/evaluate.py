"""Evaluation as BigGAN reports it: FID / IS / KID / class accuracy per truncation, Table 2's three
points, the IS-vs-FID curve, and the best-FID checkpoint during training.

What the paper fixes and where it is done here:

* Samples come from the EMA generator (Section 3, "moving averages of G's weights") with standing
  statistics (Appendix C.1: "multiple forward passes (typically 100) each with different batches of
  random noise"). The statistics are recomputed FOR EVERY TRUNCATION from latents drawn at that
  truncation (`apply_standing_stats`): BN moments depend on the latent distribution, which is why
  the official TF-Hub modules keep one set per truncation value.
* The truncation trick (Section 3.1): z entries beyond the threshold are resampled
  (`tf_biggan.latents.truncated_z`); 0 means untruncated.
* Labels are class-balanced (sample i has class i mod num_classes), so every IS split and every
  class count is the same for every truncation; sample i's z is a pure function of (seed, i,
  truncation), so the numbers do not depend on the evaluation batch size, and the same seed gives
  the same "common random numbers" at every threshold (the sweep's differences are the model's,
  not the sampler's noise).
* Table 2 / Section 5.1: scores at the truncation with the best FID, at the truncation whose IS is
  closest to the IS of real validation data, and at the maximum IS (`table2_points`); Appendix D:
  IS against FID over the sweep (`plot_is_vs_fid`).

Feature extractor (`feature_extractor`): Inception from `--inception_path` (TF-GAN's module or
Keras InceptionV3 weights; never downloaded), or else the project's classifier trained ONCE on the
run's real training data and cached in `MODEL_DIR/eval_classifier`. Its numbers are comparable only
with themselves. Real statistics are cached by `tf_biggan.features.cached_real_stats`, keyed by
dataset and extractor.

Modes: `--mode=eval` (`run_eval`, one truncation, `eval_report.json`) and `--mode=sweep`
(`run_sweep`: `sweep_report.json`, `sweep_report.csv`, `sweep_is_fid.png`). During training,
`BestFidKeeper` scores the EMA-G every `eval.best_fid_every` steps and keeps the best checkpoint in
`MODEL_DIR/best_fid` (the paper stops early, before collapse, Section 4.2).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
import time
import weakref
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tf_biggan.evaluation import metrics
from tf_biggan.errors import UserError
from tf_biggan.sampling.latents import truncated_z

EVAL_REPORT = "eval_report.json"
SWEEP_REPORT = "sweep_report.json"
SWEEP_CSV = "sweep_report.csv"
SWEEP_PLOT = "sweep_is_fid.png"
CLASSIFIER_DIR = "eval_classifier"
BEST_FID_DIR = "best_fid"
BEST_FID_REPORT = "best_fid.json"

# Sample i's z is row i % LATENT_BLOCK of block i // LATENT_BLOCK, each block drawn from its own
# stateless key: z does not depend on how samples are batched.
LATENT_BLOCK = 1024
# Stream ids folded into the seed, so standing statistics and samples never share random numbers.
_SAMPLES_STREAM = 1
_STANDING_STREAM = 2
# Inception-style logits of TF-GAN's module: 1008 outputs, ImageNet class k (0-based) at k + 1.
_TFGAN_LOGITS = 1008

POINT_FIELDS = ("truncation", "fid", "is", "is_std", "kid", "kid_std", "class_accuracy")


# ---------------------------------------------------------------------------------------------
# Small file helpers: every report is written to a temporary name and renamed into place, so a
# reader never sees half a file and an interrupted run never leaves one.


def _atomic_write_bytes(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + "-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _json_safe(value):
    """NaN / inf -> None (JSON has no NaN); numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path: str, payload: dict) -> None:
    """`payload` as indented JSON at `path`, atomically (temp + rename)."""
    _atomic_write_bytes(path, (json.dumps(_json_safe(payload), indent=2) + "\n").encode())


def write_png(path: str, image: np.ndarray) -> None:
    """uint8 [H, W, 3] as PNG at `path`, atomically."""
    _atomic_write_bytes(path, tf.io.encode_png(np.asarray(image, np.uint8)).numpy())


# ---------------------------------------------------------------------------------------------
# Real data.


def _real_data_cfg(hp, which: str):
    """hp.data pointed at the real images of `which` ("train" or "validation"); None if the run
    has no held-out data configured (a TFRecord run without eval.validation_pattern)."""
    data = hp.data
    if which == "train":
        return data
    if which != "validation":
        raise ValueError(f"which must be 'train' or 'validation', got {which!r}")
    ev = hp.eval
    if data.kind == "digits":
        return dataclasses.replace(data, split=ev.validation_split or "test")
    if data.kind == "tfds":
        return dataclasses.replace(data, split=ev.validation_split or "validation")
    if data.kind == "tfrecord":
        if not ev.validation_pattern:
            return None
        return dataclasses.replace(data, pattern=ev.validation_pattern)
    raise UserError(f"data.kind={data.kind!r}: expected digits, tfds or tfrecord")


def _no_validation_message(hp) -> str:
    return (f"the run's data (data.kind={hp.data.kind}) has no held-out images configured: set "
            "eval.validation_pattern to the validation TFRecords (ImageNet: .../validation-*), e.g. "
            "--hparams_overrides eval.validation_pattern=/data/imagenet/validation-*")


def real_dataset_id(hp, which: str, max_examples: int) -> str:
    """A readable id of a real image set, the dataset half of a statistics cache key."""
    cfg = _real_data_cfg(hp, which)
    if cfg is None:
        raise UserError(_no_validation_message(hp))
    source = {"digits": "digits", "tfds": cfg.name, "tfrecord": cfg.pattern}[cfg.kind]
    split = cfg.split if cfg.kind != "tfrecord" else which
    return f"{cfg.kind}:{source}:{split}:{hp.model.resolution}px:max{max_examples}"


def real_batches(hp, which: str, batch_size: int, max_examples: int = 0) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(images float32 [b, R, R, 3] in [-1, 1], labels int32 [b]) of the run's real `which` data
    ("train" or "validation"), one pass in file order, at most `max_examples` (0 = all).

    Streams, so ImageNet-size sets never sit in memory; data errors become `UserError`s.
    """
    from tf_biggan.data.pipeline import data_errors, make_dataset

    cfg = _real_data_cfg(hp, which)
    if cfg is None:
        raise UserError(_no_validation_message(hp))
    ds = make_dataset(cfg, hp.model.resolution, batch_size, training=False)
    seen = 0
    with data_errors():
        for images, labels in ds:
            images, labels = images.numpy(), labels.numpy().astype(np.int32)
            if max_examples:
                images, labels = images[:max_examples - seen], labels[:max_examples - seen]
            seen += images.shape[0]
            if images.shape[0]:
                yield images, labels
            if max_examples and seen >= max_examples:
                return


def real_images(hp, which: str, max_examples: int = 0, batch_size: int = 256) -> Tuple[np.ndarray, np.ndarray]:
    """All of `real_batches` in memory: (images [N, R, R, 3], labels [N])."""
    parts = list(real_batches(hp, which, batch_size, max_examples))
    if not parts:
        raise UserError(f"the run's real {which} data is empty ({real_dataset_id(hp, which, max_examples)})")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ---------------------------------------------------------------------------------------------
# The feature extractor.


def feature_extractor(hp, model_dir: Optional[str], inception_path: Optional[str] = None,
                      log: Callable[[str], None] = print):
    """The extractor FID / IS / KID / class accuracy are computed with (Section 4, Table 2).

    `inception_path` given: Inception from that LOCAL path (a missing path is a UserError naming
    --inception_path and how to get the file). Otherwise the project's classifier, trained on the
    run's real training data (at most eval.classifier_max_examples images, eval.classifier_epochs
    epochs, seed train.seed) the first time and loaded from `MODEL_DIR/eval_classifier` after
    that, so every evaluation of a run uses the same classifier and the same cached statistics.
    """
    from tf_biggan.evaluation import features

    if inception_path:
        try:
            return features.load_inception(inception_path, batch_size=hp.eval.batch_size)
        except UserError as exc:
            raise UserError(f"--inception_path={inception_path}: {exc}") from None
    directory = os.path.join(model_dir, CLASSIFIER_DIR) if model_dir else None
    if directory and os.path.exists(os.path.join(directory, "classifier.json")):
        return features.load_classifier(directory)
    images, labels = real_images(hp, "train", hp.eval.classifier_max_examples)
    log(f"no --inception_path: training the project's classifier on {images.shape[0]} real training "
        f"images ({hp.eval.classifier_epochs} epochs; once per run"
        + (f", cached in {directory})" if directory else ")")
        + ". Its FID/IS are comparable only with themselves, not with published Inception numbers")
    clf = features.train_classifier(images, labels, hp.data.num_classes, epochs=hp.eval.classifier_epochs,
                                    seed=hp.train.seed)
    if directory:
        clf.save(directory)
    return clf


def _class_logits(logits: Optional[np.ndarray], num_classes: int) -> Optional[np.ndarray]:
    """The extractor's logits over the dataset's classes, or None if its classes are others.

    The project's classifier and Keras InceptionV3 (1000 ImageNet classes, 0-based) match directly;
    TF-GAN's Inception module has 1008 outputs with ImageNet class k at index k + 1.
    """
    if logits is None:
        return None
    if logits.shape[1] == num_classes:
        return logits
    if logits.shape[1] == _TFGAN_LOGITS and num_classes == 1000:
        return logits[:, 1:1001]
    return None


def _scores_from_outputs(acts: np.ndarray, logits: Optional[np.ndarray], labels: Optional[np.ndarray],
                         num_classes: int, splits: int, max_kid_examples: int) -> Dict[str, np.ndarray]:
    """The arrays `features.feature_statistics` gives, from outputs already computed (so the images
    could be streamed and their labels collected on the way)."""
    mu, sigma = metrics.activation_statistics(acts)
    out = {"mu": mu, "sigma": sigma, "kid_activations": acts[:max_kid_examples],
           "num_examples": np.array([acts.shape[0]])}
    if logits is not None and logits.shape[0] >= splits:
        out["inception_score"] = np.array(metrics.inception_score(logits, splits))
    class_logits = _class_logits(logits, num_classes)
    if class_logits is not None and labels is not None:
        out["class_accuracy"] = np.array([metrics.classification_accuracy(class_logits, labels)])
    return out


def real_statistics(hp, extractor, which: str, cache_dir: str) -> Optional[Dict[str, np.ndarray]]:
    """Cached statistics (mu, sigma, kid_activations, inception_score, class_accuracy) of the run's
    real `which` images under `extractor`; None for "validation" when none is configured."""
    from tf_biggan.evaluation.features import cached_real_stats, stats_key

    if _real_data_cfg(hp, which) is None:
        return None
    ev = hp.eval
    key = stats_key(real_dataset_id(hp, which, ev.real_max_examples), extractor)

    def compute():
        labels: List[np.ndarray] = []

        def images():
            for x, y in real_batches(hp, which, ev.batch_size, ev.real_max_examples):
                labels.append(y)
                yield x

        acts, logits = extractor.activations_and_logits(images(), ev.batch_size)
        return _scores_from_outputs(acts, logits, np.concatenate(labels), hp.data.num_classes, ev.is_splits,
                                    10_000)

    return cached_real_stats(key, compute, cache_dir)


# ---------------------------------------------------------------------------------------------
# Sampling for evaluation.


def _key(seed: int, stream: int, index) -> tf.Tensor:
    base = tf.constant([int(seed), stream], tf.int64)
    return tf.random.experimental.stateless_fold_in(base, tf.cast(index, tf.int64))


def class_balanced_labels(start: int, stop: int, num_classes: int) -> np.ndarray:
    """Labels of samples start..stop-1: sample i has class i mod num_classes, so any run of
    num_classes consecutive samples (an IS split, a batch) holds every class equally often."""
    return (np.arange(start, stop) % num_classes).astype(np.int32)


def eval_latents(dim_z: int, start: int, stop: int, truncation: float, seed: int = 0) -> tf.Tensor:
    """z of samples start..stop-1 at `truncation` (Section 3.1; <= 0 untruncated): row i is a pure
    function of (seed, i, truncation), whatever the batch it is drawn in."""
    blocks = []
    for b in range(start // LATENT_BLOCK, (stop - 1) // LATENT_BLOCK + 1):
        blocks.append(truncated_z((LATENT_BLOCK, dim_z), truncation, _key(seed, _SAMPLES_STREAM, b)))
    z = tf.concat(blocks, 0) if len(blocks) > 1 else blocks[0]
    offset = (start // LATENT_BLOCK) * LATENT_BLOCK
    return z[start - offset:stop - offset]


def apply_standing_stats(generator, truncation: float, num_passes: int, batch_size: int, seed: int = 0) -> None:
    """Standing statistics (Appendix C.1) for sampling at `truncation`: `num_passes` forward passes
    of `batch_size` latents drawn AT THAT TRUNCATION (Section 3.1) with class-balanced labels.

    Statistics from N(0, I) would be wrong for truncated z: the activations' moments shrink with
    the threshold, and normalising them with untruncated moments washes samples out.
    """
    from tf_biggan.sampling.standing_stats import accumulate_standing_stats

    dim_z, num_classes = generator.dim_z, generator.num_classes

    def latents(step):
        z = truncated_z((batch_size, dim_z), truncation, _key(seed, _STANDING_STREAM, step))
        first = tf.cast(step, tf.int32) * batch_size
        y = tf.math.floormod(first + tf.range(batch_size, dtype=tf.int32), num_classes)
        return z, y

    accumulate_standing_stats(generator, num_passes=num_passes, batch_size=batch_size, latents=latents, seed=seed)


_INFERENCE_FNS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def inference_fn(generator) -> Callable:
    """A traced-once G(z, y) in inference mode (stored BN statistics); y int labels [b] or class
    vectors [b, num_classes] (Figures 8-9 interpolate those)."""
    fns = _INFERENCE_FNS.get(generator)
    if fns is None:
        ref = weakref.ref(generator)  # the function must not keep the generator alive

        def call(z, y):
            return ref()((z, y), training=False)

        fns = {"labels": tf.function(call, input_signature=[
                   tf.TensorSpec([None, generator.dim_z], tf.float32), tf.TensorSpec([None], tf.int32)]),
               "vectors": tf.function(call, input_signature=[
                   tf.TensorSpec([None, generator.dim_z], tf.float32),
                   tf.TensorSpec([None, generator.num_classes], tf.float32)])}
        _INFERENCE_FNS[generator] = fns

    def run(z, y):
        y = tf.convert_to_tensor(y)
        if y.shape.rank == 1:
            return fns["labels"](tf.cast(z, tf.float32), tf.cast(y, tf.int32))
        return fns["vectors"](tf.cast(z, tf.float32), tf.cast(y, tf.float32))
    return run


def sample_batches(generator, num_samples: int, truncation: float, batch_size: int, seed: int = 0
                   ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(images [b, R, R, 3] in [-1, 1], labels [b]) of samples 0..num_samples-1 at `truncation`,
    class-balanced, with the generator's CURRENT BN statistics (call `apply_standing_stats` first).
    """
    run = inference_fn(generator)
    for start in range(0, num_samples, batch_size):
        stop = min(start + batch_size, num_samples)
        y = class_balanced_labels(start, stop, generator.num_classes)
        z = eval_latents(generator.dim_z, start, stop, truncation, seed)
        yield run(z, y).numpy(), y


# ---------------------------------------------------------------------------------------------
# Scoring.


class Evaluator:
    """Scores a generator against one run's real data with one feature extractor.

    Build it with `Evaluator.for_run(hp, model_dir, inception_path)`; then
    `evaluate(generator, truncation)` returns one point {truncation, fid, is, is_std, kid, kid_std,
    class_accuracy, num_samples, seconds} after setting standing statistics at that truncation, and
    `sweep(generator, truncations)` one point per threshold. Real statistics are computed once
    (cached on disk); `validation_is` is the IS of real held-out data (Table 2, column 5).
    """

    def __init__(self, hp, extractor, reference: Dict[str, np.ndarray],
                 validation: Optional[Dict[str, np.ndarray]], seed: int = 0,
                 num_samples: Optional[int] = None, log: Callable[[str], None] = print):
        self.hp = hp
        self.extractor = extractor
        self.reference = reference
        self.validation = validation
        self.seed = int(seed)
        self.num_samples = int(num_samples or hp.eval.num_samples)
        self.log = log
        if self.num_samples < max(2, hp.eval.is_splits):
            raise UserError(f"eval.num_samples={self.num_samples} is too small: FID needs >= 2 samples and "
                            f"IS >= eval.is_splits={hp.eval.is_splits}")

    @classmethod
    def for_run(cls, hp, model_dir: Optional[str], inception_path: Optional[str] = None, seed: int = 0,
                num_samples: Optional[int] = None, extractor=None, log: Callable[[str], None] = print):
        extractor = extractor or feature_extractor(hp, model_dir, inception_path, log)
        cache_dir = hp.eval.stats_cache_dir or (os.path.join(model_dir, "eval_cache") if model_dir else None)
        if cache_dir is None:
            cache_dir = tempfile.mkdtemp(prefix="tf_biggan_eval_cache-")
        which = hp.eval.fid_reference
        reference = real_statistics(hp, extractor, which, cache_dir)
        if reference is None:
            raise UserError(f"eval.fid_reference={which}: " + _no_validation_message(hp))
        validation = reference if which == "validation" else real_statistics(hp, extractor, "validation", cache_dir)
        return cls(hp, extractor, reference, validation, seed, num_samples, log)

    @property
    def validation_is(self) -> Optional[float]:
        if self.validation is None or "inception_score" not in self.validation:
            return None
        return float(self.validation["inception_score"][0])

    def real_summary(self) -> dict:
        """The real-data reference numbers a report shows beside the samples'."""
        out = {"fid_reference": self.hp.eval.fid_reference,
               "reference_examples": int(self.reference["num_examples"][0])}
        for name, stats in (("train" if self.hp.eval.fid_reference == "train" else "validation", self.reference),
                            ("validation", self.validation)):
            if stats is None:
                continue
            if "inception_score" in stats:
                out[f"{name}_is"] = float(stats["inception_score"][0])
                out[f"{name}_is_std"] = float(stats["inception_score"][1])
            if "class_accuracy" in stats:
                out[f"{name}_class_accuracy"] = float(stats["class_accuracy"][0])
            out[f"{name}_examples"] = int(stats["num_examples"][0])
        return out

    def score(self, generator, truncation: float) -> dict:
        """Scores of the generator's samples at `truncation` with its CURRENT BN statistics."""
        ev = self.hp.eval
        t0 = time.time()
        labels: List[np.ndarray] = []

        def images():
            for x, y in sample_batches(generator, self.num_samples, truncation, ev.batch_size, self.seed):
                labels.append(y)
                yield x

        acts, logits = self.extractor.activations_and_logits(images(), ev.batch_size)
        labels_all = np.concatenate(labels)
        mu, sigma = metrics.activation_statistics(acts)
        fid = metrics.frechet_distance_from_stats(mu, sigma, self.reference["mu"], self.reference["sigma"])
        # KID's block estimator wants equally many examples on both sides.
        real_kid = self.reference["kid_activations"]
        n = min(real_kid.shape[0], acts.shape[0])
        kid, kid_std = metrics.kernel_inception_distance_and_std(acts[:n], real_kid[:n])
        is_mean = is_std = float("nan")
        if logits is not None:
            is_mean, is_std = metrics.inception_score(logits, ev.is_splits)
        class_logits = _class_logits(logits, generator.num_classes)
        accuracy = (metrics.classification_accuracy(class_logits, labels_all) if class_logits is not None
                    else float("nan"))
        return {"truncation": float(truncation), "fid": float(fid), "is": float(is_mean), "is_std": float(is_std),
                "kid": float(kid), "kid_std": float(kid_std), "class_accuracy": float(accuracy),
                "num_samples": int(acts.shape[0]), "seconds": time.time() - t0}

    def evaluate(self, generator, truncation: float) -> dict:
        """Standing statistics at `truncation` (Appendix C.1), then `score`."""
        ev = self.hp.eval
        t0 = time.time()
        apply_standing_stats(generator, truncation, ev.standing_stats_passes, ev.standing_stats_batch, self.seed)
        point = self.score(generator, truncation)
        point["seconds"] = time.time() - t0
        return point

    def sweep(self, generator, truncations: Sequence[float]) -> List[dict]:
        points = []
        for t in truncations:
            point = self.evaluate(generator, t)
            self.log(f"truncation {_truncation_label(t):>11s}: FID {point['fid']:8.3f}  IS {point['is']:7.3f}  "
                     f"KID {point['kid']:.4f}  class accuracy {point['class_accuracy']:.3f}  "
                     f"({point['seconds']:.1f} s)")
            points.append(point)
        return points


def _truncation_label(t: float) -> str:
    return "untruncated" if t <= 0 else f"{t:g}"


# ---------------------------------------------------------------------------------------------
# Table 2 and Appendix D.


def table2_points(points: Sequence[dict], validation_is: Optional[float]) -> Dict[str, Optional[dict]]:
    """Table 2's three columns from a sweep (Section 5.1):

    best_fid  the point with the lowest FID ("the truncation setting which attains the best FID");
    valid_is  the point whose IS is closest to `validation_is`, the IS of real validation data
              ("the truncation setting for which our model's IS is the same as that attained by
              the real validation data"), None without validation data;
    max_is    the point with the highest IS ("FID at the maximum IS achieved by each model").

    Points with a non-finite FID or IS are skipped; ties go to the earlier point in the list.
    Each chosen point is returned as a copy; valid_is also carries `target_is`.
    """
    usable = [p for p in points if math.isfinite(p.get("fid", float("nan"))) and math.isfinite(p.get("is", float("nan")))]
    if not usable:
        return {"best_fid": None, "valid_is": None, "max_is": None}
    best_fid = min(usable, key=lambda p: p["fid"])
    max_is = max(usable, key=lambda p: p["is"])  # max keeps the first of equal maxima
    valid = None
    if validation_is is not None and math.isfinite(validation_is):
        valid = dict(min(usable, key=lambda p: abs(p["is"] - validation_is)), target_is=float(validation_is))
    return {"best_fid": dict(best_fid), "valid_is": valid, "max_is": dict(max_is)}


def plot_is_vs_fid(points: Sequence[dict], path: str, table2: Optional[dict] = None,
                   validation_is: Optional[float] = None, title: str = "") -> None:
    """Appendix D's curve (Figures 17-19): IS on x, FID on y, one point per truncation labelled with
    its threshold, Table 2's points circled, the real validation IS as a dashed line. PNG, atomic."""
    import matplotlib

    matplotlib.use("Agg")  # no display; safe to call before pyplot is first imported
    import matplotlib.pyplot as plt

    pts = [p for p in points if math.isfinite(p["fid"]) and math.isfinite(p["is"])]
    # Along the curve the threshold runs from untruncated (0 = infinity) down to the smallest.
    pts.sort(key=lambda p: -p["truncation"] if p["truncation"] > 0 else -math.inf)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    ax.plot([p["is"] for p in pts], [p["fid"] for p in pts], "o-", color="tab:blue", label="EMA G")
    for p in pts:
        ax.annotate(_truncation_label(p["truncation"]), (p["is"], p["fid"]), textcoords="offset points",
                    xytext=(5, 5), fontsize=8)
    markers = {"best_fid": ("s", "tab:green", "best FID"), "valid_is": ("D", "tab:orange", "IS of validation data"),
               "max_is": ("^", "tab:red", "max IS")}
    for name, (marker, color, label) in markers.items():
        p = (table2 or {}).get(name)
        if p:
            ax.scatter([p["is"]], [p["fid"]], s=140, marker=marker, facecolors="none", edgecolors=color,
                       linewidths=2, label=f"{label} (t={_truncation_label(p['truncation'])})", zorder=3)
    if validation_is is not None and math.isfinite(validation_is):
        ax.axvline(validation_is, linestyle="--", color="gray", label=f"real validation IS {validation_is:.2f}")
    ax.set_xlabel("Inception Score (higher: fidelity)")
    ax.set_ylabel("FID (lower: better)")
    ax.set_title(title or "IS vs FID over truncation thresholds")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    _atomic_write_bytes(path, buf.getvalue())


def write_points_csv(points: Sequence[dict], path: str) -> None:
    """One row per truncation, columns POINT_FIELDS + num_samples (atomic)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    fields = list(POINT_FIELDS) + ["num_samples"]
    writer.writerow(fields)
    for p in points:
        writer.writerow(["" if isinstance(p.get(k), float) and not math.isfinite(p[k]) else p.get(k) for k in fields])
    _atomic_write_bytes(path, buf.getvalue().encode())


# ---------------------------------------------------------------------------------------------
# Modes.


def _require_model_dir(flags, mode: str) -> str:
    model_dir = getattr(flags, "model_dir", None)
    if not model_dir:
        raise UserError(f"--model_dir is required for --mode={mode}: pass the training run's directory "
                        "(it holds hparams.yaml and the checkpoints)")
    if not os.path.isdir(model_dir):
        raise UserError(f"--model_dir={model_dir} does not exist; train first with --mode=train "
                        f"--model_dir={model_dir}")
    return model_dir


def run_hparams_for_eval(hp, flags, model_dir: str):
    """The hparams an evaluation of a run uses: the run's own (model_dir/hparams.yaml: model,
    data, train), with the eval section of --hparams when one is named, and eval.* keys of
    --hparams_overrides on top (e.g. eval.num_samples=50000)."""
    from tf_biggan.training.checkpoints import run_hparams
    from tf_biggan.config import hparams_from_dict, parse_overrides

    run = run_hparams(model_dir)
    if getattr(flags, "hparams", None):
        run = dataclasses.replace(run, eval=hp.eval)
    overrides = parse_overrides(getattr(flags, "hparams_overrides", "") or "")
    if overrides.get("eval"):
        run = hparams_from_dict({"eval": overrides["eval"]}, "--hparams_overrides", base=run)
    return run.validate()


def load_run_generator(model_dir: str, checkpoint: Optional[str], hp):
    """(EMA generator, step, checkpoint path) of a run; UserErrors name --checkpoint / --model_dir."""
    from tf_biggan.training.checkpoints import latest_checkpoint, load_ema_generator

    if checkpoint and not tf.io.gfile.exists(checkpoint + ".index"):
        raise UserError(f"--checkpoint={checkpoint} does not exist (no {checkpoint}.index): pass a checkpoint "
                        f"prefix such as {os.path.join(model_dir, 'ckpt-3000')} (see the *.index files in "
                        "--model_dir), or omit --checkpoint to use the latest")
    path = latest_checkpoint(model_dir, checkpoint)
    generator, _, step = load_ema_generator(model_dir, path, hp=hp)
    return generator, step, path


def _flag(flags, name, default=None):
    value = getattr(flags, name, None)
    return default if value is None else value


def run_eval(hp, flags) -> dict:
    """`--mode=eval`: FID, IS, KID and class accuracy of the EMA-G at one truncation (--truncation,
    default untruncated) -> MODEL_DIR/eval_report.json. Section 4 / Table 2 metrics, Appendix C.1
    standing statistics at that truncation."""
    model_dir = _require_model_dir(flags, "eval")
    hp = run_hparams_for_eval(hp, flags, model_dir)
    truncation = float(_flag(flags, "truncation", 0.0))
    if truncation < 0:
        raise UserError(f"--truncation={truncation} must be >= 0 (0 = untruncated)")
    generator, step, ckpt = load_run_generator(model_dir, _flag(flags, "checkpoint"), hp)
    evaluator = Evaluator.for_run(hp, model_dir, _flag(flags, "inception_path"), seed=int(_flag(flags, "seed", 0)))
    point = evaluator.evaluate(generator, truncation)
    report = dict(point, step=step, checkpoint=ckpt, extractor=evaluator.extractor.name,
                  real=evaluator.real_summary(), seed=evaluator.seed,
                  standing_stats={"passes": hp.eval.standing_stats_passes, "batch": hp.eval.standing_stats_batch})
    path = os.path.join(model_dir, EVAL_REPORT)
    write_json(path, report)
    print(f"[eval] step {step}, truncation {_truncation_label(truncation)}: FID {point['fid']:.3f}  "
          f"IS {point['is']:.3f} +- {point['is_std']:.3f}  KID {point['kid']:.4f}  "
          f"class accuracy {point['class_accuracy']:.3f} -> {path}", flush=True)
    return report


def sweep_report(evaluator: Evaluator, generator, truncations: Sequence[float], step: int,
                 checkpoint: Optional[str], out_dir: str) -> dict:
    """Runs the sweep and writes sweep_report.json, sweep_report.csv and sweep_is_fid.png to
    `out_dir` (Table 2's three points, Appendix D's curve); returns the report."""
    t0 = time.time()
    points = evaluator.sweep(generator, truncations)
    valid_is = evaluator.validation_is
    chosen = table2_points(points, valid_is)
    report = {"step": step, "checkpoint": checkpoint, "extractor": evaluator.extractor.name,
              "num_samples": evaluator.num_samples, "seed": evaluator.seed,
              "standing_stats": {"passes": evaluator.hp.eval.standing_stats_passes,
                                 "batch": evaluator.hp.eval.standing_stats_batch},
              "real": evaluator.real_summary(), "points": points, **chosen,
              "seconds": time.time() - t0}
    if chosen["valid_is"] is None:
        report["valid_is_note"] = "no real validation IS: " + _no_validation_message(evaluator.hp)
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, SWEEP_REPORT), report)
    write_points_csv(points, os.path.join(out_dir, SWEEP_CSV))
    plot_is_vs_fid(points, os.path.join(out_dir, SWEEP_PLOT), chosen, valid_is,
                   title=f"IS vs FID, step {step} ({evaluator.extractor.name})")
    return report


def run_sweep(hp, flags) -> dict:
    """`--mode=sweep`: every threshold of eval.truncations (0 = untruncated) -> per-truncation FID, IS,
    KID, class accuracy; Table 2's best_fid / valid_is / max_is; sweep_report.json, .csv and the
    IS-vs-FID plot in MODEL_DIR."""
    model_dir = _require_model_dir(flags, "sweep")
    hp = run_hparams_for_eval(hp, flags, model_dir)
    if not hp.eval.truncations:
        raise UserError("eval.truncations is empty: give the thresholds to sweep, e.g. "
                        "--hparams_overrides 'eval.truncations=[0.5,1.0,0]'")
    generator, step, ckpt = load_run_generator(model_dir, _flag(flags, "checkpoint"), hp)
    evaluator = Evaluator.for_run(hp, model_dir, _flag(flags, "inception_path"), seed=int(_flag(flags, "seed", 0)),
                                  log=lambda m: print(f"[sweep] {m}", flush=True))
    report = sweep_report(evaluator, generator, hp.eval.truncations, step, ckpt, model_dir)
    for name in ("best_fid", "valid_is", "max_is"):
        p = report[name]
        if p:
            print(f"[sweep] {name:>8s}: truncation {_truncation_label(p['truncation'])}  FID {p['fid']:.3f}  "
                  f"IS {p['is']:.3f}", flush=True)
    print(f"[sweep] {len(report['points'])} truncations in {report['seconds']:.1f} s -> "
          f"{os.path.join(model_dir, SWEEP_REPORT)}, {SWEEP_CSV}, {SWEEP_PLOT}", flush=True)
    return report


# ---------------------------------------------------------------------------------------------
# Best-FID checkpoint during training.


class BestFidKeeper:
    """Periodic FID of the EMA generator during training, keeping the best checkpoint apart.

    The paper trains "until collapse" and reports the model before it (Section 4.2; BigGAN-PyTorch
    keeps `best` checkpoints by FID): the latest checkpoint of a collapsed run is its worst. Every
    call scores the trainer's CURRENT EMA-G (standing statistics at `truncation`, default
    untruncated; `eval.best_fid_samples` samples, 0 = eval.num_samples) and, when FID improves,
    saves the trainer's full checkpoint (G, D, EMA-G, optimisers, step) as
    `MODEL_DIR/best_fid/ckpt-STEP` (only the best is kept) and `best_fid.json`. Evaluate or export
    it by passing that path (best_fid.json's "checkpoint", or `best_checkpoint(MODEL_DIR)`) as
    --checkpoint.

    Hook, in GANTrainer.fit after the periodic save (chief only):

        keeper = BestFidKeeper(hp, model_dir, inception_path=flags.inception_path)  # once
        ...
        if hp.eval.best_fid_every and step % hp.eval.best_fid_every == 0:
            keeper(self)            # -> FID (float); checkpoint kept if it is the best so far

    The EMA-G's BN statistics are restored after scoring, so training is not affected. A restarted
    run reads best_fid.json and only replaces the kept checkpoint when it beats it.
    """

    def __init__(self, hp, model_dir: str, inception_path: Optional[str] = None, truncation: float = 0.0,
                 num_samples: Optional[int] = None, seed: int = 0, extractor=None,
                 log: Callable[[str], None] = print):
        self.hp = hp
        self.model_dir = model_dir
        self.truncation = float(truncation)
        self.directory = os.path.join(model_dir, BEST_FID_DIR)
        self.log = log
        num_samples = num_samples or hp.eval.best_fid_samples or hp.eval.num_samples
        self.evaluator = Evaluator.for_run(hp, model_dir, inception_path, seed, num_samples, extractor,
                                           log=lambda m: log(f"[best_fid] {m}"))
        self.best: Optional[dict] = None
        report = os.path.join(self.directory, BEST_FID_REPORT)
        if os.path.exists(report):
            with open(report) as f:
                self.best = json.load(f)
        self._manager = None
        self._manager_for = None

    @property
    def best_fid(self) -> float:
        return float(self.best["fid"]) if self.best else math.inf

    def __call__(self, trainer) -> float:
        """Scores `trainer.ema_g` at `trainer.step` and keeps `trainer.checkpoint` if best: the FID."""
        return self.update(trainer.ema_g, int(trainer.step.numpy()), trainer.checkpoint)

    def update(self, ema_generator, step: int, checkpoint: Optional[tf.train.Checkpoint] = None) -> float:
        """FID of `ema_generator` now; if it is the lowest so far, `checkpoint` (any
        tf.train.Checkpoint holding `ema_generator`) is saved in MODEL_DIR/best_fid."""
        from tf_biggan.sampling.standing_stats import get_bn_stats, set_bn_stats

        saved = get_bn_stats(ema_generator)
        try:
            point = self.evaluator.evaluate(ema_generator, self.truncation)
        finally:
            set_bn_stats(ema_generator, saved)
        fid = point["fid"]
        improved = math.isfinite(fid) and fid < self.best_fid
        self.log(f"[best_fid] step {step}: FID {fid:.3f}  IS {point['is']:.3f}"
                 + ("  (new best)" if improved else f"  (best {self.best_fid:.3f})"))
        if improved:
            path = None
            if checkpoint is not None:
                if self._manager is None or self._manager_for is not checkpoint:
                    # max_to_keep=1: the manager deletes the previous best only after the new one is
                    # complete and its state file has been rewritten (TF writes that file atomically).
                    self._manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=1)
                    self._manager_for = checkpoint
                path = self._manager.save(checkpoint_number=step)
            self.best = dict(point, step=int(step), checkpoint=path, extractor=self.evaluator.extractor.name)
            write_json(os.path.join(self.directory, BEST_FID_REPORT), self.best)
        return fid


def best_checkpoint(model_dir: str) -> Optional[str]:
    """The best-FID checkpoint BestFidKeeper kept for a run, or None."""
    return tf.train.latest_checkpoint(os.path.join(model_dir, BEST_FID_DIR))


__all__ = ["Evaluator", "BestFidKeeper", "best_checkpoint", "feature_extractor", "real_statistics",
           "real_batches", "real_images", "apply_standing_stats", "sample_batches", "eval_latents",
           "class_balanced_labels", "inference_fn", "table2_points", "plot_is_vs_fid", "write_points_csv",
           "run_eval", "run_sweep", "sweep_report", "write_json", "write_png", "load_run_generator",
           "run_hparams_for_eval"]
