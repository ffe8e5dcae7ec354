"""ADA and DiffAugment (seed 003; Zhao et al.): identity at p = 0, gradients, the composed affine
transform, colour invariants, firing rates, replica independence, the p controller, the leak checker.

Pure functions on small images; the training-step integration is in test_augment_train.py.
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import mirrored_strategy
from tf_biggan import seeds
from tf_biggan.augment import check_leak
from tf_biggan.augment.controller import REAL, AugmentState, ada_update
from tf_biggan.augment.diffaugment import diff_augment, rand_cutout, rand_translation
from tf_biggan.augment.draws import Draws
from tf_biggan.augment.leak import applied_with_probability
from tf_biggan.augment.transforms import (GEOMETRIC, PIPELINES, TRANSFORMS, AdaSpec, ada_augment, ada_parameters,
                                        with_overrides)
from tf_biggan.augment.resample import affine_resample
from tf_biggan.config import AugmentConfig, HParamsError, load_hparams


def draws(batch, counter=0, seed=3):
    return Draws(seeds.key("augment", seed, counter), batch)


def smooth_image(size=48, channels=3, seed=0):
    """Sum of wide Gaussian blobs: smooth, so resampling twice and once agree closely."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.zeros((size, size, channels))
    for _ in range(6):
        cy, cx = rng.uniform(0, size, 2)
        sigma = size / 5
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))
        img += blob[..., None] * rng.uniform(-1, 1, channels)
    return img.astype(np.float32)


def only(name, **extra):
    return AdaSpec(**{name: 1.0}, **extra)


# ------------------------------------------------------------------ identity and gradients
@pytest.mark.parametrize("pipeline", ["bgc", "bgcnc"])
def test_p_zero_is_the_identity_bit_for_bit(pipeline):
    x = tf.random.uniform((6, 16, 16, 3), -1, 1, seed=1)
    y = ada_augment(x, 0.0, draws(6), pipeline)
    assert np.array_equal(y.numpy(), x.numpy())
    # bf16 in, bf16 out, still untouched
    xb = tf.cast(x, tf.bfloat16)
    yb = ada_augment(xb, tf.constant(0.0), draws(6), pipeline)
    assert yb.dtype == tf.bfloat16 and np.array_equal(yb.numpy(), xb.numpy())


def test_bf16_images_are_augmented_like_float32():
    x = tf.random.uniform((4, 16, 16, 3), -1, 1, seed=1)
    xb = tf.cast(x, tf.bfloat16)
    y = ada_augment(x, 1.0, draws(4), "bgc")
    yb = ada_augment(xb, 1.0, draws(4), "bgc")
    assert yb.dtype == tf.bfloat16
    ref = ada_augment(tf.cast(xb, tf.float32), 1.0, draws(4), "bgc")  # same input rounding
    np.testing.assert_allclose(tf.cast(yb, tf.float32).numpy(), ref.numpy(), atol=0.05, rtol=1e-2)
    assert not np.allclose(y.numpy(), x.numpy())


def test_gated_off_samples_are_untouched_when_others_move():
    x = tf.random.uniform((64, 8, 8, 3), -1, 1, seed=2)
    params = ada_parameters(0.1, draws(64), "bgc", 8, 8)
    y = ada_augment(x, 0.1, draws(64), "bgc").numpy()
    off = ~np.any([g.numpy() for g in params["gates"].values()], axis=0)
    assert 0 < off.sum() < 64
    assert np.array_equal(y[off], x.numpy()[off])
    assert not np.allclose(y[~off], x.numpy()[~off])


def test_bg_moves_pixels_but_never_changes_their_values():
    """`bg` (blit + geom): with reflection padding a constant image stays constant under every
    geometric transform, while the colour transforms of `bgc` change it."""
    assert PIPELINES["bg"].enabled() == GEOMETRIC
    flat = tf.fill((16, 8, 8, 3), 0.3)
    # (the truncated sym6 filter's DC gain is 1 to ~1e-3)
    np.testing.assert_allclose(ada_augment(flat, 0.7, draws(16, counter=6), "bg").numpy(), 0.3, atol=5e-3)
    assert np.abs(ada_augment(flat, 0.7, draws(16, counter=6), "bgc").numpy() - 0.3).max() > 0.05
    x = tf.random.uniform((16, 8, 8, 3), -1, 1, seed=4)
    assert not np.allclose(ada_augment(x, 0.7, draws(16, counter=6), "bg").numpy(), x.numpy())
    assert AugmentConfig(kind="ada", pipeline="bg").pipeline == "bg"


