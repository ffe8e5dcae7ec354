"""Cross-replica (conditional) batch norm with standing statistics.

Paper Section 3 and Appendix C: G uses class-conditional BatchNorm (Dumoulin et al.; de Vries et al.)
whose per-sample gains and biases are linear projections of the conditioning vector (shared class
embedding, plus the z chunk with skip-z): gain = 1 + W_g c (centred at 1), bias = W_b c (centred at
0) (Appendix B). Moments are aggregated across ALL replicas ("cross-replica BatchNorm", Appendix C),
with epsilon = 1e-4.

Moments are computed in two all-reduces (mean first, then the centred second moment), always in
float32, rather than as E[x^2] - E[x]^2 in one: the one-pass form loses precision and can go negative
in low precision, the failure TF 2.2's SyncBatchNormalization showed (tensorflow#41980).

Three ways to normalise:
- training=True: batch moments over the global batch; moving averages updated (decay
  `moving_decay`);
- training=False: the stored statistics (`moving_mean`, `moving_var`), which standing statistics
  overwrite (Appendix C.1);
- accumulate=True: batch moments are used AND added to accumulators, without touching the stored
  statistics; `finalize_standing_stats` then stores the average of the per-pass moments, mean_p(mean_p)
  and mean_p(var_p), as the authors' code aggregates them (compare_gan's `accumulated_mean /
  accumulation_counter`, the variables the official TF-Hub modules hold; BigGAN-PyTorch's
  `utils.accumulate_standing_stats` keeps the same average as a running mean). Not the pooled
  variance of all samples: that would add the spread of the per-pass means, mean_p(mean_p^2) -
  mean_p(mean_p)^2, which neither reference (nor the imported modules' statistics) contains.

In training, normalisation and the (conditional) affine map are one op with a closed-form gradient
(`_train_batch_norm`): autodiff of the plain formula keeps x - mean twice and x_hat for the backward
computation, three activation-sized tensors per BN; the closed form keeps x alone and recomputes x_hat
(about 0.2 GiB off the peak of BigGAN-128's iteration at batch 8). Same function, same gradient up to
float rounding (tests/test_batch_norm.py checks both against autodiff of the formula).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tf_biggan.layers.spectral_norm import SNDense


def _count(x, axes):
    """The number of elements of `x` over `axes`, float32: a Const when those sizes are static (one op
    instead of ~7 shape ops, the same number)."""
    static = [x.shape[a] for a in axes]
    if all(d is not None for d in static):
        return tf.constant(float(np.prod(static)), tf.float32)
    return tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), tf.float32)


def cross_replica_moments(x, axes):
    """Mean and (biased) variance of `x` over `axes` and over all replicas in sync, float32."""
    x = tf.cast(x, tf.float32)
    count = _count(x, axes)
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    local_sum = tf.reduce_sum(x, axis=axes)
    if replicas > 1:
        total, n = ctx.all_reduce(tf.distribute.ReduceOp.SUM, [local_sum, count])
    else:
        total, n = local_sum, count
    mean = total / n
    local_sq = tf.reduce_sum(tf.square(x - mean), axis=axes)
    sq = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local_sq) if replicas > 1 else local_sq
    return mean, sq / n


def _sum_to(t, shape, axes):
    """Sums `t` over `axes` (keeping them) and reshapes it to `shape`: the gradient of a broadcast."""
    return tf.reshape(tf.reduce_sum(t, axis=axes, keepdims=True), shape)


def _train_batch_norm(x, gain, bias, epsilon: float):
    """(x_hat * gain + bias, mean, var) with batch moments over all replicas, float32.

    x: (batch, ..., C); gain, bias: float32, broadcastable to x ((C,) or (batch, 1, 1, C)). The
    gradient is BatchNorm's closed form with moments over the global batch of n values per channel,
        dx = inv * (g - mean(g) - x_hat * mean(g * x_hat)),  g = dy * gain,  inv = 1 / sqrt(var + eps)
    whose two means are all-reduced like the forward moments. mean and var are returned for the
    moving averages / standing statistics only: no gradient flows through them.
    """
    axes = list(range(len(x.shape) - 1))
    ctx = tf.distribute.get_replica_context()
    replicas = ctx.num_replicas_in_sync if ctx is not None else 1
    if gain.shape.rank == len(x.shape):  # per sample, (batch, 1, 1, C): its gradient sums the broadcast axes
        gain_axes = [a for a in axes if gain.shape[a] == 1]
    else:  # per channel, (C,): its gradient sums every axis but the channels
        gain_axes = axes

    @tf.custom_gradient
    def bn(x, gain, bias):
        x32 = tf.cast(x, tf.float32)
        mean, var = cross_replica_moments(x32, axes)
        inv = tf.math.rsqrt(var + epsilon)
        out = (x32 - mean) * inv * gain + bias

        def grad(dy, _dmean, _dvar):
            x_hat = (tf.cast(x, tf.float32) - mean) * inv  # recomputed: x is all the backward keeps
            dy = tf.cast(dy, tf.float32)
            g = dy * gain
            n = _count(g, axes)
            sums = [tf.reduce_sum(g, axis=axes), tf.reduce_sum(g * x_hat, axis=axes), n]
            if replicas > 1:
                sums = ctx.all_reduce(tf.distribute.ReduceOp.SUM, sums)
            dx = inv * (g - sums[0] / sums[2] - x_hat * (sums[1] / sums[2]))
            return (tf.cast(dx, x.dtype), _sum_to(dy * x_hat, tf.shape(gain), gain_axes),
                    _sum_to(dy, tf.shape(bias), gain_axes))
        return (out, tf.stop_gradient(mean), tf.stop_gradient(var)), grad

    return bn(x, gain, bias)


class CrossReplicaBatchNorm(keras.layers.Layer):
    """BatchNorm with cross-replica moments and standing statistics; learned gamma/beta.

    Used unconditionally before G's output convolution (Table 4: "BN, ReLU, 3x3 Conv ch -> 3").
    Subclasses replace the gain and bias by conditional projections.
    """

    def __init__(self, epsilon: float = 1e-4, moving_decay: float = 0.9, truncation_stats: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.moving_decay = moving_decay
        # Rows of truncation-indexed statistics (the official BigGAN-deep modules' 51), or 0.
        self.truncation_stats = truncation_stats
        # (mean, var) tensors used at inference instead of the stored statistics, set only while
        # tracing a function that selects statistics by truncation (see `stats_from`).
        self.stats_override = None

    def _build_stats(self, channels: int) -> None:
        stat = dict(trainable=False, autocast=False, aggregation="only_first_replica")
        self.moving_mean = self.add_weight(name="moving_mean", shape=(channels,), initializer="zeros", **stat)
        self.moving_var = self.add_weight(name="moving_var", shape=(channels,), initializer="ones", **stat)
        # Standing-statistics accumulators (Appendix C.1).
        self.accum_mean = self.add_weight(name="accum_mean", shape=(channels,), initializer="zeros", **stat)
        self.accum_var = self.add_weight(name="accum_var", shape=(channels,), initializer="zeros", **stat)
        self.accum_count = self.add_weight(name="accum_count", shape=(), initializer="zeros", **stat)
        if self.truncation_stats:
            rows = (self.truncation_stats, channels)
            self.truncation_mean = self.add_weight(name="truncation_mean", shape=rows, initializer="zeros", **stat)
            self.truncation_var = self.add_weight(name="truncation_var", shape=rows, initializer="ones", **stat)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        self._build_stats(channels)

    def _batch_norm(self, x, gain, bias, training, accumulate):
        """x normalised per channel, times `gain` plus `bias` (float32 tensors broadcastable to x)."""
        if training or accumulate:
            out, mean, var = _train_batch_norm(x, gain, bias, self.epsilon)
            if training:
                d = self.moving_decay
                self.moving_mean.assign(d * self.moving_mean + (1.0 - d) * mean)
                self.moving_var.assign(d * self.moving_var + (1.0 - d) * var)
            if accumulate:
                self.accum_mean.assign_add(mean)
                self.accum_var.assign_add(var)
                self.accum_count.assign_add(1.0)
            return out
        if self.stats_override is not None:
            mean, var = self.stats_override
        else:
            mean = tf.convert_to_tensor(self.moving_mean)
            var = tf.convert_to_tensor(self.moving_var)
        # (x - mean) * rsqrt(var + eps) * gain + bias, as x * scale + shift: the per-(sample, channel)
        # factors are formed on the small [C] / [batch, 1, 1, C] tensors, so the activation is read and
        # written twice instead of four times (the same function up to float rounding).
        scale = tf.math.rsqrt(var + self.epsilon) * gain
        return tf.cast(x, tf.float32) * scale + (bias - mean * scale)

    def call(self, x, training=False, accumulate=False):
        out = self._batch_norm(x, tf.cast(self.gamma, tf.float32), tf.cast(self.beta, tf.float32), training, accumulate)
        return tf.cast(out, self.compute_dtype)

    def reset_standing_stats(self) -> None:
        for v in (self.accum_mean, self.accum_var):
            v.assign(tf.zeros_like(v))
        self.accum_count.assign(0.0)

    def use_truncation_stats(self, truncation: float) -> None:
        """Stores the truncation-indexed statistics at `truncation` as the inference statistics: rows
        k = 0..R-1 hold truncation k / (R-1); between two rows they are interpolated linearly
        (`interpolate_rows`), as the official BigGAN-deep modules' statistics are."""
        self.moving_mean.assign(interpolate_rows(self.truncation_mean, truncation))
        self.moving_var.assign(interpolate_rows(self.truncation_var, truncation))

    def finalize_standing_stats(self) -> None:
        """Stores the average per-pass moments of the accumulated passes as the inference statistics."""
        n = tf.maximum(self.accum_count, 1.0)
        self.moving_mean.assign(self.accum_mean / n)
        self.moving_var.assign(self.accum_var / n)


