"""Recompute-in-backward (layers/recompute.py): spectral norm's W / sigma, G's
upsample before a conv and the attention map are formed again in the backward pass instead of kept.
The gradients must be plain autodiff's (first and second order), and Grappler must not merge the
recomputation back into the forward (which would keep the tensor alive and save nothing)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
from tensorflow.python.grappler import tf_optimizer

from tf_biggan.layers.attention import _attend, attend
from tf_biggan.layers.recompute import recompute_in_backward
from tf_biggan.layers.spectral_norm import SNConv2D, SNDense, SNEmbedding
from tf_biggan.layers.upsample_conv import SNUpsampleConv2D
from tf_biggan.models.biggan import upsample


def _conv(x, k):
    return tf.nn.conv2d(x, k, strides=1, padding="SAME")


CASES = {
    "conv3x3": (lambda: SNConv2D(4, 3), (2, 5, 5, 3), lambda x, k: _conv(x, k), {}),
    "conv1x1": (lambda: SNConv2D(6, 1), (2, 4, 4, 5), lambda x, k: _conv(x, k), {}),
    # G's upsample + conv (layers/upsample_conv.py): the plain reference is the conv of the upsampled input.
    "upsample_conv": (lambda: SNUpsampleConv2D(4, 3), (2, 3, 3, 3), lambda x, k: _conv(upsample(x), k), {}),
    "dense": (lambda: SNDense(7, use_bias=False), (3, 9), tf.matmul, {}),
    "embedding": (lambda: SNEmbedding(6, 5), (4, 6), tf.matmul, {}),
}


def _plain(layer, x, op):
    """op(x, W / sigma) by plain autodiff, with the layer's own sigma (an inference call)."""
    w, sigma = layer._kernel_and_sigma(training=False)
    return op(x, w / sigma)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradients_equal_plain_autodiff_first_and_second_order(name):
    make, shape, op, kw = CASES[name]
    rng = np.random.default_rng(3)
    layer = make()
    x = tf.constant(rng.standard_normal(shape).astype(np.float32))
    layer(x, training=False, **kw)
    layer.kernel.assign(rng.standard_normal(layer.kernel.shape).astype(np.float32) * 0.4)
    dy = tf.constant(rng.standard_normal(layer(x, **kw).shape).astype(np.float32))

    def grads(fn):
        with tf.GradientTape() as outer:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = fn()
                loss = tf.reduce_sum(y * dy)
            gx, gk = tape.gradient(loss, [x, layer.kernel])
            penalty = tf.reduce_sum(tf.square(gx))  # R1-style: differentiated again
        return y, gx, gk, outer.gradient(penalty, layer.kernel)

    ours = grads(lambda: layer(x, training=False, **kw))
    plain = grads(lambda: _plain(layer, x, op))
    for a, b in zip(ours, plain):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-5, atol=1e-6)


def test_attention_map_gradients_equal_plain_autodiff():
    rng = np.random.default_rng(4)
    theta, phi, g = (tf.constant(rng.standard_normal(s).astype(np.float32)) for s in ((2, 16, 3), (2, 4, 3), (2, 4, 5)))
    dy = tf.constant(rng.standard_normal((2, 16, 5)).astype(np.float32))
    results = []
    for fn in (lambda: _attend(theta, phi, g), lambda: attend(theta, phi, g), lambda: attend(theta, phi, g, True)):
        with tf.GradientTape() as tape:
            tape.watch([theta, phi, g])
            y = fn()
        results.append([y] + tape.gradient(y, [theta, phi, g], output_gradients=dy))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def _optimized_graph(fn, *args):
    """fn's graph after Grappler's default passes (what the runtime executes)."""
    graph = fn.get_concrete_function(*args).graph
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    fetch = meta_graph_pb2.CollectionDef()
    fetch.node_list.value.extend(t.name for t in graph.outputs)
    meta.collection_def["train_op"].CopyFrom(fetch)
    return tf_optimizer.OptimizeGraph(config_pb2.ConfigProto(), meta, graph_id=b"recompute_test")


@pytest.mark.parametrize("protected", [True, False])
def test_grappler_keeps_the_recomputation_apart(protected, monkeypatch):
    """With the control dependency on dy, W / sigma is computed twice in the optimised graph (the
    forward copy dies after the conv); without it, common-subgraph elimination merges the two, and
    the forward's copy would stay alive until the backward."""
    if not protected:
        import tf_biggan.layers.spectral_norm as sn

        def unprotected(fn):
            @tf.custom_gradient
            def call(*inputs):
                def grad(dy):
                    with tf.GradientTape() as tape:
                        tape.watch(inputs)
                        y = fn(*inputs)
                    return tape.gradient(y, list(inputs), output_gradients=dy)
                return fn(*inputs), grad
            return call

        monkeypatch.setattr(sn, "recompute_in_backward", unprotected)
    layer = SNConv2D(4, 3)
    x = tf.random.stateless_normal((2, 6, 6, 3), seed=(1, 2))
    layer(x)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(layer(x, training=True)))
        return tape.gradient(loss, [layer.kernel])

    graph = _optimized_graph(step, x)
    divides = [n for n in graph.node if n.op == "RealDiv" and any("Read" in i for i in n.input)]
    assert len(divides) == (2 if protected else 1), [(n.name, list(n.input)) for n in divides]


def test_recompute_in_backward_matches_autodiff_on_a_nonlinear_function():
    fn = lambda a, b: tf.nn.softmax(tf.matmul(a, b, transpose_b=True)) * tf.sin(a[:, :1])  # noqa: E731
    a = tf.constant(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
    b = tf.constant(np.linspace(2, -1, 15, dtype=np.float32).reshape(5, 3))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([a, b])
        plain, ours = fn(a, b), recompute_in_backward(fn)(a, b)
    for ga, gb in zip(tape.gradient(plain, [a, b]), tape.gradient(ours, [a, b])):
        np.testing.assert_array_equal(ga.numpy(), gb.numpy())