@pytest.mark.parametrize("name", TRANSFORMS)
def test_gradients_reach_the_generator_through_every_transform(name):
    """G -> augment -> loss: the gradient wrt G's weights is non-zero and equals the finite
    difference (every transform is affine in the pixels, so the difference is exact up to rounding)."""
    z = tf.random.normal((4, 5), seed=4)
    w = tf.Variable(tf.random.normal((5, 12 * 12 * 3), seed=5) * 0.1)
    probe = tf.random.normal((4, 12, 12, 3), seed=6)

    def loss(weights):
        fake = tf.reshape(tf.tanh(z @ weights), (4, 12, 12, 3))
        out = ada_augment(fake, 1.0, draws(4, counter=7), only(name))
        return tf.reduce_sum(out * probe), out, fake

    with tf.GradientTape() as tape:
        value, out, fake = loss(w)
    grad = tape.gradient(value, w)
    assert grad is not None and np.all(np.isfinite(grad.numpy())) and float(tf.reduce_max(tf.abs(grad))) > 0
    assert not np.allclose(out.numpy(), fake.numpy()), f"{name} did not change the images at p = 1"
    direction = tf.random.normal(w.shape, seed=8) * 1e-2
    numeric = (loss(w + direction)[0] - loss(w - direction)[0]) / 2.0
    analytic = tf.reduce_sum(grad * direction)
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=2e-2, atol=1e-3)


# ------------------------------------------------------------------ geometry
def _np_translate(tx, ty):
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]], np.float64)


def _np_scale(sx, sy):
    return np.diag([sx, sy, 1.0])


def _np_rotate(t):
    return np.array([[math.cos(t), -math.sin(t), 0], [math.sin(t), math.cos(t), 0], [0, 0, 1]])


def test_exact_pixel_operations():
    """Integer translation, x-flip and 90-degree rotation against numpy on a smooth image."""
    img = smooth_image(32)
    x = tf.constant(img[None])
    inner = (slice(6, -6), slice(6, -6))
    cases = {
        "shift": (_np_translate(-2, 1), np.roll(np.roll(img, 2, axis=1), -1, axis=0)),  # out(c) = in(c + t)
        "xflip": (_np_scale(-1, 1), img[:, ::-1]),
        "rot90": (_np_rotate(math.pi / 2), None),
    }
    for name, (g_inv, expected) in cases.items():
        out = affine_resample(x, tf.constant(g_inv[None], tf.float32)).numpy()[0]
        if expected is None:  # out(x, y) = in(R (x, y)) with R (x, y) = (-y, x)
            expected = np.rot90(img, k=-1)
            if np.abs(out - expected)[inner].max() > np.abs(out - np.rot90(img, k=1))[inner].max():
                expected = np.rot90(img, k=1)
        np.testing.assert_allclose(out[inner], expected[inner], atol=2e-3, err_msg=name)


def test_composed_affine_equals_sequential_transforms():
    """ONE resampling with the product of inverse matrices == one resampling per transform, on a
    smooth image away from the borders (seed 003, C.5.2)."""
    img = smooth_image(48, seed=1)
    x = tf.constant(img[None])
    chain = [_np_scale(-1, 1), _np_rotate(math.pi / 2), _np_translate(-3, 2), _np_scale(1 / 1.15, 1 / 1.15),
             _np_rotate(-0.4), _np_scale(1 / 0.9, 0.9), _np_rotate(0.25), _np_translate(-1.3, 0.7)]
    composed = np.eye(3)
    for m in chain:
        composed = composed @ m
    once = affine_resample(x, tf.constant(composed[None], tf.float32)).numpy()[0]
    seq = x
    for m in chain:  # resample(resample(x, A), B) reads x at A B c: apply in chain order
        seq = affine_resample(seq, tf.constant(m[None], tf.float32))
    seq = seq.numpy()[0]
    inner = (slice(16, -16), slice(16, -16))
    assert np.abs(once - img)[inner].max() > 0.1  # the chain really moves the image
    np.testing.assert_allclose(once[inner], seq[inner], atol=0.02)