class ConditionalBatchNorm(CrossReplicaBatchNorm):
    """Class-conditional BN: x_hat * (1 + W_g c) + W_b c, with W_g, W_b spectrally normalised.

    Called as layer((x, c)). The projections have no bias (the `1 +` and the zero centre play that
    role; this is also what makes G's parameter count 70.4M, Table 1). They are orthogonally
    initialised and spectrally normalised like every G weight (Section 3, Appendix C), so the layer
    is the identity on x_hat exactly where the conditioning is at its centre, c = 0.
    """

    def __init__(self, sn_epsilon: float = 1e-4, sn_normalize: str = "max", **kwargs):
        super().__init__(**kwargs)
        self.sn_epsilon = sn_epsilon  # (truncation_stats: CrossReplicaBatchNorm's)
        self.sn_normalize = sn_normalize

    def build(self, input_shape):
        x_shape, _ = input_shape
        channels = int(x_shape[-1])
        self.gain = SNDense(channels, use_bias=False, sn_epsilon=self.sn_epsilon, sn_normalize=self.sn_normalize, name="gain", dtype=self.dtype_policy)
        self.bias = SNDense(channels, use_bias=False, sn_epsilon=self.sn_epsilon, sn_normalize=self.sn_normalize, name="bias", dtype=self.dtype_policy)
        self._build_stats(channels)

    def call(self, inputs, training=False, accumulate=False):
        x, cond = inputs
        gain = 1.0 + tf.cast(self.gain(cond, training=training), tf.float32)
        bias = tf.cast(self.bias(cond, training=training), tf.float32)
        # (batch, C) -> (batch, 1, 1, C) for feature maps: one Reshape each (a strided slice per new
        # axis was 4 ops and a StridedSliceGrad in the backward; the same values)
        if len(x.shape) > 2:
            shape = (-1,) + (1,) * (len(x.shape) - 2) + (int(gain.shape[-1]),)
            gain, bias = tf.reshape(gain, shape), tf.reshape(bias, shape)
        return tf.cast(self._batch_norm(x, gain, bias, training, accumulate), self.compute_dtype)


