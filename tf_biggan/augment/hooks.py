"""Augmentation in the training step, through step.TrainStep's extension points (no step code here).

    d_inputs     every image D sees, real and fake, in D and G steps, is augmented; the D step's
                 concatenated [real; fake] batch is split so reals and fakes get their own draws
                 (keyed by step, sub-step and role: replica-independent, resumable)
    d_penalties  `ada_sign_real`: adds this replica's sum of sign(D(real)) to the run's accumulator
                 (an all-reduced variable) and logs E[sign(D(real))] of the step; it contributes a
                 constant with no gradient to D's loss
    post_step    in cross-replica context: ADA's p moves once per augment.interval steps
"""

from __future__ import annotations

import tensorflow as tf

from tf_biggan.augment.controller import FAKE, G_FAKE, REAL
from tf_biggan.training.step import PenaltyTerm


def install(train_step, state) -> None:
    """Wires AugmentState `state` into `train_step` (a step.TrainStep) before it is compiled."""
    if not state.enabled:
        return
    local, disc_steps = train_step.local_batch, train_step.disc_steps

    def d_inputs(images, step, substep: int):
        if substep == disc_steps:  # the G step: D sees G's fakes only
            return state.augment_images(images, step, substep, G_FAKE, local_batch=local)
        real = state.augment_images(images[:local], step, substep, REAL, local_batch=local)
        fake = state.augment_images(images[local:], step, substep, FAKE, local_batch=local)
        return tf.concat([real, fake], 0)

    train_step.d_inputs = d_inputs
    if state.adaptive:
        train_step.d_penalties.append(PenaltyTerm("ada_sign_real", lambda ctx: state.accumulate(ctx.real_logits)))
        real_per_step = train_step.global_batch * disc_steps
        train_step.post_step.append(lambda step: state.update(None, real_per_step))
