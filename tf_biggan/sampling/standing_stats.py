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

An imported official TF-Hub generator (`--mode=import_hub`) comes with the module's own statistics,
used instead of passes while the generator still IS the module (`ModuleStatistics`; `runs.load_run`
marks a generator restored from the import's checkpoint, the one place that is decided), and only in
the modules' latent convention (`hub_notebook`):
- biggan-deep-*/1: the 51 truncation-indexed sets (truncation 0, 0.02, ..., 1.0), interpolated linearly,
  at every truncation in (0, 1];
- biggan-*/2: the one stored set (`accumulated_mean` / `accumulated_var`, what both published converters
  load) at truncation 1, where ajbrock/BigGAN-PyTorch issue #14 reports the TF module and its conversion
  agree (and not below); standing statistics at every other truncation.
A generator that has trained a step (a fine-tuned run's checkpoints, the trainer's EMA-G) is not marked:
its statistics are its own, computed by passes in the run's convention at every truncation. Under
`hub_notebook` a truncation <= 0 is refused (`latents.check_truncation`: z would be all zeros).
"""

from __future__ import annotations

import dataclasses
import weakref
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_biggan import seeds
from tf_biggan.layers.batch_norm import batch_norm_layers
from tf_biggan.sampling.labels import interleaved_labels
from tf_biggan.sampling.latents import check_truncation, convention_z

# The convention the official modules' statistics were made for (their sampling notebook).
MODULE_CONVENTION = "hub_notebook"


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


@dataclasses.dataclass(frozen=True)
class ModuleStatistics:
    """The BN statistics an imported TF-Hub module holds (module docstring): `rows` (biggan-deep: the
    truncation-indexed sets in the BN layers' truncation_mean / truncation_var) or `stored` (biggan /2:
    the one set as imported, {variable path: value})."""

    rows: bool
    stored: Optional[Dict[str, np.ndarray]] = None

    def covers(self, truncation: float, convention: str) -> bool:
        """Whether the module's statistics are the ones for sampling at `truncation` in `convention`."""
        if convention != MODULE_CONVENTION:
            return False
        if self.rows:
            return 0.0 < truncation <= 1.0
        return abs(truncation - 1.0) < 1e-6

    def apply(self, generator, truncation: float) -> None:
        if self.rows:
            for layer in batch_norm_layers(generator):
                layer.use_truncation_stats(truncation)
        else:
            set_bn_stats(generator, self.stored)


_MODULE_STATISTICS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def hold_module_statistics(generator) -> None:
    """Marks `generator` as holding an imported module's weights AND statistics as imported (called by
    `runs.load_run` for the import's checkpoint): truncation-indexed rows when it has them
    (`model.truncation_stats`), else its current inference statistics (the /2 modules' stored set)."""
    rows = bool(generator.cfg.truncation_stats)
    _MODULE_STATISTICS[generator] = ModuleStatistics(rows, None if rows else get_bn_stats(generator))


def module_statistics(generator) -> Optional[ModuleStatistics]:
    """The module statistics `generator` holds (`hold_module_statistics`), or None: its own are computed."""
    return _MODULE_STATISTICS.get(generator)


def apply_standing_stats(generator, truncation: float, num_passes: int, batch_size: int, seed: int = 0,
                         convention: str = "paper_resample", class_counts: Optional[Sequence[int]] = None,
                         strategy=None) -> str:
    """Standing statistics (Appendix C.1) for sampling at `truncation`: `num_passes` passes of
    `batch_size` latents drawn AT THAT TRUNCATION (Section 3.1), stored in the generator. Returns
    which statistics it set: "module" or "standing".

    Statistics from N(0, I) would be wrong for truncated z: the activations' moments shrink with
    the threshold, and normalising them with untruncated moments washes samples out.

    A generator that still holds an imported module's statistics (`module_statistics`) uses them
    where they apply (biggan-deep: t in (0, 1]; /2: t = 1; both in hub_notebook) instead of running
    passes. `truncation` <= 0 under hub_notebook is a UserError (`latents.check_truncation`).
    """
    truncation = check_truncation(truncation, convention, "truncation")
    module = module_statistics(generator)
    if module is not None and module.covers(truncation, convention):
        module.apply(generator, truncation)
        return "module"
    latents = standing_stats_latents(generator.dim_z, generator.num_classes, batch_size, truncation, seed,
                                     convention, class_counts)
    accumulate_standing_stats(generator, num_passes=num_passes, batch_size=batch_size, latents=latents,
                              strategy=strategy)
    return "standing"


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
