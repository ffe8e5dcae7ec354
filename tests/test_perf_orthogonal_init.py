"""The fast orthogonal initialiser gives Keras' Orthogonal values for the same seed:
the same Haar-distributed Q (R's diagonal positive), for tall, wide, square and conv kernels, and the
same G when a model is built under keras.utils.set_random_seed."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_biggan.config import load_hparams
from tf_biggan.layers import spectral_norm
from tf_biggan.layers.orthogonal_init import CHOLESKY_MIN_ASPECT, Orthogonal, orthonormal_columns
from tf_biggan.models import Generator

SHAPES = [(300, 40), (40, 300), (64, 64), (3, 3, 16, 32), (3, 3, 32, 32), (1, 1, 8, 24), (20, 700)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_equals_keras_orthogonal_for_the_same_seed(shape):
    ours = Orthogonal(gain=1.5, seed=7)(shape).numpy()
    reference = keras.initializers.Orthogonal(gain=1.5, seed=7)(shape).numpy()
    assert ours.shape == reference.shape == shape
    np.testing.assert_allclose(ours, reference, atol=2e-5)
    w = ours.reshape(-1, shape[-1]).astype(np.float64) / 1.5
    small = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(small, np.eye(len(small)), atol=2e-5)


def test_cholesky_path_is_the_positive_diagonal_qr():
    """On a tall matrix (the Cholesky path) Q R = A with R upper triangular, diagonal > 0 (numpy's QR
    with signs fixed)."""
    a = np.random.RandomState(3).randn(CHOLESKY_MIN_ASPECT * 50, 50)
    q = orthonormal_columns(tf.constant(a, tf.float32)).numpy().astype(np.float64)
    q_ref, r_ref = np.linalg.qr(a)
    q_ref *= np.sign(np.diag(r_ref))
    np.testing.assert_allclose(q, q_ref, atol=1e-5)
    r = q.T @ a
    assert np.all(np.diag(r) > 0)
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-4)


def _generator_weights(monkeypatch, initializer_cls):
    monkeypatch.setattr(spectral_norm, "Orthogonal", initializer_cls)
    hp = load_hparams(None, "model.ch=4")
    keras.utils.set_random_seed(0)
    g = Generator(hp.model, hp.data.num_classes)
    g.build_for_input(2)
    return [v.numpy() for v in g.weights]


def test_a_generator_gets_the_weights_keras_orthogonal_gave(monkeypatch):
    ours = _generator_weights(monkeypatch, Orthogonal)
    keras_weights = _generator_weights(monkeypatch, keras.initializers.Orthogonal)
    assert len(ours) == len(keras_weights)
    for a, b in zip(ours, keras_weights):
        np.testing.assert_allclose(a, b, atol=2e-5)


def test_placeholder_kernels_skip_only_the_draws_inside():
    from tf_biggan.layers.orthogonal_init import placeholder_kernels

    init = Orthogonal(seed=3)
    with placeholder_kernels():
        assert not init((30, 4)).numpy().any()
    np.testing.assert_allclose(init((30, 4)).numpy(), keras.initializers.Orthogonal(seed=3)((30, 4)).numpy(),
                               atol=2e-5)


def test_trainer_ema_generator_starts_as_a_copy_of_g():
    from tf_biggan.training.trainer import GANTrainer

    trainer = GANTrainer(load_hparams(None, "model.ch=2,train.batch_size=4"), verbose=False)
    for g, e in zip(trainer.g.weights, trainer.ema_g.weights):
        np.testing.assert_array_equal(g.numpy(), e.numpy())
    assert any(np.abs(w.numpy()).max() > 0 for w in trainer.ema_g.trainable_weights if len(w.shape) >= 2)


def _all_weights(trainer):
    variables = trainer.g.weights + trainer.d.weights + trainer.ema_g.weights
    return [v.numpy() for v in variables + trainer.g_opt.variables + trainer.d_opt.variables]


def test_deferred_draws_give_the_same_weights_and_step(tmp_path):
    """defer_init: the kernels hold zeros until the first step, whose trace overlaps the draws; the
    step then starts from exactly the weights the immediate draws give (so it is the same step); a
    restored checkpoint replaces the draws."""
    from tf_biggan.training.trainer import GANTrainer

    hp = load_hparams(None, "model.ch=2,train.batch_size=4,train.disc_steps=1")
    immediate = _all_weights(GANTrainer(hp, verbose=False))
    deferred = GANTrainer(hp, verbose=False, defer_init=True, model_dir=str(tmp_path))
    kernel = deferred.g.trainable_weights[0]
    assert len(kernel.shape) >= 2 and not kernel.numpy().any()  # not drawn yet
    assert len(deferred._deferred) > 10
    deferred.train_steps(0)  # trace, 0-step call, the draws assigned (the weights the first step starts from)
    assert deferred._deferred is None
    at_first_step = _all_weights(deferred)
    deferred.train_steps(1)
    assert deferred.train_step._loop_fn.experimental_get_tracing_count() == 1  # one trace, reused
    assert int(deferred.step.numpy()) == 1
    for a, b in zip(immediate, at_first_step):
        np.testing.assert_array_equal(a, b)
    deferred.save()

    resumed = GANTrainer(hp, verbose=False, defer_init=True, model_dir=str(tmp_path))
    assert resumed.restore() and resumed._deferred is None  # draws cancelled
    for a, b in zip(_all_weights(deferred), _all_weights(resumed)):
        np.testing.assert_array_equal(a, b)


def test_a_failed_deferred_draw_is_raised_in_the_caller():
    from tf_biggan.layers.orthogonal_init import DeferredKernels

    class Broken(Orthogonal):
        def __call__(self, shape, dtype=None):
            raise ValueError("no draw today")

    pending = DeferredKernels()
    pending.add(tf.Variable(tf.zeros((4, 2))), Broken(seed=1), (4, 2))
    with pytest.raises(ValueError, match="no draw today"):
        pending.finish()


def test_deferred_draws_reach_every_replica_of_a_mirrored_variable():
    from conftest import mirrored_strategy
    from tf_biggan.training.trainer import GANTrainer

    hp = load_hparams(None, "model.ch=2,train.batch_size=4,train.disc_steps=1")
    immediate = _all_weights(GANTrainer(hp, verbose=False))
    strategy = mirrored_strategy(2)
    deferred = GANTrainer(hp, strategy, verbose=False, defer_init=True)
    deferred.weights_ready()
    variables = deferred.g.weights + deferred.d.weights + deferred.ema_g.weights
    assert len(variables) < len(immediate)
    for expected, variable in zip(immediate, variables):
        for component in strategy.experimental_local_results(variable):
            np.testing.assert_array_equal(component.numpy(), expected)
