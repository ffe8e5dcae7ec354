"""DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training").

The simpler alternative to ADA: a fixed policy applied to every image D sees, real and fake, in D and
G steps alike. The three policies follow Zhao et al.'s TensorFlow definitions:

  color        brightness + U(-0.5, 0.5); saturation x U(0, 2) about the per-pixel channel mean;
               contrast x U(0.5, 1.5) about the image mean
  translation  integer shift in [-r, r] pixels per axis, r = round(0.125 x size), zeros shifted in
  cutout       a zeroed square of round(0.5 x size), centre uniform over the image

One change, for a reason: Zhao et al. cut out of EVERY image, and a projection applied with
probability 1 leaks (seed 003, Appendix C.4.4; BigGAN samples on 10% of CIFAR-10 show the holes,
data-efficient-gans #84). Here cutout is applied to each image with probability `p` < 1, so the
identity keeps a non-zero probability and the mixture of projections stays invertible.
"""

from __future__ import annotations

import tensorflow as tf

from tf_biggan.augment.transforms import cutout_mask
from tf_biggan.augment.spec import POLICIES, parse_policy  # noqa: F401  (apart: a config checks them without TF)


def rand_color(x, draws):
    x = x + (draws.uniform(1, 1, 1) - 0.5)
    mean = tf.reduce_mean(x, axis=3, keepdims=True)
    x = (x - mean) * (draws.uniform(1, 1, 1) * 2.0) + mean
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * (draws.uniform(1, 1, 1) + 0.5) + mean


def rand_translation(x, draws, ratio: float = 0.125):
    """Integer shifts with zero fill, as one exact resampling (integer positions: no interpolation).

    Two batched gathers (rows, then columns) and a mask rather than ImageProjectiveTransformV3,
    which XLA cannot compile (no XLA kernel: a TPU step with DiffAugment would not build;
    tests/test_xla.py).
    """
    height, width = int(x.shape[1]), int(x.shape[2])
    shift_x, shift_y = int(width * ratio + 0.5), int(height * ratio + 0.5)
    u = draws.uniform(2)
    tx = tf.cast(tf.floor(u[:, 0] * (2 * shift_x + 1)), tf.int32) - shift_x
    ty = tf.cast(tf.floor(u[:, 1] * (2 * shift_y + 1)), tf.int32) - shift_y
    # output (row, col) reads input (row - ty, col - tx), zero where that falls outside
    rows = tf.range(height)[None, :] - ty[:, None]
    cols = tf.range(width)[None, :] - tx[:, None]
    out = tf.gather(x, tf.clip_by_value(rows, 0, height - 1), axis=1, batch_dims=1)
    out = tf.gather(out, tf.clip_by_value(cols, 0, width - 1), axis=2, batch_dims=1)
    inside = tf.logical_and(tf.logical_and(rows >= 0, rows < height)[:, :, None],
                            tf.logical_and(cols >= 0, cols < width)[:, None, :])
    return out * tf.cast(inside, x.dtype)[..., None]


def rand_cutout(x, draws, p, ratio: float = 0.5):
    """Zhao et al.'s cutout (square of round(ratio x size), centre uniform), applied with probability p."""
    height, width = int(x.shape[1]), int(x.shape[2])
    size_px = int(height * ratio + 0.5)
    gate = draws.gate(p)
    size = tf.where(gate, size_px / height, 0.0)
    # Centres uniform over the pixel grid, like Zhao et al.'s offsets in [0, size + (1 - size % 2)).
    u = draws.uniform(2)
    cx = (tf.floor(u[:, 0] * width) + 0.5) / width
    cy = (tf.floor(u[:, 1] * height) + 0.5) / height
    return x * cutout_mask(tf.stack([cx, cy], axis=1), size, height, width)


def diff_augment(images, draws, policy: str = "color,translation,cutout", p=0.5):
    """Applies the policy to [b, h, w, c] images (computed in float32, returned in their dtype)."""
    dtype = images.dtype
    x = tf.cast(images, tf.float32)
    for name in parse_policy(policy):
        if name == "color":
            x = rand_color(x, draws)
        elif name == "translation":
            x = rand_translation(x, draws)
        else:
            x = rand_cutout(x, draws, p)
    return tf.cast(x, dtype)
