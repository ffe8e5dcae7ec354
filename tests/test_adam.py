"""The fused Adam (training/adam.py) against Keras' Adam and a numpy Adam: the same updates, the same
slots. Under 2 replicas (the per-replica handles inside strategy.extended.update) it runs in
tests/test_accumulation.py::test_two_replicas_equal_one_device_with_one_all_reduce_per_update."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_biggan.training.adam import Adam

SHAPES = [(3, 3, 4, 5), (7,), (6, 2)]
HPARAMS = dict(learning_rate=2e-3, beta_1=0.0, beta_2=0.999, epsilon=1e-6)  # the paper's betas


def _grads(step):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def _initial():
    rng = np.random.default_rng(7)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def _numpy_adam(steps, learning_rate, beta_1, beta_2, epsilon):
    lr = learning_rate
    w = [x.astype(np.float64) for x in _initial()]
    m = [np.zeros_like(x) for x in w]
    v = [np.zeros_like(x) for x in w]
    for t in range(1, steps + 1):
        alpha = lr * np.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        for i, g in enumerate(_grads(t - 1)):
            m[i] += (g - m[i]) * (1 - beta_1)
            v[i] += (g * g - v[i]) * (1 - beta_2)
            w[i] -= m[i] * alpha / (np.sqrt(v[i]) + epsilon)
    return w


def _run(opt_cls, steps, strategy=None, hparams=HPARAMS):
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        variables = [keras.Variable(x) for x in _initial()]
        opt = opt_cls(**hparams)
        opt.build(variables)

    @tf.function
    def step(grads):
        def replica(grads):
            opt.apply_gradients(zip(grads, variables))
        strategy.run(replica, args=(grads,))

    for t in range(steps):
        step([tf.constant(g) for g in _grads(t)])
    return [v.numpy() for v in variables], opt


@pytest.mark.parametrize("hparams", [HPARAMS, dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.99, epsilon=1e-8)])
def test_fused_adam_equals_keras_adam_and_numpy(hparams):
    fused, opt = _run(Adam, 5, hparams=hparams)
    plain, _ = _run(keras.optimizers.Adam, 5, hparams=hparams)
    reference = _numpy_adam(5, **hparams)
    for a, b, r in zip(fused, plain, reference):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)
    assert int(opt.iterations.numpy()) == 5  # bias correction counted the steps
    assert len(opt.variables) == len(keras.optimizers.Adam(**hparams).variables) + 2 * len(SHAPES)


def test_amsgrad_is_refused():
    with pytest.raises(ValueError, match="AMSGrad"):
        Adam(amsgrad=True)


def test_step_scalars_are_built_once_per_apply_and_follow_the_step():
    """One set of the step's scalars (t, beta powers) for all variables of an apply call: the graph
    has one pair of Pow ops, not one per variable, and a second apply in the same graph sees the
    incremented step (its own pair), which numpy's two-step Adam confirms."""
    variables = [keras.Variable(x) for x in _initial()]
    opt = Adam(**HPARAMS)
    opt.build(variables)

    @tf.function
    def two_steps(g0, g1):
        opt.apply_gradients(zip(g0, variables))
        opt.apply_gradients(zip(g1, variables))

    args = ([tf.constant(g) for g in _grads(0)], [tf.constant(g) for g in _grads(1)])
    graph = two_steps.get_concrete_function(*args).graph
    assert sum(op.type == "Pow" for op in graph.get_operations()) == 2 * 2
    two_steps(*args)
    for a, r in zip([v.numpy() for v in variables], _numpy_adam(2, **HPARAMS)):
        np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)