def interpolate_rows(table, truncation: float) -> tf.Tensor:
    """Row `truncation * (R-1)` of the [R, C] `table`, linear between its two neighbours, clamped to
    [0, 1]: w = t(R-1) - floor(t(R-1)), (1 - w) * row[floor] + w * row[floor + 1], in float32.

    This is the continuous reading of the official BigGAN-deep modules' 51 statistic sets (truncation
    0, 0.02, ..., 1.0). pytorch-pretrained-BigGAN weights the two rows the other way round
    (`math.modf(t / step)` gives the lower row the weight w) and picks the next row at some grid
    points through float64 rounding (0.14 -> row 8); both readings agree at grid points such as
    0.2, 0.5 and 1.0, and wherever neighbouring rows are equal."""
    table = tf.convert_to_tensor(table, tf.float32)
    rows = table.shape[0]
    position = tf.clip_by_value(tf.cast(truncation, tf.float32), 0.0, 1.0) * float(rows - 1)
    low = tf.minimum(tf.floor(position), float(rows - 2))
    weight = position - low
    low = tf.cast(low, tf.int32)
    return (1.0 - weight) * table[low] + weight * table[low + 1]


def batch_norm_layers(model) -> list:
    """Every cross-replica BN layer of `model` (for standing statistics)."""
    return [layer for layer in model._flatten_layers(include_self=True, recursive=True)
            if isinstance(layer, CrossReplicaBatchNorm)]


class stats_from:
    """Context manager: inference BN statistics come from `stats`, {moving_mean path: (mean, var)}.

    Used while tracing an exported function whose statistics are computed from an input (the
    truncation), so the traced graph reads them instead of the layers' variables.
    """

    def __init__(self, model, stats):
        self.layers = batch_norm_layers(model)
        self.stats = stats

    def __enter__(self):
        for layer in self.layers:
            layer.stats_override = self.stats[layer.moving_mean.path]
        return self

    def __exit__(self, *exc):
        for layer in self.layers:
            layer.stats_override = None
        return False
