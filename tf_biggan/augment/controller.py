"""The augmentation state of a run: p, its ADA heuristic, and what D sees (seed 003, Section 3).

ADA (augment.kind = ada) adjusts p from the sign of D's outputs on real images:

    r_t = E[sign(D(x_real))] over the last `augment.interval` steps
    every interval: p <- clip(p + sign(r_t - target) x N / (speed_kimg x 1000), 0, p_max)

where N is the number of real images D saw in the interval (batch x interval with one D step per
step, as in the reference; with train.disc_steps D steps it counts them all), so p can travel 0 -> 1
in speed_kimg thousand real images. r_t > target means D is confidently right about the reals:
it overfits, augment more. The cap p_max < 1 keeps the safe distance of Appendix C.5.1 (condition
number 1 / (1 - p)); the reference clamps only at 0 and users saw p run to 10-20 with leaked
colours (stylegan2-ada-pytorch #175, #295).

`AugmentState` owns p and the interval's accumulators as tf.Variables made in the strategy's scope:
they go into the checkpoint (a resumed run continues the same p trajectory) and are updated in
cross-replica context from the all-reduced statistic, so every replica uses one p.
`augment_images` is what the training step calls on every batch D sees.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tf_biggan import seeds
from tf_biggan.augment.diffaugment import diff_augment
from tf_biggan.augment.draws import Draws
from tf_biggan.augment.pipeline import ada_augment

# Roles of a batch in the step's counter: D step real / fake, G step fake.
REAL, FAKE, G_FAKE = 0, 1, 2


def ada_update(p: float, sign_sum: float, count: float, cfg) -> float:
    """One interval's update of p (numpy reference of AugmentState.update, for tests and docs)."""
    r_t = sign_sum / max(count, 1.0)
    adjust = np.sign(r_t - cfg.target) * count / (cfg.speed_kimg * 1000.0)
    return float(np.clip(p + adjust, 0.0, cfg.p_max))


class AugmentState:
    """p (and the ADA accumulators) of a run; create inside strategy.scope()."""

    def __init__(self, cfg, seed: int, global_batch: int):
        self.cfg = cfg
        self.seed = seed
        self.global_batch = int(global_batch)
        self.enabled = cfg.kind != "none"
        self.adaptive = cfg.kind == "ada"
        initial = cfg.p if cfg.kind in ("fixed", "diffaugment") else 0.0
        agg = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.p = tf.Variable(initial, dtype=tf.float32, trainable=False, name="augment_p", aggregation=agg)
        # Summed over replicas when added to in replica context (accumulate).
        self.sign_sum = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="augment_sign_sum",
                                    aggregation=tf.VariableAggregation.SUM)
        self.count = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="augment_count", aggregation=agg)
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="augment_steps", aggregation=agg)

    def checkpoint_objects(self) -> dict:
        return {"augment_p": self.p, "augment_sign_sum": self.sign_sum, "augment_count": self.count,
                "augment_steps": self.steps}

    # ------------------------------------------------------------- replica context
    def augment_images(self, images, step, substep, role, local_batch=None, replica=None):
        """What D sees: `images` (this replica's slice of the global batch) augmented.

        The draws are the slice of a global draw keyed by (train.seed, step, substep, role), so the
        result does not depend on the number of replicas.
        """
        if not self.enabled:
            return images
        if local_batch is None:
            local_batch = images.shape[0]
        if replica is None:
            ctx = tf.distribute.get_replica_context()
            replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        key = tf.random.experimental.stateless_fold_in(seeds.key("augment", self.seed, step), substep * 4 + role)
        draws = Draws(key, self.global_batch,
                      offset=tf.cast(replica, tf.int32) * local_batch, local_batch=local_batch)
        if self.cfg.kind == "diffaugment":
            return diff_augment(images, draws, self.cfg.policy, self.p)
        # At p = 0 the pipeline is the identity (bit for bit) but still costs its resampling, and ADA
        # sits at p = 0 for long stretches (about a third of the step's time at 16 px): skip it then.
        # p is one value on every replica, so all replicas take the same branch.
        p = tf.convert_to_tensor(self.p)
        return tf.cond(p > 0, lambda: ada_augment(images, p, draws, self.cfg.pipeline), lambda: tf.identity(images))

    def accumulate(self, real_logits):
        """Adds this replica's sum of sign(D(real)) to the interval's all-reduced sum; returns this
        replica's share of E[sign(D(real))] over the global batch, without gradient."""
        signs = tf.stop_gradient(tf.reduce_sum(tf.sign(tf.cast(real_logits, tf.float32))))
        self.sign_sum.assign_add(signs)
        return signs / self.global_batch

    # ------------------------------------------------------------- cross-replica context
    def update(self, sign_sum, count):
        """Ends one step: adds its all-reduced sum of sign(D(real)) (None: already added by
        `accumulate`) over `count` real images; every `augment.interval` steps moves p (ADA).
        Call in cross-replica context after strategy.run."""
        if not self.adaptive:
            return tf.no_op()
        cfg = self.cfg
        if sign_sum is not None:
            self.sign_sum.assign_add(tf.cast(sign_sum, tf.float32))
        self.count.assign_add(tf.cast(count, tf.float32))
        self.steps.assign_add(1)

        def adjust():
            r_t = self.sign_sum / tf.maximum(self.count, 1.0)
            delta = tf.sign(r_t - cfg.target) * self.count / (cfg.speed_kimg * 1000.0)
            self.p.assign(tf.clip_by_value(self.p + delta, 0.0, cfg.p_max))
            self.sign_sum.assign(0.0)
            self.count.assign(0.0)
            self.steps.assign(0)
            return tf.constant(True)
        return tf.cond(self.steps >= cfg.interval, adjust, lambda: tf.constant(False))

    def at_cap(self) -> bool:
        return self.adaptive and float(self.p.numpy()) >= self.cfg.p_max - 1e-6
