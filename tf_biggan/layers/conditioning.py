"""Conditioning G's weights, paper Section 4.1: the σ0 regulariser and the σ0 clamp.

Section 4.1 tries to stop the spectral explosion of G's layers (Figure 3a) in two ways, both
acting on the top singular value σ0 of each weight W, read as a (fan_in, fan_out) matrix
(spectral_norm.kernel_matrix; the same matrix spectral normalisation divides by σ0):

* regularise σ0 "towards a fixed value σ_reg or towards some ratio r of the second singular
  value, r · sg(σ1)": `sigma0_penalty` adds  strength · Σ_W (σ0(W) − target)²  to G's loss;
* clamp σ0 with a partial SVD after each step, Eq. (4):
      W ← W − max(0, σ0 − σ_clamp) · u0 v0ᵀ,
  σ_clamp = σ_reg or r · sg(σ1): `clamp_sigma0`. Every other singular value is untouched.

The paper says neither prevents collapse (Section 4.1); they are here to repeat that experiment.

σ0 as a function of W has gradient u0 v0ᵀ (u0, v0 its left / right singular vectors), so the
penalty computes the singular vectors without gradient and writes σ0 = u0ᵀ W v0: the same value,
and exactly the derivative of a top singular value. The vectors come from subspace iteration on
the smaller Gram matrix (W Wᵀ or WᵀW), a few matmuls, never a full SVD of a large kernel.
"""

from __future__ import annotations

from typing import Iterable, Tuple

import tensorflow as tf

from tf_biggan.layers.spectral_norm import kernel_matrix, subspace_iteration

TARGETS = ("fixed", "ratio")


def top_singular_pairs(w: tf.Tensor, k: int = 2, iterations: int = 20) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(σ [k], U [m, k], V [n, k]) of the k largest singular triplets of the matrix w [m, n].

    Subspace iteration on the Gram matrix of the smaller side, Rayleigh-Ritz on that subspace,
    then the other side's vectors as W v / σ (or Wᵀ u / σ). No gradient flows through the result.
    Deterministic: the start basis is a fixed stateless draw.
    """
    w = tf.stop_gradient(tf.cast(w, tf.float32))
    m, n = int(w.shape[0]), int(w.shape[1])
    k = min(k, m, n)
    transpose = m < n  # iterate on the m x m Gram W Wᵀ when the rows are fewer
    a = tf.transpose(w) if transpose else w  # a: [rows, cols], cols <= rows
    cols = int(a.shape[1])
    gram = tf.matmul(a, a, transpose_a=True)
    width = min(cols, k + 4)  # a few extra columns speed up convergence of the k-th value
    q = subspace_iteration(gram, tf.random.stateless_normal((cols, width), seed=(23, 41)), iterations)
    small = tf.matmul(q, tf.matmul(gram, q), transpose_a=True)
    eig, vec = tf.linalg.eigh(0.5 * (small + tf.transpose(small)))
    order = tf.argsort(eig, direction="DESCENDING")[:k]
    sigma = tf.sqrt(tf.maximum(tf.gather(eig, order), 0.0))
    right = tf.matmul(q, tf.gather(vec, order, axis=1))  # [cols, k] right vectors of a
    left = tf.matmul(a, right) / tf.maximum(sigma, 1e-12)  # [rows, k]
    if transpose:  # a = wᵀ: a's right vectors are w's left ones
        return sigma, right, left
    return sigma, left, right


def sigma_target(sigmas: tf.Tensor, target: str, sigma_reg: float, ratio: float) -> tf.Tensor:
    """σ_reg ("fixed") or r · sg(σ1) ("ratio"), Section 4.1; `sigmas` = (σ0, σ1, ...), no gradient."""
    if target == "fixed":
        return tf.constant(sigma_reg, tf.float32)
    if target == "ratio":
        return ratio * tf.stop_gradient(sigmas[1])
    raise ValueError(f"target must be one of {TARGETS}, got {target!r}")


def sigma0_penalty(kernels: Iterable, strength: float, target: str = "fixed", sigma_reg: float = 1.0,
                   ratio: float = 2.0, iterations: int = 20) -> Tuple[tf.Tensor, tf.Tensor]:
    """(strength · Σ_W (σ0(W) − target)², max σ0 over the kernels), Section 4.1; float32 scalars.

    d/dW of the penalty is 2 · strength · (σ0 − target) · u0 v0ᵀ (in the kernel's own shape).
    A kernel whose matrix has a single column or row has no σ1: the ratio target needs two.
    """
    total = tf.constant(0.0, tf.float32)
    largest = tf.constant(0.0, tf.float32)
    for kernel in kernels:
        w = kernel_matrix(kernel)
        sigmas, u, v = top_singular_pairs(w, k=2, iterations=iterations)
        # σ0 = u0ᵀ W v0 with the vectors held fixed: its gradient is u0 v0ᵀ.
        sigma0 = tf.reduce_sum(u[:, 0] * tf.linalg.matvec(w, v[:, 0]))
        total += tf.square(sigma0 - sigma_target(sigmas, target, sigma_reg, ratio))
        largest = tf.maximum(largest, tf.stop_gradient(sigma0))
    return strength * total, largest


def clamp_sigma0(variable, target: str = "fixed", sigma_reg: float = 1.0, ratio: float = 2.0,
                 iterations: int = 20) -> tf.Tensor:
    """Eq. (4) in place: W ← W − max(0, σ0 − σ_clamp) u0 v0ᵀ. Returns σ0 before the clamp.

    `variable` is a kernel variable of any rank (conv kernels are clamped as their
    (kh·kw·in, out) matrix, the matrix spectral norm and the monitors use).
    """
    value = tf.convert_to_tensor(variable)
    w = kernel_matrix(value)
    sigmas, u, v = top_singular_pairs(w, k=2, iterations=iterations)
    excess = tf.nn.relu(sigmas[0] - sigma_target(sigmas, target, sigma_reg, ratio))
    update = excess * tf.matmul(u[:, :1], v[:, :1], transpose_b=True)
    variable.assign_sub(tf.cast(tf.reshape(update, value.shape), value.dtype))
    return sigmas[0]


def clamp_all(variables, target: str = "fixed", sigma_reg: float = 1.0, ratio: float = 2.0,
              iterations: int = 20) -> tf.Tensor:
    """`clamp_sigma0` on every variable; returns the largest σ0 seen before clamping (for logs)."""
    largest = tf.constant(0.0, tf.float32)
    for variable in variables:
        largest = tf.maximum(largest, clamp_sigma0(variable, target, sigma_reg, ratio, iterations))
    return largest
