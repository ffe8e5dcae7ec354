"""Memory of the sigma monitoring (Appendix F; issue 14): singular values of a wide kernel come from the
fan_in x fan_in Gram (G's first linear layer at 128 px is 20 x 24,576) and still equal an SVD's."""

import numpy as np
import tensorflow as tf

from tf_biggan.layers.spectral_norm import SNDense, top_singular_values


def _wide_kernel(rng, fan_in=12, fan_out=200):
    u, _ = np.linalg.qr(rng.randn(fan_in, fan_in))
    v, _ = np.linalg.qr(rng.randn(fan_out, fan_in))
    s = np.linspace(4.0, 0.5, fan_in)
    return (u @ np.diag(s) @ v.T).astype(np.float32), s


def test_wide_kernel_singular_values_match_svd_with_and_without_the_sn_vector():
    kernel, s = _wide_kernel(np.random.RandomState(5))
    np.testing.assert_allclose(top_singular_values(tf.constant(kernel), k=3).numpy(), s[:3], rtol=1e-4)
    layer = SNDense(kernel.shape[1])
    layer(tf.zeros((1, kernel.shape[0])))
    layer.kernel.assign(kernel)
    for _ in range(3):  # a few power iterations: u now points along sigma_0's right vector
        layer(tf.zeros((1, kernel.shape[0])), training=True)
    np.testing.assert_allclose(layer.singular_values().numpy(), s[:3], rtol=1e-4)


def test_wide_kernel_monitoring_never_builds_the_fan_out_gram():
    spec = tf.TensorSpec((20, 24576), tf.float32)
    graph = tf.function(lambda w: top_singular_values(w, k=3)).get_concrete_function(spec).graph
    sizes = [int(np.prod(out.shape)) for op in graph.get_operations() for out in op.outputs
             if out.shape.is_fully_defined()]
    assert max(sizes) == 20 * 24576
