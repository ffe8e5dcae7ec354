"""Statistics of an image set under an extractor, and THE cache of the real data's statistics.

`feature_statistics` computes, in one sweep of the extractor over the images, everything the evaluation compares
samples with (Section 4, Table 2): FID's mean and covariance, KID's activations, the Inception
Score (the IS of real validation data picks Table 2's middle column) and class accuracy. It is the
one function for real images and samples alike.

`real_statistics(hp, extractor, which, cache_dir)` owns the cache whole, as stylegan2-ada's
`compute_feature_stats_for_dataset` does: the key (dataset id + extractor name), the file path,
the computation and the atomic save are in that one function. A damaged file is recomputed.
Without a cache directory nothing is written (the statistics are computed each time).

`--mode=real_stats` (`run_real_stats`) fills that cache up front, as BigGAN-PyTorch's
`calculate_inception_moments.py` does, for exactly the files the sweep, eval and the best-FID keeper
read (the run's eval.fid_reference split, and its validation split when one is configured), and
writes each split's `mu` / `sigma` also as a plain .npz that other FID tools load (pytorch-fid's
`--save-stats` layout).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from typing import Dict, Iterable, Iterator, List, Optional

import numpy as np

from tf_biggan import atomic, paths
from tf_biggan.evaluation import metrics
from tf_biggan.evaluation.real_data import real_batches, real_data_config, real_dataset_id
from tf_biggan.requests import RealStatsRequest

log = logging.getLogger(__name__)

# Inception-style logits of TF-GAN's module: 1008 outputs, ImageNet class k (0-based) at k + 1.
TFGAN_LOGITS = 1008
MAX_KID_EXAMPLES = 10_000


def class_logits(logits: Optional[np.ndarray], num_classes: int) -> Optional[np.ndarray]:
    """The extractor's logits over the dataset's classes, or None if its classes are others.

    The project's classifier and Keras InceptionV3 (1000 ImageNet classes, 0-based) match directly;
    TF-GAN's Inception module has 1008 outputs with ImageNet class k at index k + 1.
    """
    if logits is None:
        return None
    if logits.shape[1] == num_classes:
        return logits
    if logits.shape[1] == TFGAN_LOGITS and num_classes == 1000:
        return logits[:, 1:1001]
    return None


def feature_statistics(extractor, images: Iterable, labels=None, num_classes: Optional[int] = None,
                       splits: int = 10, max_kid_examples: int = MAX_KID_EXAMPLES,
                       batch_size: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Everything the evaluation needs from one image set, in one sweep of the extractor:

    mu, sigma       FID statistics of the pool activations (float64; `metrics.activation_statistics`)
    kid_activations the first `max_kid_examples` activations (float32) for KID
    inception_score [mean, std] over `splits` (when the extractor has logits)
    class_accuracy  [accuracy] when labels are known and the extractor's logits cover the
                    dataset's `num_classes` (default: the logits' width); TF-GAN's 1008 logits
                    are mapped to ImageNet's 1000 classes (`class_logits`)
    num_examples    [N]

    `images`: an array, or an iterable of image batches or of (images, labels) batches, whose
    labels are then collected on the way (so samples can be streamed).
    """
    collected: List[np.ndarray] = []

    def stream():
        if isinstance(images, np.ndarray) or hasattr(images, "shape"):
            yield images
            return
        for batch in images:
            if isinstance(batch, (tuple, list)):
                collected.append(np.asarray(batch[1]))
                batch = batch[0]
            yield batch

    def flatten():
        for batch in stream():
            bs = batch_size or extractor.batch_size
            for i in range(0, int(batch.shape[0]), bs):
                yield batch[i:i + bs]

    acts, logits = extractor.activations_and_logits(flatten(), batch_size)
    if labels is None and collected:
        labels = np.concatenate(collected)
    mu, sigma = metrics.activation_statistics(acts)
    out = {"mu": mu, "sigma": sigma, "kid_activations": acts[:max_kid_examples],
           "num_examples": np.array([acts.shape[0]])}
    if logits is not None and logits.shape[0] >= splits:
        out["inception_score"] = np.array(metrics.inception_score(logits, splits))
    own = class_logits(logits, num_classes if num_classes is not None else (logits.shape[1] if logits is not None else 0))
    if own is not None and labels is not None:
        out["class_accuracy"] = np.array([metrics.classification_accuracy(own, np.asarray(labels).reshape(-1))])
    return out


def stats_cache_path(cache_dir: str, key: str) -> str:
    """A readable prefix of `key` + a hash of all of it, so different keys never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:100]
    return os.path.join(cache_dir, f"{safe}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.npz")


def real_statistics_path(hp, extractor, which: str, cache_dir: str) -> str:
    """The cache file of the run's real `which` statistics under `extractor` (the dataset id + the
    extractor's name, `stats_cache_path`)."""
    return stats_cache_path(cache_dir, f"{real_dataset_id(hp, which, hp.eval.real_max_examples)}__{extractor.name}")


def _with_progress(batches: Iterable, progress, every: float = 10.0) -> Iterator:
    """`batches` unchanged, with a progress line every `every` seconds and one at the end."""
    done, start, last = 0, time.time(), time.time()
    for batch in batches:
        done += int(np.shape(batch[0])[0])
        yield batch
        if time.time() - last > every:
            last = time.time()
            progress.update(done, rate=done / max(last - start, 1e-9))
    progress.update(done, rate=done / max(time.time() - start, 1e-9), extra="real images read")


