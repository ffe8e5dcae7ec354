"""What `--mode=synthesize` samples from: something that maps (z, labels) to images in [-1, 1].

* `GeneratorSource`: an in-memory generator, used as is;
* `CheckpointSource`: the EMA generator of a training run (Section 3: "moving averages of G's
  weights"; `tf_biggan.runs.load_run`, honouring --checkpoint), with standing statistics
  (Appendix C.1) accumulated AT the synthesis truncation, because BN statistics depend on the
  latent distribution;
* `ModuleSource`: an exported TF-Hub module (ours or one with the official `default` signature),
  which picks its statistics from its `truncation` input.
"""

from __future__ import annotations

import json
import os
from typing import Optional

import tensorflow as tf

from tf_biggan import paths
from tf_biggan.errors import UserError
from tf_biggan.sampling.standing_stats import apply_standing_stats, module_statistics




class GeneratorSource:
    """An in-memory generator G((z, y)) used as is (its BN statistics are the caller's business)."""

    def __init__(self, generator, description: dict, batch_size: int = 64):
        self.generator = generator
        self.dim_z = int(generator.dim_z)
        self.num_classes = int(generator.num_classes)
        self.resolution = int(generator.cfg.resolution)
        self.batch_size = int(batch_size)
        self.description = dict(description)
        self.standing_stats = None  # set by CheckpointSource
        self._fn = tf.function(lambda z, y: generator((z, y), training=False), input_signature=[
            tf.TensorSpec([None, self.dim_z], tf.float32), tf.TensorSpec([None], tf.int32)])

    def prepare(self) -> None:
        """Work needed before the first image (none here); skipped when every shard exists."""

    def generate(self, z, labels) -> tf.Tensor:
        return self._fn(tf.convert_to_tensor(z, tf.float32), tf.convert_to_tensor(labels, tf.int32))


class CheckpointSource(GeneratorSource):
    """The EMA generator of a training run with standing statistics at the synthesis truncation.

    Appendix C.1: statistics from `passes` forward passes of `batch` latents drawn as the samples
    are (same truncation, convention and class proportions; `apply_standing_stats`). Computed
    lazily, so a rerun that finds every shard complete costs a checkpoint restore only.
    """

    def __init__(self, model_dir: str, checkpoint: Optional[str] = None, hp=None, hparams: Optional[str] = None,
                 hparams_overrides: str = ""):
        from tf_biggan.runs import load_run, run_hparams

        hp = run_hparams(model_dir, hp, hparams, hparams_overrides)  # the run's, with --hparams' eval.* on top
        run = load_run(model_dir, checkpoint, hp=hp)
        self.hp = hp
        super().__init__(run.ema_generator, {"kind": "checkpoint", "model_dir": paths.absolute(model_dir),
                                             "checkpoint": paths.absolute(run.checkpoint), "step": run.step},
                         batch_size=hp.eval.batch_size)
        self._stats_args = None
        self.standing_stats = {"passes": int(hp.eval.standing_stats_passes),
                               "batch_size": int(hp.eval.standing_stats_batch)}

    def configure(self, counts, truncation: float, seed: int, convention: str) -> None:
        self._stats_args = (list(counts), float(truncation), int(seed), convention)
        module = module_statistics(self.generator)
        if module is not None and module.covers(float(truncation), convention):
            # An untrained import samples with the module's own statistics: no passes run (and the
            # plan, which a rerun must find again, says so).
            self.standing_stats = {"statistics": "module"}
        self.standing_stats.update(truncation=float(truncation), latent_convention=convention)

    def prepare(self) -> None:
        counts, truncation, seed, convention = self._stats_args
        apply_standing_stats(self.generator, truncation, int(self.hp.eval.standing_stats_passes),
                             int(self.hp.eval.standing_stats_batch), seed, convention, class_counts=counts)


class ModuleSource:
    """An exported TF-Hub module (ours or one with the official `default` signature).

    Calls `signatures['default'](z=, y=one-hot, truncation=)['default']`. dim_z, num_classes and the
    resolution come from `assets/metadata.json` when present (our exports), else from the signature.
    """

    def __init__(self, path: str, truncation: float):
        if not tf.io.gfile.isdir(path):
            raise UserError(f"--module={path}: no such directory; pass the directory --mode=export wrote "
                            f"(a SavedModel / TF-Hub module)")
        try:
            module = tf.saved_model.load(path)
        except (OSError, ValueError, tf.errors.OpError) as exc:
            raise UserError(f"--module={path}: cannot load it as a SavedModel ({exc}); pass the directory "
                            f"--mode=export wrote") from None
        if "default" not in getattr(module, "signatures", {}):
            raise UserError(f"--module={path}: has no 'default' signature (z, y, truncation -> default); "
                            f"export it with --mode=export")
        self.module = module
        self.signature = module.signatures["default"]
        meta_path = os.path.join(path, "assets", "metadata.json")
        self.metadata = {}
        if tf.io.gfile.exists(meta_path):
            with tf.io.gfile.GFile(meta_path) as f:
                self.metadata = json.load(f)
        _, inputs = self.signature.structured_input_signature
        if not {"z", "y", "truncation"} <= set(inputs):
            raise UserError(f"--module={path}: its 'default' signature takes {sorted(inputs)}, expected z, y "
                            f"and truncation (the official BigGAN modules' contract)")
        self.dim_z = int(self.metadata.get("dim_z") or inputs["z"].shape[-1])
        self.num_classes = int(self.metadata.get("num_classes") or inputs["y"].shape[-1])
        resolution = self.metadata.get("resolution")
        if not resolution:
            out = self.signature.structured_outputs["default"].shape
            resolution = out[1] if out.rank == 4 and out[1] is not None else None
        if not resolution:
            resolution = int(self.generate(tf.zeros((1, self.dim_z)), tf.zeros((1,), tf.int32),
                                           truncation=truncation or 1.0).shape[1])
        self.resolution = int(resolution)
        self.truncation = float(truncation)
        hparams = self.metadata.get("hparams") or {}
        self.batch_size = int((hparams.get("eval") or {}).get("batch_size") or 64)
        self.description = {"kind": "module", "module": paths.absolute(path)}
        if "step" in self.metadata:
            self.description["step"] = int(self.metadata["step"])
        self.standing_stats = None  # the module's own, chosen by its truncation input

    def prepare(self) -> None:
        pass

    def generate(self, z, labels, truncation: Optional[float] = None) -> tf.Tensor:
        y = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=tf.float32)
        t = self.truncation if truncation is None else truncation
        return self.signature(z=tf.convert_to_tensor(z, tf.float32), y=y,
                              truncation=tf.constant(t, tf.float32))["default"]
