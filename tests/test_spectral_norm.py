"""Spectral norm against numpy SVD (Miyato et al.; paper Appendix C: one power iteration per call)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_biggan.layers.spectral_norm import SNConv2D, SNDense, SNEmbedding, top_singular_values


def _matrix(layer):
    return layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1])


@pytest.mark.parametrize("make,x", [
    (lambda: SNDense(12), np.random.RandomState(0).randn(4, 20).astype(np.float32)),
    (lambda: SNConv2D(8, 3), np.random.RandomState(1).randn(2, 6, 6, 5).astype(np.float32)),
    (lambda: SNEmbedding(10, 16), np.array([1, 3, 9], np.int32)),
])
def test_sigma_converges_to_largest_singular_value(make, x):
    layer = make()
    layer(x, training=False)
    # A non-orthogonal kernel with distinct singular values (orthogonal ones are all 1).
    rng = np.random.RandomState(2)
    layer.kernel.assign(rng.randn(*layer.kernel.shape).astype(np.float32) * 0.3)
    svd = np.linalg.svd(_matrix(layer), compute_uv=False)
    for _ in range(200):
        layer(x, training=True)
    assert abs(float(layer.sigma()) - svd[0]) / svd[0] < 1e-3
    # and the kernel the layer uses has spectral norm 1
    normalized = layer.normalized_kernel(training=False).numpy().reshape(-1, layer.kernel.shape[-1])
    assert np.linalg.svd(normalized, compute_uv=False)[0] == pytest.approx(1.0, rel=1e-3)


def _biggan_pytorch_sn(w_pt, u, training, eps=1e-4):
    """A numpy transcription of BigGAN-PyTorch's `layers.SN.W_` / `power_iteration` (one singular
    value, one iteration), in its layout: W as (out, fan_in), u (1, out). Returns (sigma, stored u)."""
    normalize = lambda x: x / max(np.linalg.norm(x), eps)  # F.normalize
    v = normalize(u @ w_pt)          # (1, fan_in)
    u_new = normalize(v @ w_pt.T)    # (1, out)
    sigma = (v @ w_pt.T @ u_new.T).item()
    return sigma, (u_new if training else u)


@pytest.mark.parametrize("make,x", [
    (lambda: SNDense(6), np.random.RandomState(3).randn(3, 9).astype(np.float32)),
    (lambda: SNConv2D(5, 3), np.random.RandomState(4).randn(2, 5, 5, 4).astype(np.float32)),
])
def test_sigma_and_u_follow_biggan_pytorch_over_several_calls(make, x):
    """Training and inference use the authors' sigma = v W u1^T of the one iteration from the stored
    u; only training stores u1."""
    layer = make()
    layer(x, training=False)
    rng = np.random.RandomState(5)
    layer.kernel.assign(rng.randn(*layer.kernel.shape).astype(np.float32) * 0.5)
    w = _matrix(layer)  # (fan_in, out); BigGAN-PyTorch's W_mat is its transpose
    u_ref = layer.u.numpy().astype(np.float64)
    for training in (False, True, True, False, True, False):
        sigma_ref, u_ref_next = _biggan_pytorch_sn(w.T.astype(np.float64), u_ref, training)
        out = layer(x, training=training).numpy()
        if not training:
            np.testing.assert_allclose(float(layer.sigma()), sigma_ref, rtol=1e-5)
        if isinstance(layer, SNDense):
            expect = x @ (w / sigma_ref) + layer.bias.numpy()
        else:
            expect = tf.nn.conv2d(x, layer.kernel.numpy() / sigma_ref, 1, "SAME").numpy() + layer.bias.numpy()
        np.testing.assert_allclose(out, expect, rtol=2e-5, atol=2e-5)
        u_ref = u_ref_next
        np.testing.assert_allclose(layer.u.numpy(), u_ref, rtol=1e-5, atol=1e-6)


def test_sigma_gradient_holds_u_and_v_constant():
    """d sigma / dW = v^T u1 (the iteration's pair as constants), as in SN-GAN and the references."""
    layer = SNDense(4)
    layer(tf.zeros((1, 7)))
    layer.kernel.assign(np.random.RandomState(6).randn(7, 4).astype(np.float32))
    w = _matrix(layer).astype(np.float64)
    u = layer.u.numpy().astype(np.float64)
    v = u @ w.T
    v /= np.linalg.norm(v)
    u1 = v @ w
    u1 /= np.linalg.norm(u1)
    with tf.GradientTape() as tape:
        sigma = layer.sigma()
    grad = tape.gradient(sigma, layer.kernel).numpy()
    np.testing.assert_allclose(grad, v.T @ u1, rtol=1e-5, atol=1e-6)


def test_u_is_state_not_a_parameter():
    layer = SNConv2D(4, 3)
    layer(tf.zeros((1, 4, 4, 2)))
    assert [w.name for w in layer.trainable_weights] == ["kernel", "bias"]
    assert [w.name for w in layer.non_trainable_weights] == ["sn_u"]


def test_gradient_treats_u_and_v_as_constants():
    """d/dW of sum(x W / sigma) with sigma = v W u1^T and v, u1 held fixed (SN-GAN's gradient)."""
    layer = SNDense(5, use_bias=False)
    x = tf.random.normal((2, 7))
    layer(x)
    layer(x, training=True)  # settle u
    w = _matrix(layer)
    u = layer.u.numpy()  # (1, 5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=False))
    grad = tape.gradient(loss, layer.kernel).numpy()
    v = u @ w.T
    v /= np.linalg.norm(v)
    u1 = v @ w
    u1 /= np.linalg.norm(u1)
    sigma = (v @ w @ u1.T).item()
    a = x.numpy().sum(axis=0)[:, None]  # (7, 1)
    expected = a @ np.ones((1, 5)) / sigma - (a.T @ w @ np.ones((5, 1))).item() / sigma ** 2 * (v.T @ u1)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


def test_top_three_singular_values_match_svd():
    rng = np.random.RandomState(3)
    # conv kernel with a known spectrum: W = U diag(s) V^T reshaped to (3, 3, 16, 24)
    u, _ = np.linalg.qr(rng.randn(144, 24))
    v, _ = np.linalg.qr(rng.randn(24, 24))
    s = np.linspace(5.0, 0.5, 24)
    kernel = (u @ np.diag(s) @ v.T).reshape(3, 3, 16, 24).astype(np.float32)
    got = top_singular_values(tf.constant(kernel), k=3).numpy()
    np.testing.assert_allclose(got, s[:3], rtol=1e-4)
    layer = SNConv2D(24, 3)
    layer(tf.zeros((1, 5, 5, 16)))
    layer.kernel.assign(kernel)
    np.testing.assert_allclose(layer.singular_values().numpy(), s[:3], rtol=1e-4)


def test_mixed_bfloat16_power_iteration_sees_the_float32_kernel():
    """Under mixed_bfloat16 the power iteration and W / sigma use the float32 kernel, not Keras'
    bf16-rounded read of it (the kernel is not autocast); only W / sigma is cast for the conv."""
    layer = SNConv2D(6, 3, dtype="mixed_bfloat16")
    x = tf.constant(np.random.RandomState(5).randn(2, 5, 5, 4).astype(np.float32))
    layer(x)
    rng = np.random.RandomState(6)
    kernel = (rng.randn(*layer.kernel.shape) * 0.3).astype(np.float32)
    layer.kernel.assign(kernel)
    u0 = layer.u.numpy().astype(np.float64)
    y = layer(x, training=True)
    assert y.dtype == tf.bfloat16
    w = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
    v = u0 @ w.T
    v /= np.linalg.norm(v)
    u1 = v @ w
    u1 /= np.linalg.norm(u1)
    # A bf16-rounded kernel (8 significant bits) moves u by ~1e-3.
    np.testing.assert_allclose(layer.u.numpy(), u1, rtol=2e-5, atol=2e-6)


def test_power_iteration_shares_its_constants_within_a_graph():
    """One epsilon / axis Const per graph however many SN layers and power-iteration steps use it,
    none tied to the control context of its first user, and a fresh one in another graph."""
    from tf_biggan.layers.spectral_norm import _constant

    layers = [SNDense(5) for _ in range(3)]

    def step(x, barrier):
        with tf.control_dependencies([barrier]):
            y = layers[0](x, training=True)
        for layer in layers[1:]:
            y = layer(y, training=True)
        return y, _constant(1e-4, tf.float32)

    spec = (tf.TensorSpec((2, 5)), tf.TensorSpec(()))
    for layer in layers:
        layer(tf.zeros((2, 5)))
    graph = tf.function(step).get_concrete_function(*spec).graph
    eps = [op for op in graph.get_operations() if op.type == "Const" and op.get_attr("dtype") == tf.float32
           and op.get_attr("value").float_val == [np.float32(1e-4)]]
    assert len(eps) == 1 and not eps[0].control_inputs
    other = tf.function(step).get_concrete_function(*spec).graph
    assert other is not graph and _constant(1e-4, tf.float32).numpy() == np.float32(1e-4)


@pytest.mark.parametrize("shape,gap", [((40, 12), 1.002), ((12, 40), 1.002), ((600, 300), 1.05)])
def test_settle_sets_u_to_the_top_singular_vector(shape, gap):
    """Exact on small kernels even when the top singular values are 0.2% apart; block power iteration
    with Rayleigh-Ritz on large ones (numpy SVD as the reference)."""
    from tf_biggan.layers.spectral_norm import settle_spectral_norm

    rng = np.random.RandomState(8)
    k = min(shape)
    left, _ = np.linalg.qr(rng.randn(shape[0], k))
    right, _ = np.linalg.qr(rng.randn(shape[1], k))
    s = np.concatenate([[gap], np.linspace(1.0, 0.2, k - 1)])
    kernel = (left @ np.diag(s) @ right.T).astype(np.float32)
    layer = SNDense(shape[1], use_bias=False)
    layer(tf.zeros((1, shape[0])))
    layer.kernel.assign(kernel)
    settle_spectral_norm(keras.Sequential([layer]), iterations=50)
    top = right[:, 0]
    assert abs(abs(float(layer.u.numpy()[0] @ top)) - 1.0) < 1e-4
    assert float(layer.sigma()) == pytest.approx(gap, abs=1e-5)


def test_rsqrt_add_normalisation_is_the_official_modules():
    """model.sn_normalize rsqrt_add: n(x) = x * rsqrt(sum x^2 + eps), distinguishable from max at sigma ~ 0.1."""
    x = np.random.RandomState(9).randn(2, 6).astype(np.float32)
    results = {}
    for mode in ("max", "rsqrt_add"):
        layer = SNDense(4, use_bias=False, sn_normalize=mode)
        layer(x)
        layer.kernel.assign(np.random.RandomState(10).randn(6, 4).astype(np.float32) * 0.03)
        layer.u.assign(np.random.RandomState(11).randn(1, 4).astype(np.float32))
        w = _matrix(layer).astype(np.float64)
        u = layer.u.numpy().astype(np.float64)
        n = (lambda a: a / max(np.linalg.norm(a), 1e-4)) if mode == "max" else (lambda a: a / np.sqrt((a * a).sum() + 1e-4))
        v = n(u @ w.T)
        u1 = n(v @ w)
        sigma = (v @ w @ u1.T).item()
        np.testing.assert_allclose(float(layer.sigma()), sigma, rtol=1e-5)
        results[mode] = sigma
    assert abs(results["max"] - results["rsqrt_add"]) / results["max"] > 1e-3