def real_statistics(hp, extractor, which: str, cache_dir: Optional[str],
                    progress=None) -> Optional[Dict[str, np.ndarray]]:
    """`feature_statistics` of the run's real `which` images ("train" / "validation", at most
    eval.real_max_examples) under `extractor`, cached in `cache_dir`; None for "validation" when
    the run has no held-out data configured. `progress` (a `tf_biggan.progress.Progress`) gets a
    line every few seconds while the images are read."""
    if real_data_config(hp, which) is None:
        return None
    ev = hp.eval
    path = real_statistics_path(hp, extractor, which, cache_dir) if cache_dir else None
    import tensorflow as tf

    if path and tf.io.gfile.exists(path):  # gfile: the cache may be on gs://
        try:
            return paths.load_npz(path)
        except Exception as exc:  # noqa: BLE001 -- a damaged cache is recomputed, not fatal
            log.warning("ignoring unreadable statistics cache %s (%s); recomputing", path, exc)
    batches = real_batches(hp, which, ev.batch_size, ev.real_max_examples)
    if progress is not None:
        batches = _with_progress(batches, progress)
    stats = feature_statistics(extractor, batches, num_classes=hp.data.num_classes, splits=ev.is_splits, batch_size=ev.batch_size)
    if path:
        atomic.save_npz(path, **stats)
    return stats


REAL_STATS_REPORT = "real_stats.json"
STATS_CACHE_DIR = "eval_cache"  # MODEL_DIR/eval_cache: real statistics cached per data set and extractor


def fid_npz_name(which: str, extractor_name: str) -> str:
    """`fid_stats_<split>_<extractor>.npz`: the split's mu / sigma for other FID tools."""
    return f"fid_stats_{which}_{re.sub(r'[^A-Za-z0-9._-]+', '_', extractor_name)}.npz"


def run_real_stats(hp, request: RealStatsRequest) -> dict:
    """`--mode=real_stats`: the run's real-data statistics computed once, before training or
    evaluation need them, into the cache Evaluator.for_run reads (eval.stats_cache_dir, else
    MODEL_DIR/eval_cache), plus `fid_stats_<split>_<extractor>.npz` (mu, sigma) and real_stats.json
    in --output_dir (default: the cache directory). The extractor is the one the run's evaluation
    uses (`features.feature_extractor`): Inception from --inception_path, else the project's
    classifier, trained here and kept in MODEL_DIR/eval_classifier for every later evaluation."""
    import tensorflow as tf

    from tf_biggan.errors import UserError
    from tf_biggan.evaluation.features import feature_extractor
    from tf_biggan.evaluation.real_data import no_validation_message
    from tf_biggan.progress import Progress
    from tf_biggan.runs import HPARAMS_FILE, run_hparams

    model_dir = request.model_dir
    if tf.io.gfile.exists(os.path.join(model_dir, HPARAMS_FILE)):  # an existing run: its data and resolution,
        hp = run_hparams(model_dir, hp, request.hparams, request.hparams_overrides)  # as eval reads them
    cache_dir = hp.eval.stats_cache_dir or os.path.join(model_dir, STATS_CACHE_DIR)
    progress = Progress("real_stats", unit="img")
    which_list = [hp.eval.fid_reference]
    if hp.eval.fid_reference == "validation" and real_data_config(hp, "validation") is None:
        raise UserError("eval.fid_reference=validation: " + no_validation_message(hp))
    if hp.eval.fid_reference == "train" and real_data_config(hp, "validation") is not None:
        which_list.append("validation")
    extractor = feature_extractor(hp, model_dir, request.inception_path, progress.log)
    output_dir = request.output_dir or cache_dir
    report = {"extractor": extractor.name, "cache_dir": cache_dir, "resolution": hp.model.resolution,
              "real_max_examples": hp.eval.real_max_examples, "splits": {}}
    for which in which_list:
        path = real_statistics_path(hp, extractor, which, cache_dir)
        cached = tf.io.gfile.exists(path)
        progress.log(f"{which}: {real_dataset_id(hp, which, hp.eval.real_max_examples)} under {extractor.name}"
                     + (f": already cached in {path}" if cached else f" -> {path}"))
        t0 = time.time()
        stats = real_statistics(hp, extractor, which, cache_dir, progress=progress)
        npz = os.path.join(output_dir, fid_npz_name(which, extractor.name))
        atomic.save_npz(npz, mu=stats["mu"], sigma=stats["sigma"])
        entry = {"dataset": real_dataset_id(hp, which, hp.eval.real_max_examples), "cache_file": path,
                 "npz": npz, "num_examples": int(stats["num_examples"][0]), "was_cached": cached,
                 "seconds": time.time() - t0}
        if "inception_score" in stats:
            entry["inception_score"] = [float(v) for v in stats["inception_score"]]
        if "class_accuracy" in stats:
            entry["class_accuracy"] = float(stats["class_accuracy"][0])
        report["splits"][which] = entry
        progress.log(f"{which}: {entry['num_examples']} images, mu [{stats['mu'].shape[0]}], sigma "
                     f"[{stats['sigma'].shape[0]}x{stats['sigma'].shape[1]}]"
                     + (f", IS {entry['inception_score'][0]:.3f}" if "inception_score" in entry else "")
                     + f" -> {npz}")
    atomic.write_json(os.path.join(output_dir, REAL_STATS_REPORT), report)
    return report
