"""Spectrally normalised dense, conv and embedding layers (Miyato et al. 2018; paper Section 3, Appendix C).

Each layer keeps its raw kernel W (trainable, orthogonally initialised, Appendix C) and a
non-trainable vector `u` for the power iteration. Every call, in training and at inference, does
the authors' one power iteration from the stored `u` (SN-GAN's Algorithm 1, BigGAN-PyTorch's
`SN.W_`, compare_gan's `spectral_norm`), with W as a (fan_in, fan_out) matrix:

    v = n(u W^T),   u1 = n(v W),   sigma = v W u1^T  (= ||v W|| up to epsilon),

the iteration's own pair, u1 and v, held constant for the gradient. A training call stores u1;
an inference call leaves `u` as it is (BigGAN-PyTorch's `update=self.training`), so inference is
a pure function of the checkpoint. epsilon = 1e-4 in the vector normalisation n(x) = x / max(|x|, eps)
(Appendix C raises it from 1e-8).

`top_singular_values(kernel, k=3)` reads sigma_0..sigma_2 of the raw kernel (Section 4, Appendix F
monitor them before normalisation) by subspace iteration on the smaller Gram matrix (W^T W or W W^T,
whichever side is shorter: G's first linear layer at 128 px is 20 x 24,576), started from the
layer's own `u`, so it costs a few matmuls, not an SVD of the whole kernel.

Memory: autodiff of conv(x, W / sigma) keeps the normalised copy W / sigma of every kernel for the
backward computation (Conv2DBackpropInput needs it): G's and D's copies, 0.6 GB at BigGAN-128, are all
alive when a G step's backward starts. The layers apply the kernel through `recompute_in_backward`
(layers/recompute.py), which keeps x, the raw kernel and sigma and forms W / sigma again in the
backward computation, one layer at a time, with the same gradient values.
"""

from __future__ import annotations

import weakref

import keras
import tensorflow as tf

from tf_biggan.layers import orthogonal_init
from tf_biggan.layers.orthogonal_init import Orthogonal
from tf_biggan.layers.recompute import recompute_in_backward


_GRAPH_CONSTANTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _constant(value, dtype):
    """tf.constant(value, dtype), one per graph: spectral norm's axis and epsilon were a Const op per
    use, ~5% of the tiny training step's ops, each to trace, optimise and instantiate. The same
    values bit for bit: the ops that read them are unchanged."""
    if tf.executing_eagerly():
        return tf.constant(value, dtype)
    graph = tf.compat.v1.get_default_graph()
    cache = _GRAPH_CONSTANTS.setdefault(graph, {})
    key = (value, dtype)
    if key not in cache:
        with tf.control_dependencies(None):  # not tied to the control context of its first user
            cache[key] = tf.constant(value, dtype)
    return cache[key]


# How the power iteration normalises its vectors (model.sn_normalize): "max", x / max(|x|, eps), as
# SN-GAN, BigGAN-PyTorch (F.normalize) and pytorch-pretrained-BigGAN do; "rsqrt_add", x * rsqrt(sum x^2
# + eps), what a dump of the official TF-Hub modules' graph shows (an `add` of 1e-4 before the rsqrt).
# The two differ by about eps / (2 |x|^2) relative: invisible once sigma >> 1, 5e-5 at sigma ~ 1.
SN_NORMALIZE = ("max", "rsqrt_add")


def _l2_normalize(x, eps, mode: str = "max"):
    # tf.norm's own ops (sqrt of the sum of x * x), without its Python-side checks: they were ~10% of
    # the training step's trace.
    axis, eps = _constant(-1, tf.int32), _constant(float(eps), x.dtype)
    squared = tf.reduce_sum(x * x, axis=axis, keepdims=True)
    if mode == "rsqrt_add":
        return x * tf.math.rsqrt(squared + eps)
    return x / tf.maximum(tf.sqrt(squared), eps)


