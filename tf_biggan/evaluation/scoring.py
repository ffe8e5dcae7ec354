"""Sampling for evaluation and the `Evaluator` that scores a generator (Section 4, Table 2).

What the paper fixes and where it is done here:

* Samples come from the EMA generator (Section 3, "moving averages of G's weights") with standing
  statistics (Appendix C.1) recomputed FOR EVERY TRUNCATION from latents drawn at that truncation
  (`tf_biggan.sampling.standing_stats.apply_standing_stats`): BN moments depend on the latent
  distribution, which is why the official TF-Hub modules keep one set per truncation value.
* The truncation trick (Section 3.1): z entries beyond the threshold are resampled
  (`tf_biggan.sampling.latents.truncated_z`); 0 means untruncated. Under eval.latent_convention
  hub_notebook (imported TF-Hub runs) z = t · truncnorm(-2, 2) and t <= 0 is refused (z = 0).
* An imported TF-Hub run read at its import checkpoint samples with the module's statistics where
  they apply (`tf_biggan.sampling.standing_stats.ModuleStatistics`); a fine-tuned one with its own.
* Labels are class-balanced (sample i has class i mod num_classes); sample i's z is a pure
  function of (seed, i, truncation) drawn from the `eval_z` seed stream, so the numbers do not
  depend on the evaluation batch size, and the same seed gives the same "common random numbers"
  at every threshold (the sweep's differences are the model's, not the sampler's noise).
"""

from __future__ import annotations

import os
import time
import weakref
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tf_biggan import seeds
from tf_biggan.errors import UserError
from tf_biggan.evaluation import metrics
from tf_biggan.evaluation.features import feature_extractor
from tf_biggan.evaluation.real_data import no_validation_message
from tf_biggan.evaluation.real_stats import STATS_CACHE_DIR, feature_statistics, real_statistics
from tf_biggan.sampling.labels import class_balanced_labels
from tf_biggan.sampling.latents import convention_z
from tf_biggan.sampling.standing_stats import apply_standing_stats

# Sample i's z is row i % LATENT_BLOCK of block i // LATENT_BLOCK, each block drawn from its own
# stateless key (eval_z, seed, block): z does not depend on how samples are batched.
LATENT_BLOCK = 1024


def truncation_label(t: float) -> str:
    return "untruncated" if t <= 0 else f"{t:g}"


def eval_latents(dim_z: int, start: int, stop: int, truncation: float, seed: int = 0,
                 stream: str = "eval_z", convention: str = "paper_resample") -> tf.Tensor:
    """z of samples start..stop-1 at `truncation` (Section 3.1; <= 0 untruncated) in the latent
    `convention` (eval.latent_convention): row i is a pure function of (stream, seed, i, truncation),
    whatever the batch it is drawn in."""
    blocks = [convention_z((LATENT_BLOCK, dim_z), truncation, seeds.key(stream, seed, b), convention)
              for b in range(start // LATENT_BLOCK, (stop - 1) // LATENT_BLOCK + 1)]
    z = tf.concat(blocks, 0) if len(blocks) > 1 else blocks[0]
    offset = (start // LATENT_BLOCK) * LATENT_BLOCK
    return z[start - offset:stop - offset]


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


def sample_batches(generator, num_samples: int, truncation: float, batch_size: int, seed: int = 0,
                   convention: str = "paper_resample") -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(images [b, R, R, 3] in [-1, 1], labels [b]) of samples 0..num_samples-1 at `truncation`,
    class-balanced, with the generator's CURRENT BN statistics (apply standing statistics first)."""
    run = inference_fn(generator)
    for start in range(0, num_samples, batch_size):
        stop = min(start + batch_size, num_samples)
        y = class_balanced_labels(start, stop, generator.num_classes)
        z = eval_latents(generator.dim_z, start, stop, truncation, seed, convention=convention)
        yield run(z, y).numpy(), y


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
        """Real statistics cached in eval.stats_cache_dir, else MODEL_DIR/eval_cache (none without either)."""
        extractor = extractor or feature_extractor(hp, model_dir, inception_path, log)
        cache_dir = hp.eval.stats_cache_dir or (os.path.join(model_dir, STATS_CACHE_DIR) if model_dir else None)
        which = hp.eval.fid_reference
        reference = real_statistics(hp, extractor, which, cache_dir)
        if reference is None:
            raise UserError(f"eval.fid_reference={which}: " + no_validation_message(hp))
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
        stats = feature_statistics(self.extractor, sample_batches(generator, self.num_samples, truncation,
                                                                  ev.batch_size, self.seed, ev.latent_convention),
                                   num_classes=generator.num_classes, splits=ev.is_splits, batch_size=ev.batch_size)
        fid = metrics.frechet_distance_from_stats(stats["mu"], stats["sigma"], self.reference["mu"],
                                                  self.reference["sigma"])
        # KID's block estimator wants equally many examples on both sides.
        fake_kid, real_kid = stats["kid_activations"], self.reference["kid_activations"]
        n = min(real_kid.shape[0], fake_kid.shape[0])
        kid, kid_std = metrics.kernel_inception_distance_and_std(fake_kid[:n], real_kid[:n])
        is_mean, is_std = stats.get("inception_score", (float("nan"), float("nan")))
        accuracy = stats.get("class_accuracy", [float("nan")])[0]
        return {"truncation": float(truncation), "fid": float(fid), "is": float(is_mean), "is_std": float(is_std),
                "kid": float(kid), "kid_std": float(kid_std), "class_accuracy": float(accuracy),
                "num_samples": int(stats["num_examples"][0]), "seconds": time.time() - t0}

    def evaluate(self, generator, truncation: float) -> dict:
        """Standing statistics at `truncation` (Appendix C.1; an imported module's own where the generator
        still holds them), then `score`; the point's `bn_statistics` says which ("standing" / "module").
        Under hub_notebook a truncation <= 0 is a UserError (z would be all zeros)."""
        ev = self.hp.eval
        t0 = time.time()
        which = apply_standing_stats(generator, truncation, ev.standing_stats_passes, ev.standing_stats_batch,
                                     self.seed, convention=ev.latent_convention)
        point = self.score(generator, truncation)
        point.update(seconds=time.time() - t0, bn_statistics=which)
        return point

    def sweep(self, generator, truncations: Sequence[float]) -> List[dict]:
        points = []
        for t in truncations:
            point = self.evaluate(generator, t)
            self.log(f"truncation {truncation_label(t):>11s}: FID {point['fid']:8.3f}  IS {point['is']:7.3f}  "
                     f"KID {point['kid']:.4f}  class accuracy {point['class_accuracy']:.3f}  "
                     f"({point['seconds']:.1f} s)")
            points.append(point)
        return points
