"""G and D of every published configuration: shapes, parameter counts, standing stats, replicas, bf16."""

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import mirrored_strategy
from tf_biggan.config import HPARAMS_DIR, load_hparams
from tf_biggan.layers.orthogonal_init import placeholder_kernels
from tf_biggan.models import Discriminator, Generator, build_models
from tf_biggan.sampling.standing_stats import accumulate_standing_stats

# The GAN configurations: CAS protocols (cas_*) build classifiers, the TPU-size files (*_v3-*) change
# only batch and precision of the network of their base file (tests/test_tpu_scripts.py loads them), and
# fine-tuning recipes (finetune_*) have no model section (an imported run's fixes it; test_hub_import.py).
CONFIGS = sorted(n for n in (os.path.basename(p)[:-5] for p in glob.glob(os.path.join(HPARAMS_DIR, "*.yaml")))
                 if not n.startswith(("cas_", "finetune_")) and "_v3-" not in n)


def _params(model):
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_configuration_runs_at_reduced_width(name):
    hp = load_hparams(name, "model.ch=8,data.num_classes=5")
    g, d = build_models(hp)
    res = hp.model.resolution
    z = tf.random.normal((2, hp.model.dim_z))
    y = tf.constant([0, 4])
    images = g((z, y), training=True)
    assert images.shape == (2, res, res, 3) and images.dtype == tf.float32
    assert float(tf.reduce_max(tf.abs(images))) <= 1.0
    logits = d((images, y), training=True)
    assert logits.shape == (2,) and bool(tf.reduce_all(tf.math.is_finite(logits)))
    expected_attention = {"biggan_128": (64, 64), "biggan_128_bs256x8": (64, 64), "biggan_256": (128, 64), "biggan_512": (64, 64),
                          "biggan_deep_128": (64, 64), "biggan_deep_256": (64, 64), "biggan_deep_512": (64, 64),
                          "biggan_cifar10": (None, None), "digits": (None, None)}[name]
    got = tuple(int(m.attentions[0].name[len("attention"):]) if m.attentions else None for m in (g, d))
    assert got == expected_attention


@pytest.fixture
def fast_init():
    """Zeros instead of orthogonal draws (placeholder_kernels): counting parameters does not need the
    QR of 13824x1536 kernels, and the count does not depend on the values."""
    with placeholder_kernels():
        yield


def _counts(name, overrides=""):
    hp = load_hparams(name, overrides)
    g, d = build_models(hp)
    g.build_for_input()
    d.build_for_input()
    return _params(g), _params(d)


@pytest.mark.slow  # builds every paper configuration at full width (up to 160M parameters): long by nature
def test_parameter_counts_match_the_paper(fast_init):
    g, d = _counts("biggan_128")
    # compare_gan's and BigGAN-PyTorch's exact counts; the paper's 70.4M / 88.0M / 158.3M (Table 1 row 8)
    assert (g, d) == (70_433_988, 87_982_370)
    assert abs(g + d - 158.3e6) / 158.3e6 < 0.01
    g64, d64 = _counts("biggan_128", "model.ch=64")
    assert abs(g64 + d64 - 71.3e6) / 71.3e6 < 0.01  # Table 1, last row
    gd, dd = _counts("biggan_deep_128")
    assert abs(gd - 50.4e6) / 50.4e6 < 0.01 and abs(dd - 34.6e6) / 34.6e6 < 0.01  # Appendix B
    g0, _ = _counts("biggan_128", "model.shared_embedding=false,model.skip_z=false")
    assert abs(g0 + d - 173.5e6) / 173.5e6 < 0.01  # Table 1 row 5
    g1, _ = _counts("biggan_128", "model.skip_z=false")
    assert abs(g1 + d - 160.6e6) / 160.6e6 < 0.01  # Table 1 row 6


def test_standing_stats_make_output_independent_of_batch_size():
    hp = load_hparams("digits", "model.ch=4")
    g = Generator(hp.model, 10)
    z = tf.random.normal((64, hp.model.dim_z), seed=1)
    y = tf.range(64) % 10
    g((z, y), training=True)  # a training step's worth of state
    accumulate_standing_stats(g, num_passes=5, batch_size=32, seed=3)
    batch64 = g((z, y), training=False).numpy()
    batch1 = np.concatenate([g((z[i:i + 1], y[i:i + 1]), training=False).numpy() for i in range(64)])
    np.testing.assert_allclose(batch1, batch64, rtol=1e-5, atol=1e-5)
    # whereas batch statistics depend on the batch
    moments_of_batch = g((z, y), training=True).numpy()[:8]
    moments_of_eight = g((z[:8], y[:8]), training=True).numpy()
    assert np.abs(moments_of_batch - moments_of_eight).max() > 1e-3


def test_generator_cross_replica_forward_equals_one_replica():
    hp = load_hparams("digits", "model.ch=4")
    z = tf.random.normal((8, hp.model.dim_z), seed=2)
    y = tf.range(8) % 10
    outputs = []
    weights = None
    for n in (1, 2, 4):
        strategy = mirrored_strategy(n)
        with strategy.scope():
            g = Generator(hp.model, 10)
            g.build_for_input()
            if weights is None:
                weights = g.get_weights()
            g.set_weights(weights)
        per = 8 // n

        def value_fn(ctx, per=per):
            i = ctx.replica_id_in_sync_group
            return z[i * per:(i + 1) * per], y[i * per:(i + 1) * per]

        inputs = strategy.experimental_distribute_values_from_function(value_fn)
        out = strategy.run(tf.function(lambda v, g=g: g(v, training=True)), args=(inputs,))
        outputs.append(np.concatenate([t.numpy() for t in strategy.experimental_local_results(out)]))
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(outputs[2], outputs[0], rtol=1e-4, atol=1e-5)


