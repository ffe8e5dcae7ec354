"""Exponential moving average of G's weights (paper Section 3: "we employ moving averages of G's
weights ... with a decay of 0.9999"; Appendix C.1 samples from it with standing statistics).

The average lives in a second Generator of the same architecture (`ema_generator`), created in the
same strategy scope, so it is mirrored / replicated like G and checkpointed beside it. Before
`start_step` the EMA weights are a copy of G (compare_gan started averaging at step 40k: averaging
the first, fast-moving steps only drags the average towards initial noise); from `start_step` on

    ema <- decay * ema + (1 - decay) * g        for every trainable weight,

and non-trainable state (spectral-norm `u`, BN moving statistics) is copied: the `u` vectors make the
EMA generator usable without a power iteration, and BN statistics are replaced by standing
statistics before sampling anyway.

`update` is called in cross-replica context (inside the training tf.function, outside
`strategy.run`): an assign there writes the same value to every replica's copy.
"""

from __future__ import annotations

import tensorflow as tf


class EMA:
    def __init__(self, generator, ema_generator, decay: float, start_step: int = 0):
        self.decay = float(decay)
        self.start_step = int(start_step)
        src, dst = list(generator.weights), list(ema_generator.weights)
        if len(src) != len(dst) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(src, dst)):
            raise ValueError("EMA: the generator and its average must have the same architecture and be built")
        trainable = {id(v) for v in generator.trainable_weights}
        self.pairs = [(g, e, id(g) in trainable) for g, e in zip(src, dst)]

    def copy(self) -> None:
        for g, e, _ in self.pairs:
            e.assign(g)

    def update(self, step) -> None:
        """One EMA update for the optimisation step `step` (after it): copy before start_step."""
        step = tf.cast(step, tf.float32)
        decay = tf.where(step < float(self.start_step), 0.0, self.decay)
        rest = 1.0 - decay  # once, not per variable (fewer graph ops; the same value)
        for g, e, is_trainable in self.pairs:
            if is_trainable:
                e.assign(decay * e + rest * tf.convert_to_tensor(g))
            else:
                e.assign(g)
