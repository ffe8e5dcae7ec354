"""The modified orthogonal regulariser, paper Section 3.1, Eq. (3).

R_beta(W) = beta * || W^T W (.) (1 - I) ||_F^2, summed over G's weight matrices, with W the kernel
as a (fan_in, fan_out) matrix, so W^T W holds the pairwise inner products of the filters. It
removes the diagonal (filter norms are not constrained) and pushes filters towards pairwise
orthogonality. beta = 1e-4 in the paper; beta = 0 turns it off (Table 1 ablation).
Applied to the raw kernels, before spectral normalisation, as BigGAN-PyTorch does.

Computed from the SMALLER Gram matrix (peak memory): W^T W and W W^T have the same Frobenius norm
(both equal sum_i sigma_i^4), and the removed diagonal of W^T W is ||w_j||^2 for the columns w_j, so

    || W^T W (.) (1 - I) ||_F^2 = || M ||_F^2 - sum_j ||w_j||^4,   M = the smaller of W^T W, W W^T.

Memory then grows with min(fan_in, fan_out)^2: G's first linear layer at 128 px (20 -> 24,576)
forms a 20 x 20 matrix instead of a 24,576 x 24,576 one (2.4 GB, plus its mask, square and their
gradients). The subtraction of two large, nearly equal sums loses relative precision only when the
off-diagonal part is tiny against the filter norms; the products are accumulated in float32 as
before (tests compare value and gradient with the direct float64 formula).
"""

from __future__ import annotations

import tensorflow as tf

from tf_biggan.layers.spectral_norm import kernel_matrix


def off_diagonal_gram_sq(w: tf.Tensor) -> tf.Tensor:
    """||W^T W (.) (1 - I)||_F^2 of a (fan_in, fan_out) matrix, via the smaller Gram matrix."""
    fan_in, fan_out = w.shape
    # Gram of the short side: (fan_in x fan_in) when the matrix is wide, else (fan_out x fan_out).
    gram = tf.matmul(w, w, transpose_b=True) if fan_in < fan_out else tf.matmul(w, w, transpose_a=True)
    column_norms_sq = tf.reduce_sum(tf.square(w), axis=0)
    return tf.reduce_sum(tf.square(gram)) - tf.reduce_sum(tf.square(column_norms_sq))


def ortho_reg(kernels, beta: float) -> tf.Tensor:
    """beta * sum_W ||W^T W (.) (1 - I)||_F^2 over `kernels` (float32 scalar)."""
    total = tf.constant(0.0, tf.float32)
    if beta == 0:
        return total
    for kernel in kernels:
        total += off_diagonal_gram_sq(kernel_matrix(kernel))
    return beta * total
