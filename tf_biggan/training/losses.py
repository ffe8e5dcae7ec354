"""GAN losses, paper Section 3 (hinge loss, Lim & Ye 2017; Tran et al. 2017), per replica.

Each function returns the loss of the examples this replica holds divided by the GLOBAL batch size
(a sum, not a mean, over the local examples). The optimiser sums gradients over replicas, so N
replicas with B/N examples each produce exactly the gradient one device computes for the batch B:
the equivalence tests/test_train.py checks. With `global_batch=None` the local mean is used
(single device).
"""

from __future__ import annotations

from typing import Optional

import tensorflow as tf


def _scale(per_example, global_batch: Optional[int]):
    per_example = tf.cast(per_example, tf.float32)
    if global_batch is None:
        return tf.reduce_mean(per_example)
    return tf.reduce_sum(per_example) / tf.cast(global_batch, tf.float32)


def hinge_d_loss(real_logits, fake_logits, global_batch: Optional[int] = None, margin: float = 1.0):
    """L_D = E[max(0, m - D(x))] + E[max(0, m + D(G(z)))]; returns (total, real part, fake part).

    m = 1 is the hinge loss; Appendix G.2 scales the margin (x0.5 hurt, up to x3 changed nothing,
    beyond 3 trained unstably): `train.hinge_margin`.
    """
    real = _scale(tf.nn.relu(margin - tf.cast(real_logits, tf.float32)), global_batch)
    fake = _scale(tf.nn.relu(margin + tf.cast(fake_logits, tf.float32)), global_batch)
    return real + fake, real, fake


def hinge_g_loss(fake_logits, global_batch: Optional[int] = None):
    """L_G = -E[D(G(z))]."""
    return _scale(-tf.cast(fake_logits, tf.float32), global_batch)


D_LOSSES = {"hinge": hinge_d_loss}
G_LOSSES = {"hinge": hinge_g_loss}
