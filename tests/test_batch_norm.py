"""Conditional, cross-replica batch norm and standing statistics (Section 3, Appendix B, C, C.1)."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import mirrored_strategy
from tf_biggan.layers.batch_norm import ConditionalBatchNorm, CrossReplicaBatchNorm, cross_replica_moments

EPS = 1e-4


def _numpy_normalize(x):
    mean = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))
    return (x - mean) / np.sqrt(var + EPS)


def _sn_matrix(dense):
    w = dense.kernel.numpy()
    return w / np.linalg.svd(w, compute_uv=False)[0]


def test_conditional_bn_is_identity_on_normalised_input_at_init_for_centred_conditioning():
    rng = np.random.RandomState(0)
    x = rng.randn(6, 4, 4, 8).astype(np.float32) * 3 + 2
    layer = ConditionalBatchNorm()
    out = layer((x, np.zeros((6, 20), np.float32)), training=True).numpy()
    # gain = 1 + W_g c, bias = W_b c: exactly x_hat at c = 0 (compare_gan's issue #54, gain = W_g c,
    # would give all zeros here)
    np.testing.assert_allclose(out, _numpy_normalize(x), rtol=1e-4, atol=1e-4)


def test_conditional_bn_matches_numpy_for_any_conditioning():
    rng = np.random.RandomState(1)
    x = rng.randn(5, 3, 3, 8).astype(np.float32)
    c = rng.randn(5, 12).astype(np.float32)
    layer = ConditionalBatchNorm()
    layer((x, c), training=False)
    for _ in range(300):  # converge the power iterations so W/sigma equals the SVD normalisation
        layer.gain(c, training=True)
        layer.bias(c, training=True)
    out = layer((x, c), training=True).numpy()
    gain = 1.0 + c @ _sn_matrix(layer.gain)
    bias = c @ _sn_matrix(layer.bias)
    expected = _numpy_normalize(x) * gain[:, None, None, :] + bias[:, None, None, :]
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-3)
    assert [w.name for w in layer.trainable_weights] == ["kernel", "kernel"]  # no projection biases


def test_moments_are_two_pass_stable_far_from_zero():
    rng = np.random.RandomState(2)
    x = (1000.0 + rng.randn(64, 8, 8, 4)).astype(np.float32)
    mean, var = cross_replica_moments(tf.constant(x), [0, 1, 2])
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean.numpy(), x64.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(var.numpy(), x64.var(axis=(0, 1, 2)), rtol=1e-3)


def _run_cbn_replicated(num_replicas, x, c, weights):
    strategy = mirrored_strategy(num_replicas)
    with strategy.scope():
        layer = ConditionalBatchNorm()
        layer((x[:1], c[:1]), training=False)
        layer.set_weights(weights)
    per_replica = len(x) // num_replicas

    def value_fn(ctx):
        i = ctx.replica_id_in_sync_group
        return x[i * per_replica:(i + 1) * per_replica], c[i * per_replica:(i + 1) * per_replica]

    inputs = strategy.experimental_distribute_values_from_function(value_fn)

    @tf.function
    def step(xc):
        return strategy.run(lambda v: layer(v, training=True), args=(xc,))

    out = np.concatenate([t.numpy() for t in strategy.experimental_local_results(step(inputs))])
    return out, layer.moving_mean.numpy(), layer.moving_var.numpy()


@pytest.mark.parametrize("num_replicas", [2, 4])
def test_cross_replica_bn_equals_one_replica_on_the_global_batch(num_replicas):
    rng = np.random.RandomState(3)
    x = (rng.randn(8, 4, 4, 8) * 2 + 0.5).astype(np.float32)
    c = rng.randn(8, 6).astype(np.float32)
    ref = ConditionalBatchNorm()
    ref((x[:1], c[:1]))
    weights = ref.get_weights()
    single = _run_cbn_replicated(1, x, c, weights)
    multi = _run_cbn_replicated(num_replicas, x, c, weights)
    for a, b in zip(single, multi):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # and per-replica statistics would have given something else
    per_replica_only = np.concatenate([_numpy_normalize(x[i:i + 8 // num_replicas]) for i in range(0, 8, 8 // num_replicas)])
    assert np.abs(per_replica_only - _numpy_normalize(x)).max() > 0.1


def _biggan_pytorch_standing_stats(passes):
    """A numpy transcription of BigGAN-PyTorch's standing statistics (`utils.accumulate_standing_stats`
    with `myBN`'s accumulation branch): per pass the batch mean and biased variance, kept as a
    running average over passes with `accumulation_counter`."""
    stored_mean = stored_var = 0.0
    counter = 0.0
    for x in passes:
        x = x.astype(np.float64)
        mean = x.mean(axis=(0, 1, 2))
        var = (x * x).mean(axis=(0, 1, 2)) - mean ** 2
        stored_mean = (stored_mean * counter + mean) / (counter + 1.0)
        stored_var = (stored_var * counter + var) / (counter + 1.0)
        counter += 1.0
    return stored_mean, stored_var


def test_standing_stats_average_the_passes_as_the_authors_code_does():
    rng = np.random.RandomState(4)
    # passes with different means and spreads: the authors average per-pass moments, so the spread
    # of the pass means is NOT in the variance
    passes = [(rng.randn(16, 4, 4, 3) * s + m).astype(np.float32) for m, s in ((0, 1), (3, 2), (-1, 0.5))]
    layer = CrossReplicaBatchNorm()
    layer(passes[0])
    layer.reset_standing_stats()
    for batch in passes:
        layer(batch, training=False, accumulate=True)
    layer.finalize_standing_stats()
    mean, var = _biggan_pytorch_standing_stats(passes)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.moving_var.numpy(), var, rtol=1e-5)
    pooled = np.concatenate(passes).astype(np.float64).var(axis=(0, 1, 2))
    assert np.all(pooled - layer.moving_var.numpy() > 0.5)  # the pooled reading would differ


def test_training_updates_moving_stats_and_inference_uses_them():
    rng = np.random.RandomState(5)
    x = (rng.randn(32, 2, 2, 3) * 2 + 1).astype(np.float32)
    layer = CrossReplicaBatchNorm(moving_decay=0.9)
    layer(x, training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.1 * x.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_var.numpy(), 0.9 + 0.1 * x.var(axis=(0, 1, 2)), rtol=1e-5)
    single = layer(x[:1], training=False).numpy()
    expected = (x[:1] - layer.moving_mean.numpy()) / np.sqrt(layer.moving_var.numpy() + EPS)
    np.testing.assert_allclose(single, expected, rtol=1e-5, atol=1e-5)


def _formula_and_grads(x, gain, bias, dy):
    """Autodiff of the plain BN formula in float64: the reference for the closed-form gradient."""
    x, gain, bias = (tf.constant(a, tf.float64) for a in (x, gain, bias))
    with tf.GradientTape() as tape:
        tape.watch([x, gain, bias])
        mean = tf.reduce_mean(x, axis=[0, 1, 2])
        var = tf.reduce_mean(tf.square(x - mean), axis=[0, 1, 2])
        out = (x - mean) / tf.sqrt(var + EPS) * gain + bias
        loss = tf.reduce_sum(out * dy)
    return [out.numpy()] + [t.numpy() for t in tape.gradient(loss, [x, gain, bias])]


@pytest.mark.parametrize("conditional", [False, True])
def test_training_gradient_is_the_formula_gradient(conditional):
    """The closed-form backward (x kept, x_hat recomputed) equals autodiff of x_hat * gain + bias."""
    rng = np.random.RandomState(6)
    x = (rng.randn(6, 5, 5, 4) * 3 + 1).astype(np.float32)
    dy = rng.randn(*x.shape)
    if conditional:
        layer = ConditionalBatchNorm()
        c = rng.randn(6, 7).astype(np.float32)
        layer((x, c), training=False)
        for v, s in zip(layer.trainable_variables, (0.3, 0.2)):
            v.assign(rng.randn(*v.shape).astype(np.float32) * s)
        call = lambda xt: layer((xt, c), training=True)  # noqa: E731
        # An inference call from the same stored u does the training call's iteration (and leaves
        # u as it is): the same W / sigma.
        gain = (1.0 + layer.gain(c, training=False).numpy())[:, None, None, :]
        bias = layer.bias(c, training=False).numpy()[:, None, None, :]
        u_before = [layer.gain.u.numpy(), layer.bias.u.numpy()]
    else:
        layer = CrossReplicaBatchNorm()
        layer(x)
        layer.gamma.assign(rng.rand(4).astype(np.float32) + 0.5)
        layer.beta.assign(rng.randn(4).astype(np.float32))
        gain, bias = layer.gamma.numpy(), layer.beta.numpy()
        call = lambda xt: layer(xt, training=True)  # noqa: E731
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        out = call(xt)
        loss = tf.reduce_sum(out * tf.constant(dy, tf.float32))
    dx, *dweights = tape.gradient(loss, [xt] + layer.trainable_variables)
    ref_out, ref_dx, ref_dgain, ref_dbias = _formula_and_grads(x, gain, bias, dy)
    np.testing.assert_allclose(out.numpy(), ref_out, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx.numpy(), ref_dx, rtol=1e-3, atol=1e-4)
    if not conditional:
        np.testing.assert_allclose(dweights[0].numpy(), ref_dgain, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(dweights[1].numpy(), ref_dbias, rtol=1e-4, atol=1e-4)
    else:  # the projections' gradients through gain = 1 + c W_g / σ: chain rule on the per-sample gain
        layer.gain.u.assign(u_before[0])  # the training call's σ: inference from the u it started at
        layer.bias.u.assign(u_before[1])
        with tf.GradientTape() as tape:
            g = 1.0 + layer.gain(c, training=False)
            b = layer.bias(c, training=False)
        ref = tape.gradient([g, b], [layer.gain.kernel, layer.bias.kernel],
                            output_gradients=[tf.constant(ref_dgain[:, 0, 0], tf.float32),
                                              tf.constant(ref_dbias[:, 0, 0], tf.float32)])
        for got, want in zip(dweights, ref):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-3, atol=1e-4)


def test_training_gradient_under_two_replicas_equals_one_device():
    """The backward's two means are over the global batch: all-reduced like the forward moments."""
    rng = np.random.RandomState(7)
    x = (rng.randn(8, 3, 3, 4) * 2 - 1).astype(np.float32)
    dy = rng.randn(*x.shape).astype(np.float32)

    def run(num_replicas):
        strategy = mirrored_strategy(num_replicas)
        with strategy.scope():
            layer = CrossReplicaBatchNorm()
            layer(x[:1])
            layer.gamma.assign(np.linspace(0.5, 2.0, 4).astype(np.float32))
        per = len(x) // num_replicas
        inputs = strategy.experimental_distribute_values_from_function(
            lambda ctx: (x[ctx.replica_id_in_sync_group * per:][:per], dy[ctx.replica_id_in_sync_group * per:][:per]))

        def replica_fn(batch):
            xb, dyb = batch
            with tf.GradientTape() as tape:
                tape.watch(xb)
                loss = tf.reduce_sum(layer(xb, training=True) * dyb)
            return tape.gradient(loss, xb)

        dx = strategy.run(tf.function(replica_fn), args=(inputs,))
        return np.concatenate([t.numpy() for t in strategy.experimental_local_results(dx)])

    np.testing.assert_allclose(run(2), run(1), rtol=1e-5, atol=1e-5)
    ref_dx = _formula_and_grads(x, np.linspace(0.5, 2.0, 4), np.zeros(4), dy)[1]
    np.testing.assert_allclose(run(1), ref_dx, rtol=1e-3, atol=1e-4)