def test_pipeline_matrix_is_the_product_of_its_parameters():
    """g_inv of ada_parameters == the numpy product of the inverse of each reported parameter."""
    n, size = 16, 16
    params = {k: (v.numpy() if not isinstance(v, dict) else v) for k, v in
              ada_parameters(0.7, draws(n, counter=2), "bgc", size, size).items()}
    for b in range(n):
        m = (_np_scale(1 - 2 * params["xflip"][b], 1) @ _np_rotate(math.pi / 2 * params["rotate90"][b])
             @ _np_translate(-params["xint"][b, 0], -params["xint"][b, 1])
             @ _np_scale(1 / params["scale"][b], 1 / params["scale"][b]) @ _np_rotate(-params["rotate_pre"][b])
             @ _np_scale(1 / params["aniso"][b], params["aniso"][b]) @ _np_rotate(-params["rotate_post"][b])
             @ _np_translate(-params["xfrac"][b, 0] * size, -params["xfrac"][b, 1] * size))
        np.testing.assert_allclose(params["g_inv"][b], m, atol=1e-4)
    # integer translation is integer and within 0.125 of the size
    assert np.array_equal(params["xint"], np.round(params["xint"])) and np.abs(params["xint"]).max() <= 2


# ------------------------------------------------------------------ colour
@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation", "hue", "lumaflip"])
def test_grey_stays_grey(name):
    grey = tf.tile(tf.random.uniform((32, 8, 8, 1), -1, 1, seed=9), [1, 1, 1, 3])
    out = ada_augment(grey, 1.0, draws(32, counter=3), only(name)).numpy()
    np.testing.assert_allclose(out[..., 0], out[..., 1], atol=1e-5)
    np.testing.assert_allclose(out[..., 0], out[..., 2], atol=1e-5)
    if name in ("brightness", "contrast", "lumaflip"):
        assert not np.allclose(out, grey.numpy(), atol=1e-3)


def test_colour_matrices_follow_their_definitions():
    x = tf.random.uniform((64, 4, 4, 3), -1, 1, seed=10)
    v = np.ones(3) / math.sqrt(3)
    for name in ("hue", "saturation"):
        params = ada_parameters(1.0, draws(64, counter=4), only(name), 4, 4)
        out = ada_augment(x, 1.0, draws(64, counter=4), only(name)).numpy()
        xs = x.numpy()
        # both keep the grey component; hue keeps the chroma length, saturation scales it
        np.testing.assert_allclose(out @ v, xs @ v, atol=1e-5)
        chroma_in = np.linalg.norm(xs - (xs @ v)[..., None] * v, axis=-1)
        chroma_out = np.linalg.norm(out - (out @ v)[..., None] * v, axis=-1)
        factor = np.ones(64) if name == "hue" else params["saturation"].numpy()
        np.testing.assert_allclose(chroma_out, chroma_in * factor[:, None, None], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------ rates
@pytest.mark.parametrize("multiplier", [1.0, 0.5])
def test_each_transform_fires_at_rate_p_times_multiplier(multiplier):
    n, p = 20000, 0.3
    spec = with_overrides("bgcnc", **{t: multiplier for t in TRANSFORMS})
    params = ada_parameters(p, draws(n, counter=5), spec, 16, 16)
    rate = p * multiplier
    tolerance = 5 * math.sqrt(rate * (1 - rate) / n)
    for name in TRANSFORMS:
        observed = float(np.mean(params["gates"][name].numpy()))
        assert abs(observed - rate) < tolerance, (name, observed, rate)
    # gated-off samples carry the identity parameter
    gates = params["gates"]["scale"].numpy()
    assert np.all(params["scale"].numpy()[~gates] == 1.0)


# ------------------------------------------------------------------ replicas
def test_d_input_under_two_replicas_equals_one_device():
    batch = 8
    cfg = AugmentConfig(kind="fixed", p=0.6, pipeline="bgcnc")
    images = tf.random.uniform((batch, 16, 16, 3), -1, 1, seed=11)
    single = AugmentState(cfg, seed=5, global_batch=batch)
    expected = single.augment_images(images, tf.constant(3, tf.int64), 1, REAL, replica=0).numpy()
    strategy = mirrored_strategy(2)
    with strategy.scope():
        state = AugmentState(cfg, seed=5, global_batch=batch)
    half = batch // 2
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda ctx: images[ctx.replica_id_in_sync_group * half:(ctx.replica_id_in_sync_group + 1) * half])

    @tf.function
    def run(x):
        return strategy.run(lambda im: state.augment_images(im, tf.constant(3, tf.int64), 1, REAL), args=(x,))
    out = run(per_replica)
    got = np.concatenate([t.numpy() for t in strategy.experimental_local_results(out)])
    np.testing.assert_allclose(got, expected, atol=2e-5)  # matmul blocking differs with the batch size
    assert not np.allclose(got, images.numpy())


