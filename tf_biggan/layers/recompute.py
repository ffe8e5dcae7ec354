"""Recompute-in-backward: a piece of the forward computation whose large intermediates are not kept for
the backward computation but computed again there (peak memory of the training step).

`recompute_in_backward(fn)(*inputs)` returns fn(*inputs); its gradient keeps only `inputs`, and the
backward computation runs fn again under a tape and returns TF's own gradients of those ops, so the values
are the ones plain autodiff gives. Worth it where fn turns small inputs into a large tensor that
autodiff would keep, at a small cost to recompute:
- spectral norm: W / sigma, a normalised copy of every kernel (layers/spectral_norm.py);
- self-attention: the (positions x pooled positions) softmax map (layers/attention.py);
- G's upsample + conv (layers/upsample_conv.py): the four phase kernels formed from W / sigma.

Two details make the saving real:
- the recomputation has a control dependency on the incoming gradient. Without it Grappler's
  common-subgraph elimination sees the same ops on the same inputs as the forward and merges them
  back, which keeps the forward's tensor alive until the backward (no saving at all, measured);
- the recomputed forward output itself is unused by the gradient ops (Conv2D's and MatMul's
  gradients need the inputs, Softmax's its own output, which is recomputed), so graph pruning
  drops it.
The gradient function is built from ordinary ops, so an outer tape can differentiate it again
(R1's double backprop through D).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf


def recompute_in_backward(fn: Callable[..., tf.Tensor]) -> Callable[..., tf.Tensor]:
    """fn(*tensors) -> tensor, whose backward computation recomputes fn instead of keeping its intermediates."""

    @tf.custom_gradient
    def call(*inputs):
        def grad(dy):
            with tf.GradientTape() as tape, tf.control_dependencies([dy]):
                tape.watch(inputs)
                y = fn(*inputs)
            return tape.gradient(y, list(inputs), output_gradients=dy,
                                 unconnected_gradients=tf.UnconnectedGradients.ZERO)

        return fn(*inputs), grad

    return call
