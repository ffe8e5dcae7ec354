"""Augmentation's parts of the training step (step.StepParts; no step code here), assembled by the trainer.

    d_inputs     every image D sees, real and fake, in D and G steps, is augmented; the D step's
                 concatenated [real; fake] batch is split so reals and fakes get their own draws
                 (keyed by step, sub-step and role: replica-independent, resumable)
    d_penalties  `ada_sign_real`: adds this replica's sum of sign(D(real)) to the run's accumulator
                 (an all-reduced variable) and logs E[sign(D(real))] of the step; it contributes a
                 constant with no gradient to D's loss
    d_extra      heuristic rv: one batch of held-out reals (heldout.py), augmented like the reals,
                 joins the LAST D step's D call (same weights, mode and spectral-norm state as the
                 reals and fakes it is compared with); it is outside the loss
    d_penalties  `ada_rv_gap` (rv): adds that call's sums of D(train), D(held-out), D(fake) to the
                 run's all-reduced sums and logs the step's E[D(train reals)] - E[D(held-out reals)]
    post_step    in cross-replica context: ADA's p moves once per augment.interval steps

With gradient accumulation every D micro-batch is augmented with its own draws and adds to r_t's
sums (the interval counts all the reals D trained on); r_v's held-out batch joins the last
micro-batch of the last D step only (one held-out batch per step, as without accumulation).
"""

from __future__ import annotations

import tensorflow as tf

from tf_biggan.augment.controller import FAKE, G_FAKE, HELDOUT, REAL
from tf_biggan.augment.heldout import HeldOut, heldout_images
from tf_biggan.training.step import PenaltyTerm, StepParts


def step_parts(state, hp, strategy) -> StepParts:
    """The parts AugmentState `state` adds to the step of a run of `hp` under `strategy` (none when
    augmentation is off)."""
    if not state.enabled:
        return StepParts()
    global_batch, disc_steps = hp.train.batch_size, hp.train.disc_steps
    local = global_batch // strategy.num_replicas_in_sync

    def d_inputs(images, step, substep: int, micro: int = 0):
        if substep == disc_steps:  # the G step: D sees G's fakes only
            return state.augment_images(images, step, substep, G_FAKE, local_batch=local, micro=micro)
        real = state.augment_images(images[:local], step, substep, REAL, local_batch=local, micro=micro)
        fake = state.augment_images(images[local:], step, substep, FAKE, local_batch=local, micro=micro)
        return tf.concat([real, fake], 0)

    parts = StepParts(d_inputs=[d_inputs])
    if state.adaptive:
        parts.d_penalties.append(PenaltyTerm("ada_sign_real", lambda ctx: state.accumulate(ctx.real_logits)))
        if state.rv:
            parts = parts.then(rv_parts(state, hp, strategy))
        real_per_step = global_batch * disc_steps * hp.train.d_accumulations
        parts.post_step.append(lambda step: state.update(None, real_per_step))
    return parts


def rv_parts(state, hp, strategy) -> StepParts:
    """The held-out reals of r_v (UserError when the run has none) in the last D step's D call."""
    images, labels = heldout_images(hp)
    global_batch = hp.train.batch_size
    with strategy.scope():
        heldout = HeldOut(images, labels, state.seed, global_batch)
    local, last = global_batch // strategy.num_replicas_in_sync, hp.train.disc_steps - 1
    last_micro = hp.train.d_accumulations - 1

    def d_extra(step, substep: int, micro: int = 0):
        if substep != last or micro != last_micro:
            return None
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        x, y = heldout.batch(step, local, replica)
        return state.augment_images(x, step, substep, HELDOUT, local_batch=local, replica=replica), y

    def rv_gap(ctx):
        if ctx.substep != last or ctx.micro != last_micro:
            return tf.constant(0.0)
        # The step logs the mean over the update's micro-batches, of which this is one.
        return state.accumulate_rv(ctx.real_logits, ctx.fake_logits, ctx.extra_logits) * (last_micro + 1)

    return StepParts(d_extra=d_extra, d_penalties=[PenaltyTerm("ada_rv_gap", rv_gap)])
