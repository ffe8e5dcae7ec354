"""Layers made of sub-layers (residual blocks, G, D) build without a symbolic call.

Keras 3 builds a layer that has no `build` of its own by first tracing its whole `call` on symbolic
inputs (keras Layer._maybe_build), and does so again for every nested block inside that trace.
Our blocks, G and D create all their sub-layers in `__init__`; each sub-layer (spectrally
normalised dense / conv, batch norm, attention) builds its own weights on its first call. An empty
`build` skips the symbolic call: the first call creates the same variables, in the same order and
with the same paths, in about half the time (process start-up).
"""

from __future__ import annotations


class BuildsOnFirstCall:
    """Mixin: put it before keras.layers.Layer / keras.Model in the bases."""

    def build(self, input_shape):  # the sub-layers build themselves on the first call
        del input_shape
