"""The augmentation state of a run: p, its ADA heuristic, and what D sees (seed 003, Section 3).

ADA (augment.kind = ada) adjusts p from the sign of D's outputs on real images:

    r_t = E[sign(D(x_real))] over the last `augment.interval` steps
    every interval: p <- clip(p + sign(r_t - target) x N / (speed_kimg x 1000), 0, p_max)

where N is the number of real images D saw in the interval (batch x interval with one D step per
step, as in the reference; with train.disc_steps D steps it counts them all), so p can travel 0 -> 1
in speed_kimg thousand real images. r_t > target means D is confidently right about the reals:
it overfits, augment more.

augment.heuristic = rv uses the paper's validation heuristic instead, with the same update rule:

    r_v = (E[D(train reals)] - E[D(held-out reals)]) / (E[D(train reals)] - E[D(generated)])

over the interval, D's outputs on the last D step's reals, fakes and one batch of held-out reals
(heldout.py) scored in the same D call, augmented alike. Adding a constant to D's outputs leaves
r_v unchanged; r_t reads their level, which under the hinge loss swings from step to step while
the gap between seen and unseen reals (the overfitting) stays (benchmarks/bench_augment.py). When
D does not score its training reals above the fakes (E[D(train)] - E[D(G)] <= RV_MIN_SEPARATION)
there is no evidence of overfitting: r_v reads 0 and p does not move up.

The cap p_max < 1 keeps the safe distance of Appendix C.5.1 (condition number 1 / (1 - p)); the
reference clamps only at 0 and users saw p run to 10-20 with leaked colours (stylegan2-ada-pytorch
#175, #295).

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
from tf_biggan.augment.transforms import ada_augment

# Roles of a batch in the step's counter: D step real / fake, G step fake, held-out reals (r_v).
REAL, FAKE, G_FAKE, HELDOUT = 0, 1, 2, 3
# Below this mean logit gap between train reals and fakes, r_v has no evidence (reads 0). Hinge-loss
# logits are O(1): 1e-3 is "D does not tell them apart".
RV_MIN_SEPARATION = 1e-3


def rv_statistic(sum_train: float, sum_heldout: float, sum_fake: float, scored: float):
    """(r_v, evidence) from the interval's sums of D's outputs over `scored` images of each kind
    (numpy reference of AugmentState.update)."""
    separation = (sum_train - sum_fake) / max(scored, 1.0)
    if not separation > RV_MIN_SEPARATION:
        return 0.0, False
    return float((sum_train - sum_heldout) / (sum_train - sum_fake)), True


def ada_update(p: float, sign_sum: float, count: float, cfg, rv_sums=None, scored: float = 0.0) -> float:
    """One interval's update of p (numpy reference of AugmentState.update, for tests and docs).
    heuristic=rv: rv_sums = (sum D(train), sum D(held-out), sum D(fake)) over `scored` images each."""
    r = rv_statistic(*rv_sums, scored)[0] if cfg.heuristic == "rv" else sign_sum / max(count, 1.0)
    adjust = np.sign(r - cfg.target) * count / (cfg.speed_kimg * 1000.0)
    return float(np.clip(p + adjust, 0.0, cfg.p_max))


class AugmentState:
    """p (and the ADA accumulators) of a run; create inside strategy.scope()."""

    def __init__(self, cfg, seed: int, global_batch: int):
        self.cfg = cfg
        self.seed = seed
        self.global_batch = int(global_batch)
        self.enabled = cfg.kind != "none"
        self.adaptive = cfg.kind == "ada"
        self.rv = self.adaptive and cfg.heuristic == "rv"
        initial = cfg.p if cfg.kind in ("fixed", "diffaugment") else 0.0
        agg = tf.VariableAggregation.ONLY_FIRST_REPLICA
        self.p = tf.Variable(initial, dtype=tf.float32, trainable=False, name="augment_p", aggregation=agg)
        # Summed over replicas when added to in replica context (accumulate).
        self.sign_sum = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="augment_sign_sum",
                                    aggregation=tf.VariableAggregation.SUM)
        self.count = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="augment_count", aggregation=agg)
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="augment_steps", aggregation=agg)
        # The heuristics of the last interval (what moved p), for logs and the report; not checkpointed.
        self.r_t = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="augment_r_t", aggregation=agg)
        self.r_v = tf.Variable(0.0, dtype=tf.float32, trainable=False, name="augment_r_v", aggregation=agg)
        self.rv_no_evidence = tf.Variable(0, dtype=tf.int64, trainable=False, name="augment_rv_no_evidence",
                                          aggregation=agg)
        # heuristic rv: the interval's sums of D(train reals), D(held-out reals), D(fakes), all-reduced.
        self.rv_sums = (tf.Variable(tf.zeros(3), trainable=False, name="augment_rv_sums",
                                    aggregation=tf.VariableAggregation.SUM) if self.rv else None)

    def checkpoint_objects(self) -> dict:
        objects = {"augment_p": self.p, "augment_sign_sum": self.sign_sum, "augment_count": self.count,
                   "augment_steps": self.steps}
        if self.rv:
            objects["augment_rv_sums"] = self.rv_sums
        return objects

    def scalars(self) -> dict:
        """augment/p and, for ADA, the heuristics of the last interval (TensorBoard)."""
        out = {"augment/p": float(self.p.numpy())}
        if self.adaptive:
            out["augment/r_t"] = float(self.r_t.numpy())
        if self.rv:
            out["augment/r_v"] = float(self.r_v.numpy())
            out["augment/rv_no_evidence_intervals"] = float(self.rv_no_evidence.numpy())
        return out

    def report(self) -> dict:
        """What train_report.json says of the augmentation: augment_p, augment_r_t, augment_r_v."""
        return {k.replace("augment/", "augment_"): (int(v) if k.endswith("intervals") else v)
                for k, v in self.scalars().items()}

    # ------------------------------------------------------------- replica context
    def augment_images(self, images, step, substep, role, local_batch=None, replica=None, micro=0):
        """What D sees: `images` (this replica's slice of the global batch) augmented.

        The draws are the slice of a global draw keyed by (train.seed, step, substep, role, and the
        micro-batch under gradient accumulation), so the result does not depend on the number of
        replicas.
        """
        if not self.enabled:
            return images
        if local_batch is None:
            local_batch = images.shape[0]
        if replica is None:
            ctx = tf.distribute.get_replica_context()
            replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        key = tf.random.experimental.stateless_fold_in(seeds.key("augment", self.seed, step), substep * 4 + role)
        if micro:  # micro-batch 0 draws what a run without accumulation draws
            key = tf.random.experimental.stateless_fold_in(key, micro)
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

    def accumulate_rv(self, real_logits, fake_logits, heldout_logits):
        """Adds this replica's sums of D(train reals), D(held-out reals), D(fakes) (one D call) to the
        interval's all-reduced sums; returns this replica's share of the step's E[D(train reals)] -
        E[D(held-out reals)], without gradient."""
        total = lambda x: tf.reduce_sum(tf.cast(x, tf.float32))  # noqa: E731
        sums = tf.stop_gradient(tf.stack([total(real_logits), total(heldout_logits), total(fake_logits)]))
        self.rv_sums.assign_add(sums)
        return (sums[0] - sums[1]) / self.global_batch

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
            r = r_t = self.sign_sum / tf.maximum(self.count, 1.0)
            self.r_t.assign(r_t)
            if self.rv:
                # One held-out batch (and the last D step's reals and fakes) per step: the same count.
                s = tf.convert_to_tensor(self.rv_sums)
                scored = tf.cast(self.steps, tf.float32) * self.global_batch
                spread = s[0] - s[2]
                evidence = spread / scored > RV_MIN_SEPARATION
                r = tf.where(evidence, (s[0] - s[1]) / tf.where(evidence, spread, 1.0), 0.0)
                self.r_v.assign(r)
                self.rv_no_evidence.assign_add(tf.cast(tf.logical_not(evidence), tf.int64))
                self.rv_sums.assign(tf.zeros(3))
            delta = tf.sign(r - cfg.target) * self.count / (cfg.speed_kimg * 1000.0)
            self.p.assign(tf.clip_by_value(self.p + delta, 0.0, cfg.p_max))
            self.sign_sum.assign(0.0)
            self.count.assign(0.0)
            self.steps.assign(0)
            return tf.constant(True)
        return tf.cond(self.steps >= cfg.interval, adjust, lambda: tf.constant(False))

    def at_cap(self) -> bool:
        return self.adaptive and float(self.p.numpy()) >= self.cfg.p_max - 1e-6
