"""What training shows of itself: σ0-σ2 of every weight and the grid of EMA-G samples.

- `SingularValues`: the top three singular values of the raw kernel of every spectrally
  normalised G and D layer (paper Section 4: "the top three singular values σ0, σ1, σ2 of each
  weight matrix [are] the most informative"; Appendix F plots them).
- `SampleGrid`: a PNG-ready uint8 grid of EMA-G samples, rows = classes (at most 10, spread over
  all classes), fixed z (seed stream train_sample_grid), so successive grids are comparable. It
  runs UNDER THE STRATEGY (strategy.run, then gather), so on a TPU the generator runs on the TPU,
  not on its host. Before sampling, EMA-G gets standing statistics (Appendix C.1) from a SMALL
  budget, train.sample_stats_passes x train.sample_stats_batch (0 passes: EMA-G's own BN
  statistics); the full Appendix C.1 budget (eval.standing_stats_*) is for eval, sweep, export and
  synthesis, not for a monitoring picture.
"""

from __future__ import annotations

import math
from typing import Dict

import numpy as np
import tensorflow as tf

from tf_biggan import seeds
from tf_biggan.images import tile
from tf_biggan.layers.spectral_norm import spectral_norm_layers


class SingularValues:
    """{"G/<kernel path>": [σ0, σ1, σ2], "D/...": ...} of every spectrally normalised layer."""

    def __init__(self, g, d):
        self.layers = [("G", l) for l in spectral_norm_layers(g)] + [("D", l) for l in spectral_norm_layers(d)]
        # No AutoGraph: plain Python loops over layers (conversion of the bound methods failed under
        # MultiWorkerMirroredStrategy).
        self._fn = tf.function(self._all_layers, autograph=False)

    def _all_layers(self):
        # One layer after another (each after the previous one's result): the runtime would otherwise
        # start every layer's Gram matrix and subspace iteration at once and hold them all together,
        # a peak above the training iteration's at BigGAN-128. One at a time it is the
        # largest single layer's, for the same values.
        values, after = [], []
        for _, layer in self.layers:
            with tf.control_dependencies(after):
                value = layer.singular_values(3)
            values.append(value)
            after = [value]
        return values

    def __call__(self) -> Dict[str, np.ndarray]:
        return {f"{net}/{l.kernel.path}": v.numpy() for (net, l), v in zip(self.layers, self._fn())}


def sigma_scalars(values: Dict[str, np.ndarray]) -> Dict[str, float]:
    """sv/<model>/<layer>/sigma<i>: σ0-σ2 of every weight from `SingularValues`' values (the σ action's
    scalars; collapse detection reads G's σ0 from them)."""
    return {f"sv/{name}/sigma{i}": float(value) for name, sv in values.items() for i, value in enumerate(sv)}


def _replica_slice(x, per_replica: int):
    ctx = tf.distribute.get_replica_context()
    replica = ctx.replica_id_in_sync_group if ctx is not None else 0
    start = tf.cast(replica, tf.int32) * per_replica
    return x[start:start + per_replica]


class SampleGrid:
    """uint8 grid of EMA-G samples under `strategy` (module docstring)."""

    def __init__(self, ema_g, hp, strategy):
        self.ema_g, self.strategy = ema_g, strategy
        cfg, replicas = hp.train, strategy.num_replicas_in_sync
        self.seed, self.passes = cfg.seed, cfg.sample_stats_passes
        self.rows, self.cols = min(hp.data.num_classes, 10), cfg.sample_columns
        n = self.rows * self.cols
        self.per_replica = math.ceil(n / replicas)
        classes = np.repeat(np.linspace(0, hp.data.num_classes - 1, self.rows).round().astype(np.int32), self.cols)
        pad = self.per_replica * replicas - n  # every replica samples the same count; padding is dropped
        self.classes = tf.constant(np.concatenate([classes, classes[:1].repeat(pad)]))
        self.z = tf.random.stateless_normal((self.per_replica * replicas, hp.model.dim_z),
                                            seed=seeds.key("train_sample_grid", cfg.seed))
        self.n = n
        self.stats_per_replica = math.ceil(cfg.sample_stats_batch / replicas)
        self.stats_batch = self.stats_per_replica * replicas
        self.num_classes, self.dim_z = hp.data.num_classes, hp.model.dim_z

        # Drawn a chunk (at most one row) at a time: inference BN makes every image independent of
        # its batch, so the grid is the same, and the peak is one row's activations (BigGAN-128,
        # batch 8: about 0.4 GB off the grid stage's peak).
        self.chunk = max(c for c in range(1, min(self.per_replica, self.cols) + 1) if self.per_replica % c == 0)
        self.chunks = self.per_replica // self.chunk

        def sample(i):
            z, y = _replica_slice(self.z, self.per_replica), _replica_slice(self.classes, self.per_replica)
            rows = i * self.chunk + tf.range(self.chunk)  # a static chunk shape: one trace for all chunks
            return tf.cast(self.ema_g((tf.gather(z, rows), tf.gather(y, rows)), training=False), tf.float32)
        self._sample = tf.function(sample, autograph=False)  # plain graph code: no conversion cost

    def _stats_latents(self, counter):
        """This replica's slice of one standing-statistics batch (stream train_sample_stats)."""
        counter = tf.cast(counter, tf.int64) * 2
        z = tf.random.stateless_normal((self.stats_batch, self.dim_z),
                                       seed=seeds.key("train_sample_stats", self.seed, counter))
        y = tf.random.stateless_uniform((self.stats_batch,), seed=seeds.key("train_sample_stats", self.seed, counter + 1),
                                        maxval=self.num_classes, dtype=tf.int32)
        return _replica_slice(z, self.stats_per_replica), _replica_slice(y, self.stats_per_replica)

    def __call__(self) -> np.ndarray:
        if self.passes:
            from tf_biggan.layers.spectral_norm import settle_spectral_norm
            from tf_biggan.sampling.standing_stats import accumulate_standing_stats

            # EMA-G's sigma from its own kernels before its statistics are taken (its u trails the
            # averaged kernels by one power iteration per step)
            settle_spectral_norm(self.ema_g, self.ema_g.cfg.sn_settle_iterations)
            accumulate_standing_stats(self.ema_g, num_passes=self.passes, latents=self._stats_latents,
                                      strategy=self.strategy)
        # gather (all workers' replicas, in order) per chunk: (replicas * chunk, ...) -> each replica's
        # slice is its chunks in order
        parts = [self.strategy.gather(self.strategy.run(self._sample, args=(tf.constant(i),)), axis=0).numpy()
                 for i in range(self.chunks)]
        replicas = parts[0].shape[0] // self.chunk
        images = np.concatenate([p.reshape((replicas, self.chunk) + p.shape[1:]) for p in parts], axis=1)
        images = images.reshape((-1,) + images.shape[2:])
        images = images[:self.n]
        return tile(images.reshape((self.rows, self.cols) + images.shape[1:]))
