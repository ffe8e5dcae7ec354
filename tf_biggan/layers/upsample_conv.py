"""A 3x3 convolution of the 2x nearest-neighbour upsampled input, computed at the input's resolution.

G's up blocks (paper Figures 15b and 16b; BigGAN's conv1, BigGAN-deep's second conv) repeat every pixel
2x2 and then apply a 3x3 convolution (stride 1, zero padding). Output pixel (2i + a, 2j + b), of phase
(a, b) in {0, 1}^2, reads upsampled rows 2i + a - 1 .. 2i + a + 1, which are input rows i - 1, i, i
(a = 0) or i, i, i + 1 (a = 1): two of the kernel's three rows fall on the same input row. So each phase
is a 2x2 convolution of the input with those taps summed,

    phase 0 along an axis: (k0, k1 + k2) on input (i - 1, i);  phase 1: (k0 + k1, k2) on (i, i + 1),

the "sub-pixel" reading of a transposed / resize convolution (Shi et al. 2016; Odena et al. 2016): 16
multiply-adds per input pixel and channel pair instead of 36 (2.25x fewer), and the 4x larger upsampled
tensor is never formed. Row -1 of the upsampled image is row -1 of the input, so the zero padding of
the plain form is the zero padding of each phase: borders are exact too. The same function up to float
rounding (tap sums are formed before the products); tests/test_upsample_conv.py checks values and
gradients against the plain upsample + conv.
"""

from __future__ import annotations

import tensorflow as tf

from tf_biggan.layers.recompute import recompute_in_backward
from tf_biggan.layers.spectral_norm import SNConv2D


def _fold_taps(kernel, axis: int):
    """The 3 taps of `kernel` along `axis` folded onto the 2 input positions each phase reads:
    (phase 0, phase 1) = ((k0, k1 + k2), (k0 + k1, k2))."""
    k0, k1, k2 = tf.unstack(kernel, axis=axis)
    return tf.stack([k0, k1 + k2], axis=axis), tf.stack([k0 + k1, k2], axis=axis)


def phase_kernels(kernel):
    """[(a, b, 2x2 kernel)] for the four output phases of a 3x3 kernel (kh, kw, in, out)."""
    rows = _fold_taps(kernel, 0)
    return [(a, b, _fold_taps(rows[a], 1)[b]) for a in (0, 1) for b in (0, 1)]


def upsample_conv2d(x, kernel, dtype=None, bias=None):
    """conv2d(upsample2x(x), kernel, stride 1, SAME) (+ bias) for NHWC x and a 3x3 kernel, per output phase.

    The phase kernels are summed in the kernel's dtype (float32 under mixed precision) and then cast
    to `dtype` (default x's). Phase (a, b) is a 2x2 VALID conv of x padded by (1 - a, a) rows and
    (1 - b, b) columns (the padding is part of the conv op); depth_to_space interleaves the phases.
    The bias is added to each phase, where Grappler fuses it into the conv op (one pass fewer over the
    4x larger output).
    """
    if tuple(kernel.shape[:2]) != (3, 3):
        raise ValueError(f"upsample_conv2d takes a 3x3 kernel, got {kernel.shape}")
    dtype = dtype or x.dtype
    outputs = []
    for a, b, k in phase_kernels(kernel):
        pad = [[0, 0], [1 - a, a], [1 - b, b], [0, 0]]
        y = tf.nn.conv2d(x, tf.cast(k, dtype), strides=1, padding=pad)
        outputs.append(y if bias is None else tf.nn.bias_add(y, tf.cast(bias, dtype)))
    # depth_to_space reads channel block (2 * a + b) as phase (a, b): the order built above.
    return tf.nn.depth_to_space(tf.concat(outputs, axis=-1), 2)


class SNUpsampleConv2D(SNConv2D):
    """SNConv2D (3x3) applied to the 2x nearest-neighbour upsampled input, by `upsample_conv2d`.

    The same variables (kernel, bias, sn_u) and spectral norm as SNConv2D; W / sigma and the phase
    kernels are formed again in the backward computation rather than kept (layers/recompute.py).
    """

    def __init__(self, filters: int, kernel_size: int = 3, **kwargs):
        if kernel_size != 3:
            raise ValueError("SNUpsampleConv2D is for 3x3 kernels; a 1x1 conv commutes with the upsample")
        super().__init__(filters, kernel_size, **kwargs)

    def call(self, x, training=False):
        w, sigma = self._kernel_and_sigma(training)
        dtype = self.compute_dtype
        if sigma is None:
            return upsample_conv2d(x, w, dtype, self.bias if self.use_bias else None)
        if not self.use_bias:
            return recompute_in_backward(lambda x, w, sigma: upsample_conv2d(x, w / sigma, dtype))(x, w, sigma)
        # The bias is an input of the recomputed function (not a captured variable), so it gets its gradient.
        return recompute_in_backward(lambda x, w, sigma, b: upsample_conv2d(x, w / sigma, dtype, b))(
            x, w, sigma, tf.convert_to_tensor(self.bias))