# ------------------------------------------------------------------ the p controller
def test_p_moves_up_when_d_is_confident_on_reals_and_down_otherwise():
    cfg = AugmentConfig(kind="ada", interval=2, speed_kimg=0.05, target=0.6, p_max=0.8)
    state = AugmentState(cfg, seed=0, global_batch=10)
    step = 10 / 50.0  # 10 real images per step, 2 steps per interval, 50 images from 0 to 1
    history = []
    for i in range(20):
        state.update(tf.constant(9.0), 10.0)  # E[sign] = 0.9 > 0.6: augment more
        history.append(float(state.p.numpy()))
    assert history[0] == 0.0 and history[1] == pytest.approx(2 * step)
    assert max(history) == pytest.approx(0.8) and all(h <= 0.8 + 1e-7 for h in history)
    assert state.at_cap()
    for i in range(4):
        state.update(tf.constant(-2.0), 10.0)  # E[sign] = -0.2 < 0.6: augment less
    assert float(state.p.numpy()) == pytest.approx(0.8 - 2 * 2 * step)
    for i in range(40):
        state.update(tf.constant(0.0), 10.0)
    assert float(state.p.numpy()) == 0.0  # clipped at 0


def test_controller_matches_the_numpy_reference():
    cfg = AugmentConfig(kind="ada", interval=3, speed_kimg=0.2, target=0.6, p_max=0.7)
    state = AugmentState(cfg, seed=0, global_batch=16)
    rng = np.random.default_rng(0)
    p, acc_sum, acc_n = 0.0, 0.0, 0.0
    for i in range(60):
        s = float(rng.integers(-16, 17))
        state.update(tf.constant(s), 16.0)
        acc_sum, acc_n = acc_sum + s, acc_n + 16
        if (i + 1) % 3 == 0:
            p, acc_sum, acc_n = ada_update(p, acc_sum, acc_n, cfg), 0.0, 0.0
        assert float(state.p.numpy()) == pytest.approx(p, abs=1e-6)


def test_p_is_one_value_from_the_sign_of_every_replica():
    """accumulate() in replica context sums sign(D(real)) over replicas (an all-reduced variable);
    update() in cross-replica context moves the one p every replica reads."""
    strategy = mirrored_strategy(2)
    cfg = AugmentConfig(kind="ada", interval=1, speed_kimg=0.004, target=0.6, p_max=0.8)
    with strategy.scope():
        state = AugmentState(cfg, seed=0, global_batch=4)
    # replica 0: D(real) = (+, +), replica 1: (+, -): E[sign] = 0.5 < 0.6 -> p stays 0 (clipped);
    # replica 1 alone would say 0.0, replica 0 alone 1.0 (up): only the sum gives "down".
    logits = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([[1.0], [2.0]]) if ctx.replica_id_in_sync_group == 0 else tf.constant([[3.0], [-1.0]]))
    up = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant([[1.0], [1.0]]))

    @tf.function
    def step(x):
        share = strategy.run(state.accumulate, args=(x,))
        state.update(None, 4)
        return strategy.reduce(tf.distribute.ReduceOp.SUM, share, axis=None)
    assert float(step(logits)) == pytest.approx(0.5)
    assert float(state.p.numpy()) == 0.0
    assert float(step(up)) == pytest.approx(1.0)
    # E[sign] = 1 > 0.6: p += 4 images / (0.004 kimg x 1000) = 1, clipped to p_max on both replicas
    assert [float(v.numpy()) for v in strategy.experimental_local_results(state.p)] == [pytest.approx(0.8)] * 2
    assert float(state.sign_sum.numpy()) == 0.0 and float(state.count.numpy()) == 0.0  # reset after the interval


def test_fixed_p_does_not_move():
    state = AugmentState(AugmentConfig(kind="fixed", p=0.3), seed=0, global_batch=4)
    for _ in range(10):
        state.update(tf.constant(4.0), 4.0)
    assert float(state.p.numpy()) == pytest.approx(0.3)


