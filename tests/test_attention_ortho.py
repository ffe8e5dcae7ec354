"""Non-local block (SA-GAN) and the modified orthogonal regulariser (Section 3.1, Eq. 3) vs numpy."""

import numpy as np
import tensorflow as tf

from tf_biggan.layers.attention import SelfAttention
from tf_biggan.layers.ortho_reg import ortho_reg


def _sn(layer):
    w = layer.normalized_kernel(training=False).numpy()
    return w.reshape(-1, w.shape[-1])


def _maxpool(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def test_attention_is_identity_at_init_and_matches_numpy_when_gated_on():
    rng = np.random.RandomState(0)
    x = rng.randn(2, 4, 6, 16).astype(np.float32)
    layer = SelfAttention()
    np.testing.assert_array_equal(layer(x).numpy(), x)  # gamma = 0 at initialisation
    layer.gamma.assign(0.7)
    out = layer(x).numpy()
    theta = x.reshape(2, 24, 16) @ _sn(layer.theta)
    phi = _maxpool(x @ _sn(layer.phi)).reshape(2, 6, 2)
    g = _maxpool(x @ _sn(layer.g)).reshape(2, 6, 8)
    logits = theta @ phi.transpose(0, 2, 1)
    attention = np.exp(logits - logits.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    o = (attention @ g).reshape(2, 4, 6, 8) @ _sn(layer.o)
    np.testing.assert_allclose(out, x + 0.7 * o, rtol=1e-4, atol=1e-5)
    assert sorted(w.name for w in layer.trainable_weights) == ["gamma", "kernel", "kernel", "kernel", "kernel"]


def test_ortho_reg_matches_numpy_formula():
    rng = np.random.RandomState(1)
    kernels = [rng.randn(3, 3, 4, 6).astype(np.float32), rng.randn(10, 5).astype(np.float32)]
    expected = 0.0
    for k in kernels:
        w = k.reshape(-1, k.shape[-1]).astype(np.float64)
        gram = w.T @ w
        expected += np.sum((gram * (1 - np.eye(gram.shape[0]))) ** 2)
    got = ortho_reg([tf.constant(k) for k in kernels], 1e-4).numpy()
    np.testing.assert_allclose(got, 1e-4 * expected, rtol=1e-5)


def test_ortho_reg_ignores_filter_norms_and_is_off_at_zero():
    q, _ = np.linalg.qr(np.random.RandomState(2).randn(12, 5))
    scaled = (q * np.array([1, 2, 3, 4, 5])).astype(np.float32)  # orthogonal filters of any norm
    assert ortho_reg([tf.constant(scaled)], 1e-4).numpy() < 1e-9
    assert ortho_reg([tf.constant(np.ones((4, 4), np.float32))], 0.0).numpy() == 0.0
