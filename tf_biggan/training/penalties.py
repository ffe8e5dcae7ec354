"""D penalties and gradient clipping of the paper's stability study (Section 4.2, Appendices H, I).

* R1, Eq. (5) (Mescheder et al. 2018): R1 = γ/2 · E_{x~data} ‖∇_x D(x)‖²; `train.r1_gamma`
  (the paper sweeps γ in [1e-3, 10], Appendix I; 10 stabilises but costs 45% IS). With
  `train.r1_every = k > 1` it is "lazy": applied every k-th D step with weight k, so its
  average strength is unchanged (StyleGAN2's lazy regularisation).
* Weight decay on G's shared embedding only (Appendix H: 1e-6 degraded, 1e-8 did nothing):
  λ · ‖E‖²_F added to G's loss.
* Gradient norm clipping, global and per parameter (Appendix H: "did not alleviate
  instability"). The norm must be that of the GLOBAL gradient, so under several replicas the
  gradients are all-reduced first, clipped, and divided back by the replica count (the
  optimiser sums them again). Keras' own clipnorm clips each replica's share: not the same.

Every penalty here returns this replica's share: a sum over its examples divided by the global
batch, like losses.py, so N replicas give one device's value for the same global batch.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import tensorflow as tf


def r1_from_gradients(grad_x: tf.Tensor, gamma: float, global_batch: Optional[int] = None) -> tf.Tensor:
    """γ/2 · Σ_i ‖∇_x D(x_i)‖² / global_batch (the local mean when global_batch is None), Eq. (5)."""
    grad_x = tf.cast(grad_x, tf.float32)
    per_example = tf.reduce_sum(tf.square(grad_x), axis=tf.range(1, tf.rank(grad_x)))
    total = tf.reduce_mean(per_example) if global_batch is None else (
        tf.reduce_sum(per_example) / tf.cast(global_batch, tf.float32))
    return 0.5 * gamma * total


def r1_penalty(d, x_real, y_real, gamma: float, global_batch: Optional[int] = None, training: bool = False):
    """(R1 of `d` at the real batch, the logits D(x_real)); differentiable w.r.t. D's weights."""
    x_real = tf.convert_to_tensor(x_real)
    with tf.GradientTape() as tape:
        tape.watch(x_real)
        logits = d((x_real, y_real), training=training)
        summed = tf.reduce_sum(tf.cast(logits, tf.float32))
    return r1_from_gradients(tape.gradient(summed, x_real), gamma, global_batch), logits


def embedding_decay(table, strength: float, num_replicas: int = 1) -> tf.Tensor:
    """strength · ‖E‖²_F / num_replicas (Appendix H; the all-reduce sums the replicas' copies)."""
    if not strength or table is None:
        return tf.constant(0.0, tf.float32)
    return strength * tf.reduce_sum(tf.square(tf.cast(table, tf.float32))) / num_replicas


def clip_gradients(grads: Sequence[tf.Tensor], global_norm: float = 0.0, per_param_norm: float = 0.0,
                   num_replicas: int = 1) -> List[tf.Tensor]:
    """Clip the global gradient (Appendix H). 0 turns a rule off.

    per_param_norm: each gradient g ← g · min(1, c / ‖g‖); global_norm: all of them scaled by
    min(1, c / ‖(g_1, ..., g_n)‖). In a replica context with num_replicas > 1 the local shares
    are summed first and the clipped result divided by num_replicas, so the optimiser's own sum
    over replicas applies exactly the clipped global gradient.
    """
    grads = list(grads)
    if not global_norm and not per_param_norm:
        return grads
    if num_replicas > 1:
        ctx = tf.distribute.get_replica_context()
        grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    if per_param_norm:
        grads = [tf.clip_by_norm(g, per_param_norm) for g in grads]
    if global_norm:
        grads, _ = tf.clip_by_global_norm(grads, global_norm)
    if num_replicas > 1:
        grads = [g / num_replicas for g in grads]
    return grads
