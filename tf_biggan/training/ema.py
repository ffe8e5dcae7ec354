"""Exponential moving average of G's weights (paper Section 3: "we employ moving averages of G's
weights ... with a decay of 0.9999"; Appendix C.1 samples from it with standing statistics).

The average lives in a second Generator of the same architecture (`ema_generator`), created in the
same strategy scope, so it is mirrored / replicated like G and checkpointed beside it. Before
`start_step` the EMA weights are a copy of G (compare_gan started averaging at step 40k: averaging
the first, fast-moving steps only drags the average towards initial noise); from `start_step` on

    ema <- decay * ema + (1 - decay) * g        for every trainable weight,

and BN moving statistics are copied (standing statistics replace them before sampling anyway).

EMA-G's spectral norm runs on its OWN kernels: after every update each spectrally normalised layer
of EMA-G does one power iteration on its averaged kernel from its own `u` (compare_gan iterates at
every call of the EMA generator; BigGAN-PyTorch averages `u` and iterates at every eval call). A `u`
copied from G would estimate sigma(W_ema) from another matrix's singular vector. The iteration
tracks the slowly moving average, so `u` sits at its top singular vector whenever EMA-G samples.

`update` is called in cross-replica context (inside the training tf.function, outside
`strategy.run`): an assign there writes the same value to every replica's copy.
"""

from __future__ import annotations

import tensorflow as tf

from tf_biggan.layers.spectral_norm import kernel_matrix, power_iteration, spectral_norm_layers


class EMA:
    def __init__(self, generator, ema_generator, decay: float, start_step: int = 0):
        self.decay = float(decay)
        self.start_step = int(start_step)
        src, dst = list(generator.weights), list(ema_generator.weights)
        if len(src) != len(dst) or any(tuple(a.shape) != tuple(b.shape) for a, b in zip(src, dst)):
            raise ValueError("EMA: the generator and its average must have the same architecture and be built")
        trainable = {id(v) for v in generator.trainable_weights}
        self.sn_layers = spectral_norm_layers(ema_generator)
        own_u = {id(layer.u) for layer in self.sn_layers}
        self.pairs = [(g, e, id(g) in trainable) for g, e in zip(src, dst)]
        self.update_pairs = [p for p in self.pairs if id(p[1]) not in own_u]

    def copy(self) -> None:
        for g, e, _ in self.pairs:
            e.assign(g)

    def update(self, step) -> None:
        """One EMA update for the optimisation step `step` (after it): copy before start_step; then
        one power iteration of every EMA-G SN layer on its new kernel."""
        step = tf.cast(step, tf.float32)
        decay = tf.where(step < float(self.start_step), 0.0, self.decay)
        rest = 1.0 - decay  # once, not per variable (fewer graph ops; the same value)
        for g, e, is_trainable in self.update_pairs:
            if is_trainable:
                e.assign(decay * e + rest * tf.convert_to_tensor(g))
            else:
                e.assign(g)
        for layer in self.sn_layers:  # reads the kernel just assigned (ordered on the variable)
            layer.u.assign(power_iteration(kernel_matrix(layer.kernel), tf.convert_to_tensor(layer.u),
                                           layer.sn_epsilon, layer.sn_normalize)[1])
