"""The non-local (self-attention) block of SA-GAN (Zhang et al. 2018), as BigGAN places it (Tables 4-9).

theta = 1x1 conv C -> C/8 at every position; phi = 1x1 conv C -> C/8 and g = 1x1 conv C -> C/2,
each max-pooled 2x2 (SA-GAN's memory saving); attention = softmax(theta phi^T) over the pooled
positions; o = 1x1 conv C/2 -> C of (attention g); output = x + gamma * o with the learned gate
gamma initialised at 0, so the block starts as the identity. All convs are spectrally normalised and
bias-free, as in SA-GAN and BigGAN. The softmax is taken in float32 under bf16 mixed precision.

Memory. The attention map is the largest tensor of a BigGAN step: at 64 px it is
(batch, 4096, 1024) floats, 268 MB for D's 16 images of a D step, and autodiff keeps the softmax
for the backward computation. Training calls therefore go through `recompute_in_backward`
(layers/recompute.py): only theta, phi, g are kept and the backward computation forms the map again (theta
phi^T is a c/8-deep product and one softmax, a small fraction of the block's FLOPs), with TF's own
gradients, so the values are those of plain autodiff. With `per_image` (model.attention_per_image)
both passes also work one image at a time, so at most one image's map (16 MB) and its gradients are
alive at once (slower: ~10%).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tf_biggan.layers.recompute import recompute_in_backward
from tf_biggan.layers.spectral_norm import SNConv2D


def _attend(theta, phi, g):
    """softmax(theta phi^T) g, the logits and softmax in float32, the product in g's dtype."""
    logits = tf.matmul(tf.cast(theta, tf.float32), tf.cast(phi, tf.float32), transpose_b=True)
    return tf.matmul(tf.cast(tf.nn.softmax(logits, axis=-1), g.dtype), g)


@tf.custom_gradient
def _attend_per_image(theta, phi, g):
    """`_attend` on (batch, positions, channels) inputs, one image at a time in both passes.

    The recomputation is written out here rather than a map_fn over `recompute_in_backward(_attend)`:
    that form gives the right first-order gradients but zero second-order ones (a custom gradient
    inside map_fn's loop is not differentiated again), which R1's double backprop needs
    (tests/test_perf_memory.py)."""
    out = tf.map_fn(lambda a: _attend(*a), (theta, phi, g), fn_output_signature=g.dtype, parallel_iterations=1)

    def grad(d_out):
        def one(args):
            t, p, v, d = args
            with tf.GradientTape() as tape:
                tape.watch([t, p, v])
                o = _attend(t, p, v)
            return tape.gradient(o, [t, p, v], output_gradients=d)

        return tf.map_fn(one, (theta, phi, g, d_out), fn_output_signature=[theta.dtype, phi.dtype, g.dtype],
                         parallel_iterations=1)

    return out, grad


def attend(theta, phi, g, per_image: bool = False):
    """softmax(theta phi^T) g over a batch, the map recomputed in the backward computation rather than kept
    (module docstring); per_image: one image at a time in both passes."""
    return _attend_per_image(theta, phi, g) if per_image else recompute_in_backward(_attend)(theta, phi, g)


class SelfAttention(keras.layers.Layer):
    def __init__(self, sn_epsilon: float = 1e-4, per_image: bool = False, sn_normalize: str = "max", **kwargs):
        super().__init__(**kwargs)
        self.sn_epsilon = sn_epsilon
        self.sn_normalize = sn_normalize
        self.per_image = per_image  # training calls only (module docstring)

    def build(self, input_shape):
        c = int(input_shape[-1])
        if c % 8:
            raise ValueError(f"SelfAttention needs channels divisible by 8, got {c}")
        conv = dict(kernel_size=1, use_bias=False, sn_epsilon=self.sn_epsilon, sn_normalize=self.sn_normalize,
                    dtype=self.dtype_policy)
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
        o = tf.reshape(attend(theta, phi, g, per_image=self.per_image and bool(training)), (batch, h, w, c // 2))
        o = self.o(o, training=training)
        return x + tf.cast(self.gamma, self.compute_dtype) * o
