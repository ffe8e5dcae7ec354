"""The projection discriminator D of BigGAN (Tables 4-6, Figure 15c) and BigGAN-deep (Tables 7-9).

ResBlocks down to 4x4, a non-local block where the table puts it, then ReLU, global SUM pooling
and the projection output of Miyato & Koyama (2018): D(x, y) = linear(h) + Embed(y) . h, with the
linear layer, the class embedding and every conv spectrally normalised. BigGAN-deep first maps the
image to ch channels with a 3x3 conv (Table 7).

D is called as D((x, y)), x [batch, H, W, 3] in [-1, 1], y int labels [batch] or class vectors
[batch, num_classes]; it returns logits [batch], float32.

`dropout` (a drop probability, stability.d_dropout) applies dropout to the last feature layer, the
pooled features both outputs read (Section 4.2, Appendix I, Figures 25-26), in training calls only,
with a stateless mask drawn from the call's `dropout_seed` (int64 [2]; the training step passes the
key of its `d_dropout_key` part, training/stability.py).
"""

from __future__ import annotations

import tensorflow as tf

from tf_biggan.layers.spectral_norm import SNConv2D, SNDense, SNEmbedding
from tf_biggan.models.arch import RGB
from tf_biggan.models.biggan import DBlock
from tf_biggan.models.biggan_deep import DeepDBlock
from tf_biggan.models.generator import class_vectors
from tf_biggan.models.staged import StagedNetwork


class Discriminator(StagedNetwork):
    def __init__(self, cfg, num_classes: int, dropout: float = 0.0, **kwargs):
        kwargs.setdefault("name", "discriminator")
        super().__init__(cfg, num_classes, **kwargs)
        self.dropout = dropout
        ch = cfg.ch
        sn = dict(sn_epsilon=cfg.sn_epsilon, sn_normalize=cfg.sn_normalize, dtype=self.dtype_policy)
        self.in_conv = SNConv2D(ch, 3, name="in_conv", **sn) if self.deep else None

        def make_block(spec, name):
            in_channels = 3 if spec.in_mult == RGB else spec.in_mult * ch
            if self.deep:
                return DeepDBlock(in_channels, spec.out_mult * ch, downsample=spec.resample, name=name, **sn)
            return DBlock(in_channels, spec.out_mult * ch, downsample=spec.resample,
                          preactivation=spec.in_mult != RGB, name=name, **sn)

        self._build_stages(self.arch.d_stages, self.arch.d_attention, make_block)
        last = self.arch.d_blocks[-1].out_mult * ch
        self.linear = SNDense(1, name="linear", **sn)
        self.embed = SNEmbedding(num_classes, last, name="embed", **sn)

    def call(self, inputs, training=False, dropout_seed=None):
        return self.forward(inputs, training=training, dropout_seed=dropout_seed)

    def forward(self, inputs, training=False, trace=None, dropout_seed=None):
        x, y = inputs
        h = tf.cast(x, self.compute_dtype)
        if self.in_conv is not None:
            h = self.in_conv(h, training=training)
            if trace is not None:
                trace.append(("in_conv", h.shape, self.in_conv))
        h = self._run_stages(h, lambda i, block, h: block(h, training=training), training, trace)
        h = tf.reduce_sum(tf.nn.relu(h), axis=[1, 2])  # global sum pooling
        h = tf.cast(h, tf.float32)
        if training and self.dropout > 0:
            if dropout_seed is None:
                raise ValueError("D has dropout: a training call needs dropout_seed (int64 [2])")
            h = tf.nn.experimental.stateless_dropout(h, rate=self.dropout, seed=dropout_seed)
        y = class_vectors(y, self.num_classes, self.compute_dtype)
        projection = tf.reduce_sum(tf.cast(self.embed(y, training=training), tf.float32) * h, axis=-1)
        out = tf.cast(self.linear(tf.cast(h, self.compute_dtype), training=training), tf.float32)[:, 0] + projection
        if trace is not None:
            trace.append(("relu+sum_pool+linear+projection", out.shape, [self.linear, self.embed]))
        return out

    def build_for_input(self, batch: int = 1) -> None:
        res = self.cfg.resolution
        self((tf.zeros((batch, res, res, 3)), tf.zeros((batch,), tf.int32)), training=False)
