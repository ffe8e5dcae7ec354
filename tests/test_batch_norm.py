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


def test_standing_stats_pool_all_passes():
    rng = np.random.RandomState(4)
    # passes with different means and spreads: the pooled variance must include the spread of means
    passes = [(rng.randn(16, 4, 4, 3) * s + m).astype(np.float32) for m, s in ((0, 1), (3, 2), (-1, 0.5))]
    layer = CrossReplicaBatchNorm()
    layer(passes[0])
    layer.reset_standing_stats()
    for batch in passes:
        layer(batch, training=False, accumulate=True)
    layer.finalize_standing_stats()
    everything = np.concatenate(passes).astype(np.float64)
    np.testing.assert_allclose(layer.moving_mean.numpy(), everything.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.moving_var.numpy(), everything.var(axis=(0, 1, 2)), rtol=1e-4)


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
