"""BigGAN-deep residual blocks with bottlenecks, paper Figure 16 (b) and (c), Appendix B.

G block: BN(c) -> ReLU -> 1x1 conv C_in -> C_in/4 -> BN(c) -> ReLU -> [upsample] -> 3x3 conv ->
BN(c) -> ReLU -> 3x3 conv -> BN(c) -> ReLU -> 1x1 conv -> C_out. Skip: keep the first C_out channels
("drop channels") and upsample; identity when widths match.
D block: ReLU -> 1x1 conv C_in -> C_out/4 -> ReLU -> 3x3 conv -> ReLU -> 3x3 conv -> ReLU ->
[average pool] -> 1x1 conv -> C_out. Skip: [average pool], then when C_out > C_in concatenate the
input with a 1x1 conv of it to C_out - C_in channels, so the input passes unperturbed.
The bottleneck width is C_in/4 in G and C_out/4 in D, the reading under which G and D have the
paper's 50.4M and 34.6M parameters at 128 px (Appendix B).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_biggan.layers.batch_norm import ConditionalBatchNorm
from tf_biggan.layers.container import BuildsOnFirstCall
from tf_biggan.layers.spectral_norm import SNConv2D
from tf_biggan.layers.upsample_conv import SNUpsampleConv2D
from tf_biggan.models.biggan import add_upsampled, downsample


class DeepGBlock(BuildsOnFirstCall, keras.layers.Layer):
    """BigGAN-deep ResBlock (up) (Figure 16b). Called as block((x, cond))."""

    def __init__(self, in_channels, out_channels, upsample=True, bn_epsilon=1e-4, sn_epsilon=1e-4, sn_normalize="max",
                 bn_moving_decay=0.9, truncation_stats=0, **kwargs):
        super().__init__(**kwargs)
        if out_channels > in_channels:
            raise ValueError("BigGAN-deep G blocks only keep or reduce the width (drop channels)")
        self.in_channels, self.out_channels, self.upsample = in_channels, out_channels, upsample
        hidden = in_channels // 4
        common = dict(dtype=self.dtype_policy)
        bn = dict(epsilon=bn_epsilon, sn_epsilon=sn_epsilon, sn_normalize=sn_normalize, moving_decay=bn_moving_decay,
                  truncation_stats=truncation_stats, **common)
        conv = dict(sn_epsilon=sn_epsilon, sn_normalize=sn_normalize, **common)
        self.bn1 = ConditionalBatchNorm(name="bn1", **bn)
        self.conv1 = SNConv2D(hidden, 1, name="conv1", **conv)
        self.bn2 = ConditionalBatchNorm(name="bn2", **bn)
        # upsample + 3x3 conv, computed at the input's resolution (layers/upsample_conv.py)
        self.conv2 = (SNUpsampleConv2D if upsample else SNConv2D)(hidden, 3, name="conv2", **conv)
        self.bn3 = ConditionalBatchNorm(name="bn3", **bn)
        self.conv3 = SNConv2D(hidden, 3, name="conv3", **conv)
        self.bn4 = ConditionalBatchNorm(name="bn4", **bn)
        self.conv4 = SNConv2D(out_channels, 1, name="conv4", **conv)

    def call(self, inputs, training=False, accumulate=False):
        x, cond = inputs
        kw = dict(training=training, accumulate=accumulate)
        h = self.conv1(tf.nn.relu(self.bn1((x, cond), **kw)), training=training)
        h = tf.nn.relu(self.bn2((h, cond), **kw))
        shortcut = x[..., : self.out_channels] if self.out_channels != self.in_channels else x
        h = self.conv2(h, training=training)
        h = self.conv3(tf.nn.relu(self.bn3((h, cond), **kw)), training=training)
        h = self.conv4(tf.nn.relu(self.bn4((h, cond), **kw)), training=training)
        return add_upsampled(h, shortcut) if self.upsample else h + shortcut


class DeepDBlock(BuildsOnFirstCall, keras.layers.Layer):
    """BigGAN-deep ResBlock (down) (Figure 16c)."""

    def __init__(self, in_channels, out_channels, downsample=True, sn_epsilon=1e-4, sn_normalize="max", **kwargs):
        super().__init__(**kwargs)
        if out_channels < in_channels:
            raise ValueError("BigGAN-deep D blocks only keep or grow the width (concatenated skip)")
        self.in_channels, self.out_channels, self.downsample = in_channels, out_channels, downsample
        hidden = out_channels // 4
        conv = dict(sn_epsilon=sn_epsilon, sn_normalize=sn_normalize, dtype=self.dtype_policy)
        self.conv1 = SNConv2D(hidden, 1, name="conv1", **conv)
        self.conv2 = SNConv2D(hidden, 3, name="conv2", **conv)
        self.conv3 = SNConv2D(hidden, 3, name="conv3", **conv)
        self.conv4 = SNConv2D(out_channels, 1, name="conv4", **conv)
        if out_channels > in_channels:
            self.conv_sc = SNConv2D(out_channels - in_channels, 1, name="conv_sc", **conv)

    def call(self, x, training=False):
        h = self.conv1(tf.nn.relu(x), training=training)
        h = self.conv2(tf.nn.relu(h), training=training)
        h = tf.nn.relu(self.conv3(tf.nn.relu(h), training=training))
        shortcut = x
        if self.downsample:
            h, shortcut = downsample(h), downsample(shortcut)
        h = self.conv4(h, training=training)
        if self.out_channels > self.in_channels:
            shortcut = tf.concat([shortcut, self.conv_sc(shortcut, training=training)], axis=-1)
        return h + shortcut
