"""Standing statistics for G's batch norms, paper Appendix C.1: the ONE place their latents are drawn.

"We compute activation statistics at sampling time by running G through multiple forward passes
(typically 100) each with different batches of random noise, and storing means and variances
aggregated across all forward passes." After this, G's inference output for a given (z, y) no
longer depends on the batch it is computed in, nor on how many devices share it.

The latents of the passes are drawn the way samples will be drawn (same truncation, same latent
convention, same class proportions): BN statistics depend on the latent distribution, which is why
the official TF-Hub modules keep one set per truncation value. `standing_stats_latents` draws them
from the `standing_stats` seed stream (`tf_biggan.seeds`), so evaluation, export, synthesis and the
qualitative figures compute the same statistics for the same (truncation, seed);
`apply_standing_stats` runs the passes; `get_bn_stats` / `set_bn_stats` read and write a set.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_biggan import seeds
from tf_biggan.layers.batch_norm import batch_norm_layers
from tf_biggan.sampling.labels import interleaved_labels
from tf_biggan.sampling.latents import convention_z


def standing_stats_latents(dim_z: int, num_classes: int, batch_size: int, truncation: float = 0.0, seed: int = 0,
                           convention: str = "paper_resample",
                           class_counts: Optional[Sequence[int]] = None) -> Callable:
    """`latents(step) -> (z [batch, dim_z], y [batch] int32)` for round `step` of the passes of Appendix C.1.

    z at `truncation` in `convention` (`tf_biggan.sampling.latents.convention_z`; 0 = untruncated
    N(0, I), the training distribution) from key (standing_stats, seed, step). Labels walk through
    `interleaved_labels(class_counts)` (default: one per class, i.e. class-balanced), so the passes
    see the classes in the proportions the samples will have, with no random generator.
    """
    order = interleaved_labels(class_counts if class_counts is not None else [1] * num_classes)
    if order.size == 0:
        raise ValueError("class_counts has no images")
    order = tf.constant(order.astype(np.int32))

    def latents(step):
        z = convention_z((batch_size, dim_z), truncation, seeds.key("standing_stats", seed, step), convention)
        first = tf.cast(step, tf.int32) * batch_size
        y = tf.gather(order, tf.math.floormod(first + tf.range(batch_size, dtype=tf.int32), tf.size(order)))
        return z, y
    return latents


def accumulate_standing_stats(generator, num_passes: int = 100, batch_size: int = 256,
                              latents: Optional[Callable] = None, seed: int = 0, strategy=None) -> None:
    """Runs `num_passes` forward passes of `generator` and stores the average of the per-pass BN
    moments (Appendix C.1, aggregated as the authors' code does: layers/batch_norm.py).

    `latents(step) -> (z, y)` draws round `step`'s batch (default: `standing_stats_latents` untruncated,
    class-balanced). Under a `strategy`, each round is run on every replica with the per-replica share
    of `batch_size`, each round's moments taken over all replicas (cross-replica BN).
    """
    layers = batch_norm_layers(generator)
    for layer in layers:
        layer.reset_standing_stats()
    draw = latents or standing_stats_latents(generator.dim_z, generator.num_classes, batch_size, 0.0, seed)

    @tf.function(autograph=False)  # plain graph code: no conversion cost
    def one_pass(step):
        z, y = draw(step)
        generator((z, y), training=False, accumulate=True)

    for step in range(num_passes):
        if strategy is None:
            one_pass(tf.constant(step, tf.int64))
        else:
            strategy.run(one_pass, args=(tf.constant(step, tf.int64),))
    for layer in layers:
        layer.finalize_standing_stats()


def apply_standing_stats(generator, truncation: float, num_passes: int, batch_size: int, seed: int = 0,
                         convention: str = "paper_resample", class_counts: Optional[Sequence[int]] = None,
                         strategy=None) -> None:
    """Standing statistics (Appendix C.1) for sampling at `truncation`: `num_passes` passes of
    `batch_size` latents drawn AT THAT TRUNCATION (Section 3.1), stored in the generator.

    Statistics from N(0, I) would be wrong for truncated z: the activations' moments shrink with
    the threshold, and normalising them with untruncated moments washes samples out.

    A generator that stores truncation-indexed statistics (`model.truncation_stats`, an imported
    BigGAN-deep module's 51 sets) uses them, interpolated at `truncation`, for the convention they
    were made for (hub_notebook, truncation in (0, 1]) instead of running passes.
    """
    if (generator.cfg.truncation_stats and convention == "hub_notebook" and 0.0 < truncation <= 1.0):
        for layer in batch_norm_layers(generator):
            layer.use_truncation_stats(truncation)
        return
    latents = standing_stats_latents(generator.dim_z, generator.num_classes, batch_size, truncation, seed,
                                     convention, class_counts)
    accumulate_standing_stats(generator, num_passes=num_passes, batch_size=batch_size, latents=latents,
                              strategy=strategy)


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
