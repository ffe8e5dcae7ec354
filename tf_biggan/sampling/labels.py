"""Class labels of samples, deterministic and batch-independent (no random generator involved).

Evaluation draws class-balanced labels (sample i has class i mod K, so every IS split and every
class count is the same at every truncation); synthesis and standing statistics follow given class
proportions (CAS replaces the real training set one for one) through one stratified order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def class_balanced_labels(start: int, stop: int, num_classes: int) -> np.ndarray:
    """Labels of samples start..stop-1: sample i has class i mod num_classes, so any run of
    num_classes consecutive samples (an IS split, a batch) holds every class equally often."""
    return (np.arange(start, stop) % num_classes).astype(np.int32)


def interleaved_labels(counts: Sequence[int]) -> np.ndarray:
    """All N = sum(counts) labels (0-based, int64) in a stratified order.

    Class c's j-th image gets the key (j + 1/2) / n_c; a stable sort over keys listed in class
    order breaks ties by class id. Any contiguous run of the result holds each class in proportion
    to its count, up to one image, so every shard (or batch) is class-balanced without a random
    generator. With equal counts it is 0, 1, ..., K-1 repeated, i.e. `class_balanced_labels`.
    """
    counts = [int(n) for n in counts]
    keys = np.concatenate([(np.arange(n, dtype=np.float64) + 0.5) / n for n in counts if n > 0] or [np.zeros(0)])
    labels = np.concatenate([np.full(n, c, np.int64) for c, n in enumerate(counts) if n > 0] or [np.zeros(0, np.int64)])
    return labels[np.argsort(keys, kind="stable")]
