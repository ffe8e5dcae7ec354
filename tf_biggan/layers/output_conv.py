"""G's output convolution when only its first channels are kept (`model.hub_output_conv`).

The official BigGAN-deep modules end in a 3x3 conv ch -> ch of which the image takes the first 3
channels (pytorch-pretrained-BigGAN `model.py`, Generator.forward: `conv_to_rgb`, then `z[:, :3]`); Table
7 writes ch -> 3. Output channel j of a conv reads only column j of the kernel, so convolving with the
first 3 columns (and biases) gives those 3 channels exactly, at 3/ch of the cost: at 128 px and ch 128
the full conv was a fifth of the generator's FLOPs. The kernel and its spectral norm stay the full
ch -> ch matrix's (the module's variables; sigma is that of the whole matrix).
"""

from __future__ import annotations

import tensorflow as tf

from tf_biggan.layers.recompute import recompute_in_backward
from tf_biggan.layers.spectral_norm import SNConv2D


class SNFirstChannelsConv2D(SNConv2D):
    """SNConv2D with `filters` output channels of which only the first `keep` are computed and returned."""

    def __init__(self, filters: int, kernel_size: int = 3, keep: int = 3, **kwargs):
        super().__init__(filters, kernel_size, **kwargs)
        if not 0 < keep <= filters:
            raise ValueError(f"keep must be in [1, filters={filters}], got {keep}")
        self.keep = keep

    def call(self, x, training=False):
        w, sigma = self._kernel_and_sigma(training)
        dtype, keep = self.compute_dtype, self.keep

        def conv(x, w, sigma):
            kernel = w[..., :keep] if sigma is None else w[..., :keep] / sigma
            return tf.nn.conv2d(x, tf.cast(kernel, dtype), strides=1, padding="SAME")

        y = conv(x, w, None) if sigma is None else recompute_in_backward(conv)(x, w, sigma)
        if self.use_bias:
            y = y + tf.cast(self.bias[:keep], dtype)
        return y