def kernel_matrix(kernel) -> tf.Tensor:
    """The kernel as a (fan_in, fan_out) matrix in float32: conv (kh, kw, in, out) -> (kh*kw*in, out)."""
    kernel = tf.convert_to_tensor(kernel)
    return tf.reshape(tf.cast(kernel, tf.float32), (-1, kernel.shape[-1]))


def power_iteration(w_mat, u, eps, normalize: str = "max"):
    """One power iteration of SN-GAN's Algorithm 1 on w_mat (fan_in, fan_out) from u (1, fan_out):
    (sigma = v W u1^T, u1), with v = n(u W^T) and u1 = n(v W) held constant for the gradient; n is
    `normalize` (SN_NORMALIZE)."""
    v = tf.stop_gradient(_l2_normalize(tf.matmul(u, w_mat, transpose_b=True), eps, normalize))
    vw = tf.matmul(v, w_mat)
    u1 = tf.stop_gradient(_l2_normalize(vw, eps, normalize))
    sigma = tf.reduce_sum(vw * u1, axis=_constant((0, 1), tf.int32))
    return sigma, u1


def subspace_iteration(gram, basis, iterations: int) -> tf.Tensor:
    """An orthonormal basis of the top eigenspace of the symmetric `gram`: QR of `basis`, then
    `iterations` times q <- QR(gram q) (block power iteration; shared by the σ monitor and the
    Section 4.1 σ0 knobs, layers/conditioning.py).

    A graph loop, not `iterations` unrolled copies: the monitor traces this for every SN layer (107 at
    BigGAN-128), and unrolled it was ~10,000 ops to trace, optimise and hold. The same ops in the same
    order; the values are within 4e-7 of the unrolled graph's, which Grappler rewrote."""
    q, _ = tf.linalg.qr(basis)
    return tf.while_loop(lambda i, q: i < iterations, lambda i, q: (i + 1, tf.linalg.qr(tf.matmul(gram, q))[0]),
                         (tf.constant(0), q))[1]


def top_singular_values(kernel, k: int = 3, iterations: int = 30, init=None) -> tf.Tensor:
    """The k largest singular values of a kernel (as a (fan_in, fan_out) matrix), float32.

    Subspace (block power) iteration on the smaller Gram matrix G (W^T W, fan_out x fan_out, or
    W W^T when fan_in < fan_out: both have eigenvalues sigma_i^2), then the eigenvalues of Q^T G Q.
    `init` (1, fan_out) is used as the first basis vector when given (the layer's SN `u`, which
    already points at sigma_0; mapped through W on the fan_in side).
    """
    w = kernel_matrix(kernel)
    first = None if init is None else tf.reshape(tf.cast(init, tf.float32), (-1, 1))
    if w.shape[0] < w.shape[1]:
        w = tf.transpose(w)  # same singular values; the Gram below is then fan_in x fan_in
        first = None if first is None else tf.matmul(w, first, transpose_a=True)
    n = w.shape[1]
    k = min(k, n, w.shape[0])
    gram = tf.matmul(w, w, transpose_a=True)
    width = min(n, k + 4)  # a few extra columns speed convergence of the k-th value
    basis = tf.random.stateless_normal((n, width), seed=(17, 29), dtype=tf.float32)
    if first is not None:
        basis = tf.concat([first, basis[:, 1:]], axis=1)
    q = subspace_iteration(gram, basis, iterations)
    small = tf.matmul(q, tf.matmul(gram, q), transpose_a=True)
    eig = tf.linalg.eigvalsh(0.5 * (small + tf.transpose(small)))
    eig = tf.sort(eig, direction="DESCENDING")[:k]
    return tf.sqrt(tf.maximum(eig, 0.0))


