"""The non-local (self-attention) block of SA-GAN (Zhang et al. 2018), as BigGAN places it (Tables 4-9).

theta = 1x1 conv C -> C/8 at every position; phi = 1x1 conv C -> C/8 and g = 1x1 conv C -> C/2,
each max-pooled 2x2 (SA-GAN's memory saving); attention = softmax(theta phi^T) over the pooled
positions; o = 1x1 conv C/2 -> C of (attention g); output = x + gamma * o with the learned gate
gamma initialised at 0, so the block starts as the identity. All convs are spectrally normalised and
bias-free, as in SA-GAN and BigGAN. The softmax is taken in float32 under bf16 mixed precision.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_biggan.layers.spectral_norm import SNConv2D


class SelfAttention(keras.layers.Layer):
    def __init__(self, sn_epsilon: float = 1e-4, **kwargs):
        super().__init__(**kwargs)
        self.sn_epsilon = sn_epsilon

    def build(self, input_shape):
        c = int(input_shape[-1])
        if c % 8:
            raise ValueError(f"SelfAttention needs channels divisible by 8, got {c}")
        conv = dict(kernel_size=1, use_bias=False, sn_epsilon=self.sn_epsilon, dtype=self.dtype_policy)
        self.theta = SNConv2D(c // 8, name="theta", **conv)
        self.phi = SNConv2D(c // 8, name="phi", **conv)
        self.g = SNConv2D(c // 2, name="g", **conv)
        self.o = SNConv2D(c, name="o", **conv)
        self.gamma = self.add_weight(name="gamma", shape=(), initializer="zeros")

    def call(self, x, training=False):
        batch = tf.shape(x)[0]
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        theta = tf.reshape(self.theta(x, training=training), (batch, h * w, c // 8))
        phi = tf.nn.max_pool2d(self.phi(x, training=training), 2, 2, "VALID")
        phi = tf.reshape(phi, (batch, (h // 2) * (w // 2), c // 8))
        g = tf.nn.max_pool2d(self.g(x, training=training), 2, 2, "VALID")
        g = tf.reshape(g, (batch, (h // 2) * (w // 2), c // 2))
        logits = tf.matmul(tf.cast(theta, tf.float32), tf.cast(phi, tf.float32), transpose_b=True)
        attention = tf.cast(tf.nn.softmax(logits, axis=-1), self.compute_dtype)
        o = tf.reshape(tf.matmul(attention, g), (batch, h, w, c // 2))
        o = self.o(o, training=training)
        return x + tf.cast(self.gamma, self.compute_dtype) * o
