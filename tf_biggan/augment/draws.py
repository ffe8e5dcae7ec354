"""Per-sample random parameters of the augmentations: stateless, resumable, replica-independent.

Every draw is made for the GLOBAL batch from a key of tf_biggan.seeds stream "augment" (seed, and a
counter built from the training step, the D/G sub-step and real/fake), and each replica keeps its
slice, exactly as the trainer's latents: the augmented images a sample gets do not depend on the
number of replicas, and a resumed run draws the same numbers (the step is the RNG state).
"""

from __future__ import annotations

import tensorflow as tf


class Draws:
    """Independent stateless streams of per-sample numbers: draw i uses fold_in(key, i).

    key: int64 [2] (tf_biggan.seeds.key("augment", seed, counter)); global_batch: samples in the
    global draw; offset: index of this replica's first sample in it; the local batch size is
    `local_batch` (a python int or a scalar tensor).
    """

    def __init__(self, key, global_batch: int, offset=0, local_batch=None):
        self.key = tf.cast(key, tf.int64)
        self.global_batch = int(global_batch)
        self.offset = tf.cast(offset, tf.int32)
        self.local_batch = self.global_batch if local_batch is None else local_batch
        self._index = 0

    def _next_key(self):
        self._index += 1
        return tf.random.experimental.stateless_fold_in(self.key, self._index)

    def _slice(self, values):
        return values[self.offset:self.offset + self.local_batch]

    def uniform(self, *shape):
        """U[0, 1) of shape [local_batch, *shape]."""
        return self._slice(tf.random.stateless_uniform((self.global_batch,) + shape, self._next_key()))

    def normal(self, *shape):
        return self._slice(tf.random.stateless_normal((self.global_batch,) + shape, self._next_key()))

    def gate(self, probability, *shape):
        """Boolean [local_batch, *shape]: True with `probability` (a scalar, may be a tensor)."""
        return self.uniform(*shape) < tf.cast(probability, tf.float32)

    def local_normal(self, shape):
        """Normal numbers of a full per-sample `shape` (e.g. noise images): [local_batch, *shape].

        Drawn per sample from fold_in(key, global sample index), so no global-size tensor is made.
        """
        key = self._next_key()
        index = tf.range(self.local_batch) + self.offset

        def one(i):
            return tf.random.stateless_normal(shape, tf.random.experimental.stateless_fold_in(key, tf.cast(i, tf.int64)))
        return tf.map_fn(one, index, fn_output_signature=tf.float32)
