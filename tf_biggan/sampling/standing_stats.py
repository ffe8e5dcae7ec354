"""Standing statistics for G's batch norms, paper Appendix C.1.

"We compute activation statistics at sampling time by running G through multiple forward passes
(typically 100) each with different batches of random noise, and storing means and variances
aggregated across all forward passes." After this, G's inference output for a given (z, y) no
longer depends on the batch it is computed in, nor on how many devices share it.

The latents of the passes should be drawn the way samples will be drawn (e.g. with the same
truncation): BN statistics depend on the latent distribution, which is why the official TF-Hub
modules keep one set per truncation value. `get_bn_stats` / `set_bn_stats` read and write a set.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from tf_biggan.layers.batch_norm import batch_norm_layers


def _default_latents(generator, batch_size: int, seed: int):
    """z ~ N(0, I), classes uniform: the training distribution."""
    def draw(step):
        key = tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])
        z = tf.random.stateless_normal((batch_size, generator.dim_z), seed=key)
        y = tf.random.stateless_uniform((batch_size,), seed=key + 1, maxval=generator.num_classes, dtype=tf.int32)
        return z, y
    return draw


def accumulate_standing_stats(generator, num_passes: int = 100, batch_size: int = 256,
                              latents: Optional[Callable] = None, seed: int = 0, strategy=None) -> None:
    """Runs `num_passes` forward passes of `generator` and stores the pooled BN moments.

    `latents(step) -> (z, y)` draws one pass's batch (default: N(0, I) and uniform classes). Under a
    `strategy`, each pass is run on every replica with the per-replica share of `batch_size` and
    moments are pooled across replicas.
    """
    layers = batch_norm_layers(generator)
    for layer in layers:
        layer.reset_standing_stats()
    draw = latents or _default_latents(generator, batch_size, seed)

    @tf.function
    def one_pass(step):
        z, y = draw(step)
        generator((z, y), training=False, accumulate=True)

    if strategy is None:
        for step in range(num_passes):
            one_pass(tf.constant(step, tf.int64))
    else:
        for step in range(num_passes):
            strategy.run(one_pass, args=(tf.constant(step, tf.int64),))
    for layer in layers:
        layer.finalize_standing_stats()


def get_bn_stats(generator) -> Dict[str, np.ndarray]:
    """The inference statistics of every BN layer, keyed by variable path."""
    stats = {}
    for layer in batch_norm_layers(generator):
        stats[layer.moving_mean.path] = layer.moving_mean.numpy()
        stats[layer.moving_var.path] = layer.moving_var.numpy()
    return stats


def set_bn_stats(generator, stats: Dict[str, np.ndarray]) -> None:
    for layer in batch_norm_layers(generator):
        layer.moving_mean.assign(stats[layer.moving_mean.path])
        layer.moving_var.assign(stats[layer.moving_var.path])
