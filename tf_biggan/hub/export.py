"""TF-Hub export of the EMA generator, a drop-in for the official `deepmind/biggan-*` modules.

Contract of the official modules, kept here: `module.signatures['default'](z=..., y=..., truncation=...)`
with z [batch, dim_z] float32, y [batch, num_classes] float32 (one-hot or a class mixture) and
`truncation` a scalar float32, returns {'default': images [batch, H, W, 3] float32 in [-1, 1]}.
Loading needs TensorFlow (and tensorflow_hub for `hub.load` / `hub.KerasLayer`), no code of ours.

Why `truncation` is an input (Appendix C.1): G's BN statistics depend on the latent distribution,
so standing statistics computed on N(0, I) are wrong for truncated z. The official BigGAN-deep
modules keep 51 truncation-indexed sets; BigGAN-PyTorch leaves this to the user. We compute standing
statistics for a grid of truncation thresholds (`eval.export_truncations`) plus one set for
untruncated z, and the module picks the set for its `truncation` input, interpolating mean and
variance linearly between neighbouring grid points (clamped at the ends). `truncation <= 0` means
untruncated (the project-wide convention of `tf_biggan.sampling.latents`).

The statistics for threshold t are computed in the run's latent convention (`eval.latent_convention`;
by default the paper's truncation, Section 3.1: entries of z beyond t are resampled) by
`tf_biggan.sampling.standing_stats.apply_standing_stats`, the same passes evaluation and synthesis use;
that is what the exported `sample_latents(batch_size, seed, truncation)` draws (from the `synthesize`
seed stream, counter 0: shard 0 of a synthesis with that seed). The metadata names the convention.

Under `hub_notebook` (imported runs: z = t · truncnorm(-2, 2), the TF-Hub notebook's, tensorflow/hub#214)
there is no untruncated z (t = 0 is z = 0): no untruncated set is computed and the module reads t <= 0
as its lowest grid truncation. An imported run that has not trained exports the module's own
statistics (`export_statistics`): biggan-deep, its 51 sets as they are (grid 0, 0.02, ..., 1.0; no
passes at all); biggan /2, its stored set at t = 1 and standing statistics at the grid's other
truncations. A fine-tuned run computes every grid set for its own generator.

Assets: `metadata.json` (resolution, dim_z, num_classes, family, the exported checkpoint and its
training step, truncation grid, latent convention, which statistics it holds (`bn_statistics`), what
t <= 0 means (`truncation_zero`), the resolved hparams). The export is written to a temporary
directory and renamed into place (`tf_biggan.atomic.directory`).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tf_biggan import atomic, paths, seeds
from tf_biggan.errors import UserError
from tf_biggan.progress import Progress
from tf_biggan.layers.batch_norm import batch_norm_layers, stats_from
from tf_biggan.sampling.latents import convention_z
from tf_biggan.sampling.standing_stats import (MODULE_CONVENTION, apply_standing_stats, get_bn_stats,
                                               module_statistics, set_bn_stats)

LATENT_CONVENTION = "paper_resample"


def has_untruncated(convention: str) -> bool:
    """Whether `convention` has an untruncated z (t <= 0: N(0, I)); hub_notebook's t = 0 is z = 0."""
    return convention != MODULE_CONVENTION


def standing_stats_grid(generator, truncations: Sequence[float], num_passes: int, batch_size: int,
                        seed: int = 0, convention: str = LATENT_CONVENTION):
    """Standing statistics per truncation in the latent `convention`, then for untruncated z (the
    last entry; none under hub_notebook, `has_untruncated`). Where the generator still holds an
    imported module's statistics they are used (`apply_standing_stats`).

    Returns {moving_mean path: (means [T(+1), C], vars [T(+1), C])}. The generator's own statistics
    are left as they were.
    """
    saved = get_bn_stats(generator)
    per_truncation = []
    for threshold in list(truncations) + ([0.0] if has_untruncated(convention) else []):
        apply_standing_stats(generator, threshold, num_passes, batch_size, seed,
                             convention=convention if threshold > 0 else LATENT_CONVENTION)
        per_truncation.append(get_bn_stats(generator))
    set_bn_stats(generator, saved)
    tables = {}
    for layer in batch_norm_layers(generator):
        mean_key, var_key = layer.moving_mean.path, layer.moving_var.path
        tables[mean_key] = (np.stack([s[mean_key] for s in per_truncation]),
                            np.stack([s[var_key] for s in per_truncation]))
    return tables