def test_int_labels_and_one_hot_class_vectors_agree():
    hp = load_hparams("biggan_deep_128", "model.ch=8,model.resolution=32,data.num_classes=7")
    g, d = build_models(hp)
    z = tf.random.normal((3, 128), seed=4)
    y = tf.constant([1, 6, 3])
    a = g((z, y)).numpy()
    b = g((z, tf.one_hot(y, 7))).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d((a, y)).numpy(), d((a, tf.one_hot(y, 7))).numpy(), rtol=1e-5, atol=1e-5)


def test_projection_discriminator_output_is_linear_plus_class_projection():
    hp = load_hparams("digits", "model.ch=4")
    d = Discriminator(hp.model, 10)
    x = tf.random.normal((4, 16, 16, 3), seed=5)
    y = tf.constant([0, 1, 2, 3])
    # D(x, y) - D(x, y') = (Embed(y) - Embed(y')) . h: the class enters only through the projection
    out_y = d((x, y)).numpy()
    out_0 = d((x, tf.zeros_like(y))).numpy()
    emb = d.embed.normalized_kernel().numpy()
    hidden = x
    for block in d.blocks:  # h = sum-pooled ReLU features, recomputed block by block
        hidden = block(hidden)
    pooled = tf.reduce_sum(tf.nn.relu(hidden), axis=[1, 2]).numpy()
    expected = np.sum((emb[y.numpy()] - emb[0]) * pooled, axis=1)
    np.testing.assert_allclose(out_y - out_0, expected, rtol=1e-4, atol=1e-4)


def test_ortho_reg_covers_every_g_kernel_but_the_shared_embedding():
    hp = load_hparams("digits", "model.ch=4")
    g = Generator(hp.model, 10)
    g.build_for_input()
    kernels = g.ortho_reg_kernels()
    all_kernels = [w for w in g.trainable_weights if len(w.shape) >= 2]
    assert len(kernels) == len(all_kernels) - 1
    assert g.shared.kernel.path not in {k.path for k in kernels}


@pytest.mark.parametrize("name,overrides", [
    ("biggan_deep_128", "model.resolution=32"),
    ("biggan_128", "model.resolution=64,model.dim_z=100"),  # attention at 32x32 in G and D
])
def test_mixed_bfloat16_runs_and_tracks_float32(name, overrides):
    base = f"model.ch=8,data.num_classes=4,{overrides}"
    hp32 = load_hparams(name, base)
    hp16 = load_hparams(name, base + ",model.dtype=mixed_bfloat16")
    g32, d32 = build_models(hp32)
    g16, d16 = build_models(hp16)
    for a, b in ((g32, g16), (d32, d16)):
        a.build_for_input(2)
        b.build_for_input(2)
        b.set_weights(a.get_weights())
        assert all(w.dtype == "float32" for w in b.weights)  # variables stay float32
    z = tf.random.normal((4, hp32.model.dim_z), seed=6)
    y = tf.constant([0, 1, 2, 3])
    assert (g16.attentions and d16.attentions) or name == "biggan_deep_128"
    with tf.GradientTape() as tape:
        img16 = g16((z, y), training=True)
        loss = tf.reduce_mean(d16((img16, y), training=True))
    grads = tape.gradient(loss, g16.trainable_weights)
    assert all(bool(tf.reduce_all(tf.math.is_finite(gr))) for gr in grads if gr is not None)
    img32 = g32((z, y), training=True)
    assert img16.dtype == tf.float32
    assert float(tf.reduce_mean(tf.abs(img16 - img32))) < 0.05


def test_upsample_equals_tf_repeat_in_value_and_gradient_bit_for_bit():
    """G's 2x nearest-neighbour upsampling (models/biggan.py): the tile + reshape form gives the same
    values and, for a random output gradient, the same input gradient as tf.repeat twice, with static
    and with unknown spatial shapes."""
    from tf_biggan.models.biggan import upsample

    rng = np.random.default_rng(3)
    x = tf.constant(rng.standard_normal((2, 3, 5, 4)).astype(np.float32))
    dy = tf.constant(rng.standard_normal((2, 6, 10, 4)).astype(np.float32))

    def value_and_grad(fn, x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
        return y.numpy(), tape.gradient(y, x, output_gradients=dy).numpy()

    ref_y, ref_g = value_and_grad(lambda t: tf.repeat(tf.repeat(t, 2, axis=1), 2, axis=2), x)
    np.testing.assert_array_equal(ref_y[:, ::2, ::2], x.numpy())  # the reference is nearest-neighbour
    y, g = value_and_grad(upsample, x)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(g, ref_g)
    dynamic = tf.function(upsample).get_concrete_function(tf.TensorSpec((None, None, None, 4)))
    np.testing.assert_array_equal(dynamic(x).numpy(), ref_y)
    static = tf.function(upsample).get_concrete_function(tf.TensorSpec((None, 3, 5, 4)))
    assert len(static.graph.get_operations()) < 20  # tf.repeat twice: 64
