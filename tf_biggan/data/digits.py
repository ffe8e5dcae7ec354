"""The embedded default dataset: scikit-learn's 8x8 handwritten digits (10 classes, no download).

`sklearn.datasets.load_digits` holds 1,797 grey 8x8 images with pixel values 0..16. The split is
FIXED and needs no random generator: within each class, in the order scikit-learn returns them,
every fifth image (positions 0, 5, 10, ...) is held out. That gives

    "train": 1,433 images  (what the GAN trains on)
    "test":  364 images, 35-37 per class  (never seen in training: for the digit classifier that
             scores generated samples, and for FID against real held-out digits)

The API, used by the trainer, the metrics and the data pipeline:

    load_digits_split(split, max_per_class=0, classes=()) -> (images float32 [N, 8, 8] in [0, 1], labels int32 [N])
        max_per_class > 0 keeps the first that many of each class (limited-data experiments, e.g.
        augmentation: seed 003 trains on subsets of a dataset); classes (data.classes) keeps only those
        digits, relabelled 0..K-1 in the order given (transfer from some classes to others)
    digits_dataset(split, resolution, max_per_class=0, classes=())
        -> tf.data of {"image": uint8 [R, R, 3], "labels": int64 [1]}
        the images as the GAN sees them: grey replicated to RGB, area-resized to R x R (for R a
        multiple of 8 this is pixel replication), before shuffling / batching (see pipeline.py,
        which maps them to float32 in [-1, 1])
    images_to_digits(images) -> float32 [N, 8, 8] in [0, 1]
        the inverse, for model outputs in [-1, 1] ([N, R, R, 3]): mean over RGB, area-resize to
        8x8; a classifier trained on `load_digits_split("train")` can then score G's samples.

Pixel scale: value / 16 in [0, 1]; as uint8 that is round(value * 255 / 16).
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from tf_biggan.data import preprocess
from tf_biggan.errors import UserError

NUM_CLASSES = 10
SPLITS = ("train", "test")
HELD_OUT_EVERY = 5  # every 5th image of each class is held out


@functools.lru_cache(maxsize=1)
def _load_all():
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int32)
    held_out = np.zeros(len(labels), dtype=bool)
    for c in range(NUM_CLASSES):
        (members,) = np.nonzero(labels == c)
        held_out[members[::HELD_OUT_EVERY]] = True
    return images, labels, held_out


def load_digits_split(split: str, max_per_class: int = 0, classes=()):
    """(images float32 [N, 8, 8] in [0, 1], labels int32 [N]) of the fixed "train" or "test" split;
    max_per_class > 0 keeps the first `max_per_class` images of each class (in split order); `classes`
    keeps only those digits (split order), label classes[k] -> k."""
    if split not in SPLITS:
        raise UserError(f"data.split={split!r}: the digits dataset has splits {', '.join(SPLITS)}")
    images, labels, held_out = _load_all()
    keep = held_out if split == "test" else ~held_out
    images, labels = images[keep], labels[keep]
    if max_per_class > 0:
        keep = first_per_class(labels, max_per_class)
        images, labels = images[keep], labels[keep]
    if len(classes):
        images, labels = _subset(images, labels, classes)
    return images.copy(), labels.copy()


def _subset(images: np.ndarray, labels: np.ndarray, classes):
    """The images of `classes` (data.classes) in split order, digit classes[k] relabelled k."""
    if any(not 0 <= c < NUM_CLASSES for c in classes):
        raise UserError(f"data.classes={list(classes)}: the digits are classes 0..{NUM_CLASSES - 1}")
    relabel = np.full(NUM_CLASSES, -1, np.int32)
    relabel[list(classes)] = np.arange(len(classes), dtype=np.int32)
    new = relabel[labels]
    keep = new >= 0
    return images[keep], new[keep]


def first_per_class(labels: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask of the first `count` positions of each class in `labels` (data.max_per_class)."""
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in range(NUM_CLASSES):
        (members,) = np.nonzero(labels == c)
        rank[members] = np.arange(len(members))
    return rank < count


def _to_uint8_rgb(images: np.ndarray) -> np.ndarray:
    """[N, 8, 8] in [0, 1] -> uint8 [N, 8, 8, 3]."""
    grey = np.round(images * 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def digits_dataset(split: str, resolution: int, max_per_class: int = 0, classes=()) -> tf.data.Dataset:
    """Unbatched tf.data of {"image": uint8 [R, R, 3], "labels": int64 [1]} for one split."""
    images, labels = load_digits_split(split, max_per_class, classes)
    ds = tf.data.Dataset.from_tensor_slices(
        {"image": _to_uint8_rgb(images), "labels": labels.astype(np.int64)[:, None]})
    return ds.map(tf.autograph.experimental.do_not_convert(
                      lambda ex: {"image": preprocess.crop_and_resize(ex["image"], resolution),
                                  "labels": ex["labels"]}),
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def images_to_digits(images) -> np.ndarray:
    """Model-range images [N, R, R, 3] (or [N, R, R]) in [-1, 1] -> float32 [N, 8, 8] in [0, 1]."""
    x = tf.convert_to_tensor(images, tf.float32)
    if x.shape.rank == 4:
        x = tf.reduce_mean(x, axis=-1)
    x = preprocess.area_resize(x[..., None], 8)[..., 0]
    return np.clip((x.numpy() + 1.0) / 2.0, 0.0, 1.0).astype(np.float32)