@dataclasses.dataclass
class ExportStatistics:
    """What an export stores: per grid truncation (and, with `untruncated`, a last set for t <= 0)
    {moving_mean path: (means, vars)}; `source` and `truncation_zero` are metadata.json's words."""

    grid: List[float]
    tables: Dict[str, Tuple[np.ndarray, np.ndarray]]
    untruncated: bool
    source: str
    truncation_zero: str


def export_statistics(generator, truncations: Sequence[float], num_passes: int, batch_size: int,
                      seed: int = 0, convention: str = LATENT_CONVENTION) -> ExportStatistics:
    """The statistics an export of `generator` holds (module docstring): an imported biggan-deep
    module's rows as they are, else standing statistics over `truncations` (> 0) in `convention`."""
    module = module_statistics(generator)
    if module is not None and module.rows and convention == MODULE_CONVENTION:
        rows = int(generator.cfg.truncation_stats)
        tables = {layer.moving_mean.path: (layer.truncation_mean.numpy(), layer.truncation_var.numpy())
                  for layer in batch_norm_layers(generator)}
        return ExportStatistics([k / (rows - 1) for k in range(rows)], tables, False,
                                f"the imported module's {rows} truncation-indexed sets, as stored (no passes)",
                                "t <= 0 reads the module's truncation-0 set, and sample_latents gives z = 0 there "
                                "(hub_notebook: z = t * truncnorm(-2, 2)); sample at t in (0, 1]")
    grid = sorted(float(t) for t in truncations if t > 0)
    if not grid:
        raise UserError("eval.export_truncations must hold at least one threshold > 0 (e.g. [0.5, 1.0, 2.0])")
    tables = standing_stats_grid(generator, grid, num_passes, batch_size, seed, convention)
    source = f"standing statistics (Appendix C.1): {num_passes} passes of {batch_size} latents per truncation"
    if module is not None and any(module.covers(t, convention) for t in grid):
        source += "; at truncation 1, the imported module's stored set"
    if has_untruncated(convention):
        zero = "untruncated: z ~ N(0, I), with standing statistics of untruncated z (the last set)"
    else:
        zero = (f"hub_notebook has no untruncated z (z = t * truncnorm(-2, 2) is all zeros at t = 0): t <= 0 reads "
                f"as {grid[0]:g}, the grid's lowest truncation (statistics and sample_latents)")
    return ExportStatistics(grid, tables, has_untruncated(convention), source, zero)


def interpolate_stats(grid, means, variances, truncation, untruncated: bool = True):
    """Statistics for `truncation`: linear in t between grid points, clamped to the grid; for t <= 0
    the last row (untruncated) when `untruncated`, else the grid's first point's (hub_notebook)."""
    grid = tf.convert_to_tensor(grid, tf.float32)
    t = tf.cast(truncation, tf.float32)
    n = tf.shape(grid)[0]
    clamped = tf.clip_by_value(t, grid[0], grid[-1])
    upper = tf.clip_by_value(tf.searchsorted(grid, tf.reshape(clamped, [1]), side="left")[0], 1, tf.maximum(n - 1, 1))
    lower = upper - 1
    span = grid[upper] - grid[lower]
    w = tf.where(span > 0, (clamped - grid[lower]) / tf.where(span > 0, span, 1.0), 0.0)
    mean = (1.0 - w) * means[lower] + w * means[upper]
    var = (1.0 - w) * variances[lower] + w * variances[upper]
    if not untruncated:
        return mean, var
    zero = t <= 0
    return tf.where(zero, means[-1], mean), tf.where(zero, variances[-1], var)