def settle_spectral_norm(model, iterations: int) -> None:
    """Sets every SN layer's `u` of `model` to its kernel's top right singular vector.

    One power iteration per step leaves sigma ~1e-2 off early in training, where the top singular
    values of an orthogonally initialised kernel lie within ~0.3% of each other: a single vector
    converges like (s2/s1)^k. Here a kernel whose smaller side is <= 256 gets the exact vector (eigh
    of the small Gram matrix); a larger one `iterations` of block power iteration (8 seeded columns)
    and Rayleigh-Ritz, which converges like (s9/s1)^k and separates s1 from s2 exactly within the
    block. The result is a function of the kernel alone (seeded start, sign fixed by the largest
    entry), so a run that samples mid-training and one resumed past that point end in the same
    state. Used on EMA-G before its standing statistics: once when a run is loaded for sampling
    (sampling/run.load_run), and before the trainer's sample grid and best-FID scoring; 0 iterations
    keeps the stored `u` (an imported module's, whose inference a run reproduces)."""
    if iterations <= 0:
        return
    for layer in spectral_norm_layers(model):
        top = _top_right_singular_vector(kernel_matrix(layer.kernel), iterations)
        layer.u.assign(tf.reshape(top, layer.u.shape))


def _top_right_singular_vector(w, iterations: int):
    """(1, fan_out) unit vector: the top right singular vector of w (fan_in, fan_out), its largest
    entry positive."""
    fan_in, n = w.shape
    if min(fan_in, n) <= 256:
        if n <= fan_in:
            top = tf.linalg.eigh(tf.matmul(w, w, transpose_a=True))[1][:, -1:]  # eigh sorts ascending
        else:  # the left vector from the smaller Gram, then u = n(v W)
            left = tf.linalg.eigh(tf.matmul(w, w, transpose_b=True))[1][:, -1:]
            top = tf.matmul(w, left, transpose_a=True)
    else:
        basis = tf.random.stateless_normal((n, min(n, 8)), seed=(31, 7), dtype=tf.float32)
        q = tf.while_loop(lambda i, q: i < iterations,
                          lambda i, q: (i + 1, tf.linalg.qr(tf.matmul(w, tf.matmul(w, q), transpose_a=True))[0]),
                          (tf.constant(0), tf.linalg.qr(basis)[0]))[1]
        wq = tf.matmul(w, q)
        small = tf.matmul(wq, wq, transpose_a=True)
        top = tf.matmul(q, tf.linalg.eigh(0.5 * (small + tf.transpose(small)))[1][:, -1:])
    top = tf.reshape(top, (1, -1))
    top = top / tf.norm(top)
    largest = tf.gather(top[0], tf.argmax(tf.abs(top[0])))
    return top * tf.where(largest < 0, -1.0, 1.0)


