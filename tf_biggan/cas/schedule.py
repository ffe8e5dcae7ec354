"""The CAS learning-rate schedule (Ravuri & Vinyals 2019 Appendix A; tensorflow/tpu resnet_main.py).

    lr(step) = learning_rate * epoch / warmup_epochs                       epoch <  warmup_epochs
             = learning_rate * decay_factor ** #{b in decay_epochs : b <= epoch}   otherwise

with epoch = step / steps_per_epoch (a real number), as in the reference's
`learning_rate_schedule(current_epoch)`: A.1's "linearly increasing from 0.0 to 0.4 for the first
5 epochs and decreasing by a factor of 10 at epochs 30, 60, and 80"; A.2 (CIFAR) has no warm-up,
1.0 decayed at 91 and 136. The pod setup is the same schedule at 8x the batch and rate with the
gradual warm-up of Goyal et al. (which A.1 says it mirrors).
"""

from __future__ import annotations

import keras
import tensorflow as tf


class CasLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up then step decay, a function of the optimizer's step (module docstring)."""

    def __init__(self, learning_rate: float, steps_per_epoch: int, warmup_epochs: float,
                 decay_epochs, decay_factor: float):
        self.learning_rate = float(learning_rate)
        self.steps_per_epoch = int(steps_per_epoch)
        self.warmup_epochs = float(warmup_epochs)
        self.decay_epochs = tuple(float(e) for e in decay_epochs)
        self.decay_factor = float(decay_factor)

    def __call__(self, step):
        epoch = tf.cast(step, tf.float32) / float(self.steps_per_epoch)
        decayed = tf.constant(self.learning_rate, tf.float32)
        for boundary in self.decay_epochs:
            decayed = tf.where(epoch >= boundary, decayed * self.decay_factor, decayed)
        if self.warmup_epochs > 0:
            warm = self.learning_rate * epoch / self.warmup_epochs
            decayed = tf.where(epoch < self.warmup_epochs, warm, decayed)
        return decayed

    def get_config(self):
        return {"learning_rate": self.learning_rate, "steps_per_epoch": self.steps_per_epoch,
                "warmup_epochs": self.warmup_epochs, "decay_epochs": list(self.decay_epochs),
                "decay_factor": self.decay_factor}


def learning_rate_schedule(hp, steps_per_epoch: int) -> CasLearningRate:
    """The protocol's schedule for `hp` (HParams or its `cas` section) at `steps_per_epoch`."""
    cas = getattr(hp, "cas", hp)
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    return CasLearningRate(cas.learning_rate, steps_per_epoch, cas.warmup_epochs, cas.decay_epochs,
                           cas.decay_factor)