# ------------------------------------------------------------------ leaks
def test_leak_checker():
    leaks, reason = check_leak([0.25] * 4)
    assert leaks and "uniform" in reason and "[1, 2, 3]" in reason
    leaks, reason = check_leak([0.5, 0.0, 0.5, 0.0])
    assert leaks and "subgroup [0, 2]" in reason and "period 2" in reason
    leaks, reason = check_leak([0.5, 0, 0, 0.5, 0, 0])  # period 3 in Z_6: subgroup {0, 3}
    assert leaks and "subgroup [0, 3]" in reason
    leaks, reason = check_leak([0.5, 0.5, 0.0, 0.0])  # the paper's conditional example
    assert leaks and "[2]" in reason and "conditional" in reason
    for order in (2, 4, 8):
        for p in (0.1, 0.5, 0.8, 0.99):
            leaks, reason = check_leak(applied_with_probability(order, p))
            assert not leaks, reason
            assert f"{1 / (1 - p):.3g}" in reason  # condition number 1 / (1 - p), C.5.1
        assert check_leak(applied_with_probability(order, 1.0))[0]
    with pytest.raises(ValueError):
        check_leak([0.5, 0.6])


def test_configuration_that_leaks_is_refused():
    with pytest.raises(HParamsError, match="augment.p_max"):
        load_hparams(None, "augment.kind=ada,augment.p_max=1.5")
    with pytest.raises(Exception, match="xflip augmentation leak.*uniform"):
        load_hparams(None, "augment.kind=ada,augment.p_max=1.0")
    with pytest.raises(Exception, match="cuts out of every image"):
        load_hparams(None, "augment.kind=diffaugment,augment.p=1.0")
    with pytest.raises(HParamsError, match="above augment.p_max"):
        load_hparams(None, "augment.kind=fixed,augment.p=0.9")
    with pytest.raises(HParamsError, match="policy"):
        load_hparams(None, "augment.kind=diffaugment,augment.policy=rotate")
    hp = load_hparams(None, "augment.kind=ada")
    assert hp.augment.p_max == 0.8 and hp.augment.pipeline == "bgc"


# ------------------------------------------------------------------ limited data
def test_digits_max_per_class_keeps_the_first_images_of_each_class():
    from tf_biggan.data.digits import load_digits_split
    from tf_biggan.data.pipeline import examples
    from tf_biggan.errors import UserError

    full_x, full_y = load_digits_split("train")
    x, y = load_digits_split("train", max_per_class=5)
    assert np.array_equal(np.bincount(y), [5] * 10)
    for c in range(10):
        np.testing.assert_array_equal(x[y == c], full_x[full_y == c][:5])
    hp = load_hparams(None, "data.max_per_class=3")
    assert sum(1 for _ in examples(hp.data, 16)) == 30
    with pytest.raises(HParamsError, match="data.max_per_class"):
        load_hparams(None, "data.max_per_class=-1")
    with pytest.raises(UserError, match="digits only"):
        examples(load_hparams(None, "data.kind=tfrecord,data.pattern=/x/*,data.max_per_class=3").data, 16)


# ------------------------------------------------------------------ DiffAugment
def test_diffaugment_translation_is_an_exact_zero_filled_shift():
    x = tf.random.uniform((16, 16, 16, 3), -1, 1, seed=12)
    out = rand_translation(x, draws(16, counter=6)).numpy()
    xs = x.numpy()
    shifts = set()
    for b in range(16):
        found = False
        for ty in range(-2, 3):
            for tx in range(-2, 3):
                ref = np.zeros_like(xs[b])
                ys, yd = (slice(0, 16 - ty), slice(ty, 16)) if ty >= 0 else (slice(-ty, 16), slice(0, 16 + ty))
                xsl, xd = (slice(0, 16 - tx), slice(tx, 16)) if tx >= 0 else (slice(-tx, 16), slice(0, 16 + tx))
                ref[yd, xd] = xs[b][ys, xsl]
                if np.array_equal(out[b], ref):
                    found = True
                    shifts.add((tx, ty))
        assert found, f"sample {b} is not an integer shift within 2 px"
    assert len(shifts) > 3


def test_diffaugment_cutout_is_gated_and_differentiable():
    x = tf.random.uniform((400, 8, 8, 3), 0.5, 1, seed=13)
    none = rand_cutout(x, draws(400), 0.0)
    assert np.array_equal(none.numpy(), x.numpy())
    out = rand_cutout(x, draws(400), 0.5).numpy()
    cut = np.any(out == 0, axis=(1, 2, 3))
    assert abs(cut.mean() - 0.5) < 0.1
    assert np.all((out == 0).sum(axis=(1, 2, 3))[cut] <= 4 * 4 * 3)  # a 4x4 square at most
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = diff_augment(x, draws(400), "color,translation,cutout", 0.5)
        loss = tf.reduce_sum(y)
    assert float(tf.reduce_max(tf.abs(tape.gradient(loss, x)))) > 0