class GeneratorModule(tf.Module):
    """What the SavedModel holds: the generator, the statistics tables and the metadata asset."""

    def __init__(self, generator, truncations, tables, metadata_path: str, convention: str = LATENT_CONVENTION,
                 untruncated: bool = True):
        super().__init__(name="biggan")
        self.generator = generator
        self.convention = convention
        self.untruncated = untruncated  # the tables' last set is untruncated z's (t <= 0)
        self.truncation_grid = tf.constant(np.asarray(truncations, np.float32))
        self.stats_means = {}
        self.stats_vars = {}
        self._stats_keys = []
        for i, (path, (means, variances)) in enumerate(sorted(tables.items())):
            self.stats_means[f"bn{i}"] = tf.Variable(means.astype(np.float32), trainable=False, name=f"bn{i}_means")
            self.stats_vars[f"bn{i}"] = tf.Variable(variances.astype(np.float32), trainable=False, name=f"bn{i}_vars")
            self._stats_keys.append((path, f"bn{i}"))
        self.metadata = tf.saved_model.Asset(metadata_path)
        dim_z, num_classes = generator.dim_z, generator.num_classes
        self.default = tf.function(self._default, input_signature=[
            tf.TensorSpec([None, dim_z], tf.float32, name="z"),
            tf.TensorSpec([None, num_classes], tf.float32, name="y"),
            tf.TensorSpec([], tf.float32, name="truncation")])
        self.sample_latents = tf.function(self._sample_latents, input_signature=[
            tf.TensorSpec([], tf.int32, name="batch_size"),
            tf.TensorSpec([], tf.int64, name="seed"),
            tf.TensorSpec([], tf.float32, name="truncation")])

    def _default(self, z, y, truncation):
        stats = {}
        for path, key in self._stats_keys:
            stats[path] = interpolate_stats(self.truncation_grid, self.stats_means[key], self.stats_vars[key], truncation,
                                            self.untruncated)
        with stats_from(self.generator, stats):
            images = self.generator((z, y), training=False)
        return {"default": images}

    def _sample_latents(self, batch_size, seed, truncation):
        shape = tf.stack([batch_size, self.generator.dim_z])
        if not self.untruncated:  # hub_notebook: t <= 0 reads as the grid's lowest truncation
            truncation = tf.maximum(truncation, self.truncation_grid[0])
        # a tensor t <= 0 is untruncated N(0, I) in the resampling conventions
        return {"z": convention_z(shape, truncation, seeds.key("synthesize", seed, 0), self.convention)}


def export_generator(generator, export_dir: str, truncations: Sequence[float], num_passes: int,
                     batch_size: int, metadata: dict, seed: int = 0, convention: str = LATENT_CONVENTION) -> str:
    """Computes the statistics grid (`export_statistics`) and writes the module to `export_dir`
    (atomically; local or gs://)."""
    stats = export_statistics(generator, truncations, num_passes, batch_size, seed, convention)
    metadata = dict(metadata, truncation_grid=stats.grid, latent_convention=convention,
                    bn_statistics=stats.source, truncation_zero=stats.truncation_zero,
                    dim_z=generator.dim_z, num_classes=generator.num_classes,
                    resolution=generator.cfg.resolution, family=generator.cfg.family,
                    output_key="default", signature="default")
    export_dir = paths.absolute(export_dir)
    with atomic.directory(export_dir) as tmp, tempfile.TemporaryDirectory() as meta_dir:
        # The asset's source lies outside the module; saving copies it into assets/metadata.json.
        meta_src = os.path.join(meta_dir, "metadata.json")
        atomic.write_json(meta_src, metadata)
        module = GeneratorModule(generator, stats.grid, stats.tables, meta_src, convention, stats.untruncated)
        tf.saved_model.save(module, tmp, signatures={
            "default": module.default.get_concrete_function(),
            "sample_latents": module.sample_latents.get_concrete_function(),
        })
    return export_dir


def run_export(hp, request) -> str:
    """`--mode=export --model_dir=RUN [--checkpoint=CKPT] [--export_dir=DIR]`: the EMA generator of
    `--checkpoint` (default: the run's latest; e.g. RUN/best_fid/ckpt-N), with standing statistics
    for eval.export_truncations (the run's value, or --hparams / --hparams_overrides eval.*), or an
    imported run's module statistics while it has not trained (`export_statistics`). `request`: a
    `requests.ExportRequest`."""
    from tf_biggan.runs import load_run, require_model_dir, run_hparams

    model_dir = require_model_dir(request.model_dir)
    hp = run_hparams(model_dir, hp, request.hparams, request.hparams_overrides)
    run = load_run(model_dir, request.checkpoint, hp=hp)
    export_dir = request.export_dir or os.path.join(model_dir, "export")
    metadata = {"hparams": hp.to_dict(), "step": run.step, "checkpoint": paths.absolute(run.checkpoint),
                "source": paths.absolute(model_dir)}
    path = export_generator(run.ema_generator, export_dir, hp.eval.export_truncations, hp.eval.standing_stats_passes,
                            hp.eval.standing_stats_batch, metadata, seed=hp.train.seed,
                            convention=hp.eval.latent_convention)
    Progress("export").log(f"the EMA generator of step {run.step} ({run.checkpoint}) -> {path}"
                           + (" with the imported module's statistics" if run.from_module else ""))
    return path
