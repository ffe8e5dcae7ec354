"""G's sampling shortcuts are the plain computation up to float rounding: the upsample + 3x3 conv computed
per output phase at the input's resolution (layers/upsample_conv.py), the output conv that computes only
the kept channels (layers/output_conv.py) and the shortcut's upsample fused into the residual add
(models/biggan.add_upsampled). References: numpy (np.repeat + a direct convolution) and TF's plain ops."""

import numpy as np
import pytest
import tensorflow as tf

from tf_biggan.layers.output_conv import SNFirstChannelsConv2D
from tf_biggan.layers.spectral_norm import SNConv2D
from tf_biggan.layers.upsample_conv import SNUpsampleConv2D, upsample_conv2d
from tf_biggan.models.biggan import add_upsampled, upsample


def _numpy_conv_same(x, k):
    """Stride-1 SAME convolution (cross-correlation, as tf.nn.conv2d) in float64, written out."""
    kh, kw = k.shape[:2]
    xp = np.pad(x, [(0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)])
    out = np.zeros(x.shape[:3] + (k.shape[-1],))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,co->nhwo", xp[:, i:i + x.shape[1], j:j + x.shape[2]], k[i, j])
    return out


def _plain(x, k):
    return tf.nn.conv2d(upsample(x), k, strides=1, padding="SAME")


@pytest.mark.parametrize("shape,out", [((2, 3, 5, 4), 6), ((1, 1, 1, 3), 2), ((3, 4, 4, 8), 8), ((1, 2, 7, 1), 5)])
def test_phase_conv_equals_upsample_then_conv(shape, out):
    """Values against numpy (np.repeat twice, then a direct 3x3 conv in float64), including 1-pixel and
    odd, non-square inputs where every output touches the zero border; gradients of x and the kernel
    against TF's autodiff of the plain upsample + conv."""
    rng = np.random.default_rng(sum(shape) + out)
    x = rng.standard_normal(shape).astype(np.float32)
    k = rng.standard_normal((3, 3, shape[-1], out)).astype(np.float32)
    up = np.repeat(np.repeat(x.astype(np.float64), 2, axis=1), 2, axis=2)
    ref = _numpy_conv_same(up, k.astype(np.float64))
    xt, kt = tf.constant(x), tf.constant(k)
    dy = tf.constant(rng.standard_normal(ref.shape).astype(np.float32))
    results = []
    for fn in (upsample_conv2d, _plain):
        with tf.GradientTape() as tape:
            tape.watch([xt, kt])
            y = fn(xt, kt)
        results.append([y.numpy()] + [g.numpy() for g in tape.gradient(y, [xt, kt], output_gradients=dy)])
    (y, gx, gk), (_, gx_ref, gk_ref) = results
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gk, gk_ref, rtol=1e-5, atol=1e-5)


def test_phase_conv_refuses_other_kernel_sizes():
    with pytest.raises(ValueError, match="3x3"):
        upsample_conv2d(tf.zeros((1, 2, 2, 1)), tf.zeros((1, 1, 1, 1)))


def _twin(cls, plain_filters, x, **kw):
    """(our layer, a plain SNConv2D) with the same kernel, bias and sn_u."""
    rng = np.random.default_rng(7)
    ours, plain = cls(**kw), SNConv2D(plain_filters, 3)
    plain(upsample(x) if cls is SNUpsampleConv2D else x)
    ours(x)
    for a, b in zip(ours.weights, plain.weights):
        assert a.shape == b.shape
        value = rng.standard_normal(a.shape).astype(np.float32) * (0.3 if "kernel" in a.path else 1.0)
        a.assign(value)
        b.assign(value)
    return ours, plain


@pytest.mark.parametrize("training", [False, True])
def test_sn_upsample_conv_is_sn_conv_of_the_upsampled_input(training):
    """The same variables, the same sigma, the same output, the same u update, and the same kernel and
    input gradients as SNConv2D on upsample(x), in inference and in training calls."""
    x = tf.constant(np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float32))
    ours, plain = _twin(SNUpsampleConv2D, 6, x, filters=6, name="conv")
    dy = tf.constant(np.random.default_rng(3).standard_normal((2, 6, 8, 6)).astype(np.float32))
    grads = []
    for layer, inp in ((ours, lambda: x), (plain, lambda: upsample(x))):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(inp(), training=training)
        grads.append([y] + tape.gradient(y, [x, layer.kernel, layer.bias], output_gradients=dy) + [layer.u])
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-5, atol=2e-5)


def test_first_channels_conv_is_the_full_conv_sliced():
    """Output = the full ch -> ch conv's first 3 channels; sigma is the whole kernel's; the kernel's
    gradient for a loss on those channels equals the full conv's (zero-padded columns get only sigma's part)."""
    x = tf.constant(np.random.default_rng(4).standard_normal((2, 5, 5, 8)).astype(np.float32))
    ours, plain = _twin(SNFirstChannelsConv2D, 8, x, filters=8, keep=3)
    dy = tf.constant(np.random.default_rng(5).standard_normal((2, 5, 5, 3)).astype(np.float32))
    results = []
    for layer, take in ((ours, lambda y: y), (plain, lambda y: y[..., :3])):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = take(layer(x, training=False))
        results.append([y] + tape.gradient(y, [x, layer.kernel, layer.bias], output_gradients=dy))
    assert results[0][0].shape == (2, 5, 5, 3)
    for a, b in zip(*results):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=2e-5, atol=2e-5)


def test_add_upsampled_equals_the_tiled_add():
    rng = np.random.default_rng(6)
    s = tf.constant(rng.standard_normal((2, 3, 5, 4)).astype(np.float32))
    h = tf.constant(rng.standard_normal((2, 6, 10, 4)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([h, s])
        ours, plain = add_upsampled(h, s), h + upsample(s)
    np.testing.assert_array_equal(ours.numpy(), plain.numpy())
    np.testing.assert_array_equal(ours.numpy(), h.numpy() + np.repeat(np.repeat(s.numpy(), 2, 1), 2, 2))
    dy = tf.constant(rng.standard_normal(h.shape).astype(np.float32))
    grads = [tape.gradient(out, [h, s], output_gradients=dy) for out in (ours, plain)]
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