class _SpectralNormLayer(keras.layers.Layer):
    """Base: owns `kernel` (+ optional `bias`) and the power-iteration vector `u`."""

    def __init__(self, use_sn: bool = True, use_bias: bool = True, sn_epsilon: float = 1e-4,
                 kernel_initializer=None, sn_normalize: str = "max", **kwargs):
        super().__init__(**kwargs)
        if sn_normalize not in SN_NORMALIZE:
            raise ValueError(f"sn_normalize must be one of {SN_NORMALIZE}, got {sn_normalize!r}")
        self.use_sn = use_sn
        self.use_bias = use_bias
        self.sn_epsilon = sn_epsilon
        self.sn_normalize = sn_normalize
        # Appendix C: orthogonal initialisation (the fast, value-identical form of Keras' Orthogonal).
        self.kernel_initializer = (Orthogonal() if kernel_initializer is None
                                   else keras.initializers.get(kernel_initializer))

    def _build_kernel(self, shape) -> None:
        # autocast=False: under mixed bf16, Keras would hand a call a bf16-rounded kernel, so the power
        # iteration and W / sigma would see a rounded W (and a float32 copy of it would be kept for the
        # backward computation). The layer casts W / sigma to the compute dtype itself.
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=self.kernel_initializer,
                                      autocast=False)
        orthogonal_init.register(self.kernel, self.kernel_initializer, shape)  # deferred draw, if asked
        out = shape[-1]
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(out,), initializer="zeros")
        if self.use_sn:
            # Identical on every replica (same W, same u): keep the first replica's write.
            self.u = self.add_weight(name="sn_u", shape=(1, out), initializer=keras.initializers.RandomNormal(),
                                     trainable=False, autocast=False, aggregation="only_first_replica")

    def normalized_kernel(self, training=False) -> tf.Tensor:
        """W / sigma in float32 (one power iteration; `u` updated when training)."""
        w, sigma = self._kernel_and_sigma(training)
        return w if sigma is None else w / sigma

    def _kernel_and_sigma(self, training):
        """(W in float32, sigma), sigma None without SN: one power iteration from the stored `u`,
        whose new value is stored when training."""
        w = tf.cast(tf.convert_to_tensor(self.kernel), tf.float32)
        if not self.use_sn:
            return w, None
        sigma, u = power_iteration(tf.reshape(w, (-1, w.shape[-1])), tf.convert_to_tensor(self.u), self.sn_epsilon,
                                   self.sn_normalize)
        if training:
            self.u.assign(u)
        return w, sigma

    def sigma(self) -> tf.Tensor:
        """The SN estimate of sigma_0 an inference call uses (no state change)."""
        return power_iteration(kernel_matrix(self.kernel), tf.convert_to_tensor(self.u), self.sn_epsilon,
                               self.sn_normalize)[0]

    def singular_values(self, k: int = 3, iterations: int = 30) -> tf.Tensor:
        """sigma_0..sigma_{k-1} of the raw (unnormalised) kernel, for Appendix F monitoring."""
        return top_singular_values(self.kernel, k, iterations, init=self.u if self.use_sn else None)

    def _apply(self, op, x, training):
        """op(x, W / sigma in the compute dtype), the normalised kernel not kept for the backward."""
        w, sigma = self._kernel_and_sigma(training)
        if sigma is None:
            return op(x, tf.cast(w, self.compute_dtype))
        dtype = self.compute_dtype
        return recompute_in_backward(lambda x, w, sigma: op(x, tf.cast(w / sigma, dtype)))(x, w, sigma)

    def _add_bias(self, y):
        if self.use_bias:
            y = y + tf.cast(self.bias, self.compute_dtype)
        return y


class SNDense(_SpectralNormLayer):
    """Dense layer x W / sigma (+ b)."""

    def __init__(self, units: int, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self._build_kernel((int(input_shape[-1]), self.units))

    def call(self, x, training=False):
        return self._add_bias(self._apply(tf.matmul, x, training))


def _conv_same(x, kernel):
    return tf.nn.conv2d(x, kernel, strides=1, padding="SAME")


class SNConv2D(_SpectralNormLayer):
    """2-D convolution (NHWC, stride 1, SAME padding) with a spectrally normalised kernel.

    SN treats the kernel as a (kh*kw*in, out) matrix, as Miyato et al. and SA-GAN do.
    """

    def __init__(self, filters: int, kernel_size: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size

    def build(self, input_shape):
        self._build_kernel((self.kernel_size, self.kernel_size, int(input_shape[-1]), self.filters))

    def call(self, x, training=False):
        return self._add_bias(self._apply(_conv_same, x, training))


class SNEmbedding(_SpectralNormLayer):
    """Class embedding as a linear map of one-hot (or mixed) class vectors: y @ E / sigma.

    Taking y as a [batch, num_classes] float vector rather than an index lets G and D accept class
    mixtures (Figure 9 interpolations; the TF-Hub `y` input); for one-hot y it equals a lookup.
    Integer labels [batch] are one-hot encoded here.
    """

    def __init__(self, num_classes: int, dim: int, **kwargs):
        kwargs.setdefault("use_bias", False)
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.dim = dim

    def build(self, input_shape):
        self._build_kernel((self.num_classes, self.dim))

    def call(self, y, training=False):
        if y.dtype.is_integer:
            y = tf.one_hot(y, self.num_classes, dtype=self.compute_dtype)
        return self._apply(tf.matmul, tf.cast(y, self.compute_dtype), training)


def spectral_norm_layers(model) -> list:
    """Every spectrally normalised layer inside `model`, in a stable order (for Appendix F logs)."""
    return [layer for layer in model._flatten_layers(include_self=True, recursive=True)
            if isinstance(layer, _SpectralNormLayer) and layer.use_sn]
