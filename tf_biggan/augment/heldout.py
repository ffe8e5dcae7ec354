"""Held-out real images for ADA's validation heuristic r_v (seed 003, Section 3).

r_v = (E[D(train reals)] - E[D(held-out reals)]) / (E[D(train reals)] - E[D(generated)]) needs real
images D never trains on: `augment.validation_pattern` (TFRecords, read like data.pattern) or, for
the embedded digits with data.max_per_class > 0, the training-split digits beyond data.max_per_class
(the limited-data setting of the paper: a subset trains, the rest of the split is the validation
set). At most `augment.validation_examples` of them are read once, at start-up.

`HeldOut` keeps them in a non-trainable variable on every replica (bfloat16 holds 0..255 exactly:
half the memory of float32, and TPUs take it) and draws each step's batch statelessly from stream
"augment_heldout" (counter = step) for the GLOBAL batch, each replica taking its slice: the batch D
scores does not depend on the replica count, and a resumed run draws the same images.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from tf_biggan import seeds
from tf_biggan.data import preprocess
from tf_biggan.errors import UserError


def heldout_images(hp):
    """(uint8 [N, R, R, 3], int32 [N]) of the held-out reals of hp.augment, N <= validation_examples.
    UserError naming augment.validation_pattern when the run has none."""
    from tf_biggan.data.digits import first_per_class
    from tf_biggan.data.pipeline import data_errors, examples

    cfg, data = hp.augment, hp.data
    limit = cfg.validation_examples
    if cfg.validation_pattern:
        source = dataclasses.replace(data, kind="tfrecord", pattern=cfg.validation_pattern, max_per_class=0)
        where = f"augment.validation_pattern={cfg.validation_pattern!r}"
    elif data.kind == "digits" and data.max_per_class > 0:
        source = dataclasses.replace(data, max_per_class=0)
        where = f"the training digits beyond data.max_per_class={data.max_per_class}"
    else:
        raise UserError(
            "augment.heuristic=rv needs held-out real images D never trains on: set augment.validation_pattern "
            "to TFRecords disjoint from data.pattern (e.g. a few shards of the validation set), or, for "
            "data.kind=digits, train on a subset with data.max_per_class > 0 (the rest of the split is held "
            "out); or use augment.heuristic=rt, which needs none")
    images, labels = [], []
    try:
        with data_errors():
            for ex in examples(source, hp.model.resolution, training=False).as_numpy_iterator():
                images.append(ex["image"])
                labels.append(int(ex["labels"][0]))
                if not cfg.validation_pattern:
                    continue  # the digits' held-out part is known only once all labels are read
                if len(images) >= limit:
                    break
    except UserError as exc:
        raise UserError(f"augment.validation_pattern: {exc}") from None
    images, labels = np.stack(images) if images else np.zeros((0,)), np.asarray(labels, np.int32)
    if not cfg.validation_pattern:
        keep = ~first_per_class(labels, data.max_per_class)
        images, labels = images[keep], labels[keep]
    if len(labels) == 0:
        raise UserError(f"augment.heuristic=rv: {where} holds no images; point augment.validation_pattern at "
                        "held-out TFRecords or lower data.max_per_class")
    return images[:limit], labels[:limit]


class HeldOut:
    """The held-out reals on every replica and the stateless draw of a step's batch; create inside
    strategy.scope()."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, seed: int, global_batch: int):
        self.size = int(len(labels))
        self.seed, self.global_batch = seed, int(global_batch)
        self.images = tf.Variable(tf.cast(tf.constant(images, tf.uint8), tf.bfloat16), trainable=False,
                                  name="augment_heldout_images")
        self.labels = tf.Variable(tf.constant(labels, tf.int32), trainable=False, name="augment_heldout_labels")

    def indices(self, step):
        """int32 [global_batch]: which held-out images the global batch of `step` holds (with replacement)."""
        return tf.random.stateless_uniform((self.global_batch,), seeds.key("augment_heldout", self.seed, step),
                                           maxval=self.size, dtype=tf.int32)

    def batch(self, step, local_batch: int, replica=0):
        """(images float32 [local_batch, R, R, 3] in [-1, 1], labels int32) of this replica's slice."""
        start = tf.cast(replica, tf.int32) * local_batch
        index = self.indices(step)[start:start + local_batch]
        images = preprocess.to_model_range(tf.gather(tf.convert_to_tensor(self.images), index))
        return images, tf.gather(tf.convert_to_tensor(self.labels), index)
