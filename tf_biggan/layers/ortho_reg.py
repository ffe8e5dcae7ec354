"""The modified orthogonal regulariser, paper Section 3.1, Eq. (3).

R_beta(W) = beta * || W^T W (.) (1 - I) ||_F^2, summed over G's weight matrices, with W the kernel
as a (fan_in, fan_out) matrix, so W^T W holds the pairwise inner products of the filters. It
removes the diagonal (filter norms are not constrained) and pushes filters towards pairwise
orthogonality. beta = 1e-4 in the paper; beta = 0 turns it off (Table 1 ablation).
Applied to the raw kernels, before spectral normalisation, as BigGAN-PyTorch does.
"""

from __future__ import annotations

import tensorflow as tf

from tf_biggan.layers.spectral_norm import kernel_matrix


def ortho_reg(kernels, beta: float) -> tf.Tensor:
    """beta * sum_W ||W^T W (.) (1 - I)||_F^2 over `kernels` (float32 scalar)."""
    total = tf.constant(0.0, tf.float32)
    if beta == 0:
        return total
    for kernel in kernels:
        w = kernel_matrix(kernel)
        gram = tf.matmul(w, w, transpose_a=True)
        off_diagonal = gram * (1.0 - tf.eye(gram.shape[0], dtype=gram.dtype))
        total += tf.reduce_sum(tf.square(off_diagonal))
    return beta * total
