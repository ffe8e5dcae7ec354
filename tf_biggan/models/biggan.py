"""BigGAN residual blocks, paper Figure 15 (b) and (c).

ResBlock up (G): BN(c) -> ReLU -> upsample -> 3x3 conv -> BN(c) -> ReLU -> 3x3 conv, plus a shortcut
of upsample + 1x1 conv. ResBlock down (D): ReLU -> 3x3 conv -> ReLU -> 3x3 conv -> average pool, plus
a shortcut of 1x1 conv + average pool. The first D block reads the image and has no leading ReLU
(as in SN-GAN, SA-GAN and BigGAN-PyTorch: a ReLU on the image would discard its negative half).
In the shortcuts the 1x1 conv is applied at the lower resolution: nearest upsampling and average
pooling commute exactly with a 1x1 conv (both are linear and per-pixel), so this is the same function
at a quarter of the cost.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_biggan.layers.batch_norm import ConditionalBatchNorm
from tf_biggan.layers.container import BuildsOnFirstCall
from tf_biggan.layers.spectral_norm import SNConv2D
from tf_biggan.layers.upsample_conv import SNUpsampleConv2D


def _repeat2(x, axis: int):
    """x with every element along `axis` (1 or 2 of NHWC) repeated twice: a Tile of a new axis after
    it and a Reshape, 5 graph ops where tf.repeat builds ~31 (its dynamic-shape bookkeeping). The
    gradient sums the same pairs as tf.repeat's: values and gradients bit-identical op for op
    (tests/test_models.py); inside an optimised step Grappler may rewrite the static-shape form a
    little differently (float rounding)."""
    shape = x.shape.as_list()
    if any(d is None for d in shape[1:]):
        return tf.repeat(x, 2, axis=axis)
    multiples = [1] * 5
    multiples[axis + 1] = 2
    out = shape[1:]
    out[axis - 1] *= 2
    return tf.reshape(tf.tile(tf.expand_dims(x, axis + 1), multiples), [-1] + out)


def upsample(x):
    """Nearest-neighbour 2x upsampling (exact, TPU-friendly)."""
    return _repeat2(_repeat2(x, 1), 2)


def add_upsampled(h, s):
    """h + upsample(s) for h [batch, 2H, 2W, C] and s [batch, H, W, C]: one broadcast add on h viewed as
    [batch, H, 2, W, 2, C], instead of two tiles (each writing the larger tensor) and an add. The same
    values bit for bit; the gradient of s sums each 2x2 block of dh, as the tiles' does (up to the order
    of that sum). Falls back to the plain form when a spatial size is unknown."""
    hs, ss = h.shape.as_list(), s.shape.as_list()
    if any(d is None for d in hs[1:] + ss[1:]):
        return h + upsample(s)
    height, width, channels = ss[1:]
    h6 = tf.reshape(h, [-1, height, 2, width, 2, channels])
    s6 = tf.reshape(s, [-1, height, 1, width, 1, channels])
    return tf.reshape(h6 + s6, [-1] + hs[1:])


def downsample(x):
    """2x2 average pooling."""
    return tf.nn.avg_pool2d(x, 2, 2, "VALID")


class GBlock(BuildsOnFirstCall, keras.layers.Layer):
    """BigGAN ResBlock up (Figure 15b). Called as block((x, cond))."""

    def __init__(self, in_channels, out_channels, upsample=True, bn_epsilon=1e-4, sn_epsilon=1e-4, sn_normalize="max",
                 bn_moving_decay=0.9, truncation_stats=0, **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels, self.upsample = in_channels, out_channels, upsample
        common = dict(dtype=self.dtype_policy)
        bn = dict(epsilon=bn_epsilon, sn_epsilon=sn_epsilon, sn_normalize=sn_normalize, moving_decay=bn_moving_decay,
                  truncation_stats=truncation_stats, **common)
        conv = dict(sn_epsilon=sn_epsilon, sn_normalize=sn_normalize, **common)
        self.bn1 = ConditionalBatchNorm(name="bn1", **bn)
        # upsample + 3x3 conv, computed at the input's resolution (layers/upsample_conv.py)
        self.conv1 = (SNUpsampleConv2D if upsample else SNConv2D)(out_channels, 3, name="conv1", **conv)
        self.bn2 = ConditionalBatchNorm(name="bn2", **bn)
        self.conv2 = SNConv2D(out_channels, 3, name="conv2", **conv)
        self.learnable_shortcut = in_channels != out_channels or upsample
        if self.learnable_shortcut:
            self.conv_sc = SNConv2D(out_channels, 1, name="conv_sc", **conv)

    def call(self, inputs, training=False, accumulate=False):
        x, cond = inputs
        h = tf.nn.relu(self.bn1((x, cond), training=training, accumulate=accumulate))
        h = self.conv1(h, training=training)
        h = tf.nn.relu(self.bn2((h, cond), training=training, accumulate=accumulate))
        h = self.conv2(h, training=training)
        shortcut = x
        if self.learnable_shortcut:
            shortcut = self.conv_sc(shortcut, training=training)
        return add_upsampled(h, shortcut) if self.upsample else h + shortcut


class DBlock(BuildsOnFirstCall, keras.layers.Layer):
    """BigGAN ResBlock down (Figure 15c)."""

    def __init__(self, in_channels, out_channels, downsample=True, preactivation=True, sn_epsilon=1e-4, sn_normalize="max",
                 **kwargs):
        super().__init__(**kwargs)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.downsample, self.preactivation = downsample, preactivation
        conv = dict(sn_epsilon=sn_epsilon, sn_normalize=sn_normalize, dtype=self.dtype_policy)
        self.conv1 = SNConv2D(out_channels, 3, name="conv1", **conv)
        self.conv2 = SNConv2D(out_channels, 3, name="conv2", **conv)
        self.learnable_shortcut = in_channels != out_channels or downsample
        if self.learnable_shortcut:
            self.conv_sc = SNConv2D(out_channels, 1, name="conv_sc", **conv)

    def call(self, x, training=False):
        h = tf.nn.relu(x) if self.preactivation else x
        h = self.conv1(h, training=training)
        h = self.conv2(tf.nn.relu(h), training=training)
        shortcut = x
        if self.downsample:
            h = downsample(h)
            shortcut = downsample(shortcut)
        if self.learnable_shortcut:
            shortcut = self.conv_sc(shortcut, training=training)
        return h + shortcut
