"""Statistics of an image set under an extractor, and THE cache of the real data's statistics.

`feature_statistics` computes, in one pass of the extractor, everything the evaluation compares
samples with (Section 4, Table 2): FID's mean and covariance, KID's activations, the Inception
Score (the IS of real validation data picks Table 2's middle column) and class accuracy. It is the
one function for real images and samples alike.

`real_statistics(hp, extractor, which, cache_dir)` owns the cache whole, as stylegan2-ada's
`compute_feature_stats_for_dataset` does: the key (dataset id + extractor name), the file path,
the computation and the atomic save are in that one function. A damaged file is recomputed.
Without a cache directory nothing is written (the statistics are computed each time).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from typing import Dict, Iterable, List, Optional

import numpy as np

from tf_biggan import atomic
from tf_biggan.evaluation import metrics
from tf_biggan.evaluation.real_data import real_batches, real_data_config, real_dataset_id

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
    """Everything the evaluation needs from one image set, in one pass of the extractor:

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


def real_statistics(hp, extractor, which: str, cache_dir: Optional[str]) -> Optional[Dict[str, np.ndarray]]:
    """`feature_statistics` of the run's real `which` images ("train" / "validation", at most
    eval.real_max_examples) under `extractor`, cached in `cache_dir`; None for "validation" when
    the run has no held-out data configured."""
    if real_data_config(hp, which) is None:
        return None
    ev = hp.eval
    key = f"{real_dataset_id(hp, which, ev.real_max_examples)}__{extractor.name}"
    path = stats_cache_path(cache_dir, key) if cache_dir else None
    if path and os.path.exists(path):
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except Exception as exc:  # noqa: BLE001 -- a damaged cache is recomputed, not fatal
            log.warning("ignoring unreadable statistics cache %s (%s); recomputing", path, exc)
    stats = feature_statistics(extractor, real_batches(hp, which, ev.batch_size, ev.real_max_examples),
                               num_classes=hp.data.num_classes, splits=ev.is_splits, batch_size=ev.batch_size)
    if path:
        atomic.save_npz(path, **stats)
    return stats
