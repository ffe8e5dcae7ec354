"""Orthogonal initialisation of G and D kernels (paper Appendix C: "orthogonal initialization",
Saxe et al. 2014), fast for the large conv kernels of BigGAN (issue 14, start-up).

The same distribution and, for the same seed, the same matrix as `keras.initializers.Orthogonal`:
draw A ~ N(0, 1) of shape (max(rows, cols), min(rows, cols)) with the same Keras seed stream, take
the Q of A = QR with R's diagonal made positive (the unique such factorisation, which is what
makes Q Haar-distributed), transpose for wide kernels, scale by `gain`.

Only the factorisation differs. Keras calls a Householder QR, which on a CPU runs mostly on one
core: 16 s for a 3x3x1536x1536 kernel (a 13,824 x 1,536 matrix), several of which BigGAN-128 has
in G and D. A tall Gaussian matrix is well conditioned (condition number about
(sqrt(m) + sqrt(n)) / (sqrt(m) - sqrt(n)) <= 5.8 for m >= 2n), so Cholesky QR is exact to float32
rounding there: R^T R = A^T A by Cholesky (R with a positive diagonal, so the same Q), then
Q = A R^-1 by a triangular solve; both are matmul-shaped and multi-threaded (about 3x faster).
Near-square matrices, whose condition number grows with n, keep the Householder QR; they are
small (n x n at most 2n x n).
"""

from __future__ import annotations

import contextlib
import threading

import keras
import tensorflow as tf

# Cholesky QR for matrices at least this many times taller than wide (condition number <= 5.8).
CHOLESKY_MIN_ASPECT = 2
_state = threading.local()


@contextlib.contextmanager
def placeholder_kernels():
    """Kernels built inside get zeros instead of an orthogonal draw: for a model whose weights are
    assigned right after it is built (the EMA generator, a copy of G). The seeds are fixed when the
    initialisers are constructed, so skipping the draws changes no other weight."""
    previous = getattr(_state, "placeholder", False)
    _state.placeholder = True
    try:
        yield
    finally:
        _state.placeholder = previous


def orthonormal_columns(a: tf.Tensor) -> tf.Tensor:
    """Q of the QR factorisation of a tall (m, n) matrix with R's diagonal positive."""
    m, n = a.shape
    if m >= CHOLESKY_MIN_ASPECT * n:
        chol = tf.linalg.cholesky(tf.matmul(a, a, transpose_a=True))  # L = R^T
        return tf.transpose(tf.linalg.triangular_solve(chol, tf.transpose(a), lower=True))  # (L^-1 A^T)^T
    q, r = tf.linalg.qr(a)
    return q * tf.sign(tf.linalg.diag_part(r))


class Orthogonal(keras.initializers.Orthogonal):
    """keras.initializers.Orthogonal with the fast factorisation above (same seed use, same values)."""

    def __call__(self, shape, dtype=None):
        if len(shape) < 2:
            raise ValueError(f"an orthogonal initialiser needs a kernel of rank >= 2, got shape {shape}")
        rows = 1
        for dim in shape[:-1]:
            rows *= int(dim)
        cols = int(shape[-1])
        dtype = dtype or "float32"
        if getattr(_state, "placeholder", False):
            return tf.zeros(shape, dtype)
        a = keras.random.normal((max(rows, cols), min(rows, cols)), seed=self.seed, dtype="float32")
        q = orthonormal_columns(tf.convert_to_tensor(a))
        if rows < cols:
            q = tf.transpose(q)
        return tf.cast(self.gain * tf.reshape(q, shape), dtype)
