"""Self-checks of the numpy reference forward pass of the official TF-Hub BigGAN generators
(tests/hub_reference_forward.py): its primitives against TensorFlow ops and closed forms, the deep modules'
truncation-indexed statistics readings, and whole forward passes on random-weight official-layout modules
(tests/official_hub_layout.py) at a reduced width."""

import numpy as np
import pytest
import tensorflow as tf

import hub_reference_forward as ref
import official_hub_layout as layout

RNG = np.random.default_rng


@pytest.mark.parametrize("k", [(3, 3), (1, 1), (2, 2), (3, 1)])
def test_conv2d_same_matches_tf(k):
    rng = RNG(0)
    x = rng.standard_normal((2, 6, 5, 3))
    w = rng.standard_normal(k + (3, 4))
    b = rng.standard_normal(4)
    expected = tf.nn.conv2d(x, w, strides=1, padding="SAME").numpy() + b
    np.testing.assert_allclose(ref.conv2d(x, w, b), expected, rtol=1e-12, atol=1e-12)


def test_pool_and_upsample_match_tf():
    x = RNG(1).standard_normal((2, 6, 4, 3)).astype(np.float32)  # tf.image.resize works in float32
    np.testing.assert_array_equal(ref.maxpool2x2(x), tf.nn.max_pool2d(x, 2, 2, "VALID").numpy())
    up = tf.image.resize(x, (12, 8), method="nearest").numpy()
    np.testing.assert_array_equal(ref.upsample2x(x), up)


def test_attention_matches_direct_formula():
    """Position by position: o_p = sum_q softmax_q(theta_p . phi_q) g_q over the 2x2-max-pooled
    positions q, out = x + gamma * o W_o."""
    rng = RNG(2)
    b, h, w, c = 2, 4, 6, 16
    x = rng.standard_normal((b, h, w, c))
    wt, wp = rng.standard_normal((1, 1, c, c // 8)), rng.standard_normal((1, 1, c, c // 8))
    wg, wo = rng.standard_normal((1, 1, c, c // 2)), rng.standard_normal((1, 1, c // 2, c))
    gamma = np.array([0.7])
    out = ref.attention(x, wt, wp, wg, wo, gamma)
    expected = np.empty_like(x)
    for n in range(b):
        pooled = [(i, j) for i in range(0, h, 2) for j in range(0, w, 2)]
        phi = [np.max([x[n, i + di, j + dj] @ wp[0, 0] for di in (0, 1) for dj in (0, 1)], axis=0)
               for i, j in pooled]
        g = [np.max([x[n, i + di, j + dj] @ wg[0, 0] for di in (0, 1) for dj in (0, 1)], axis=0)
             for i, j in pooled]
        for i in range(h):
            for j in range(w):
                theta = x[n, i, j] @ wt[0, 0]
                logits = np.array([theta @ f for f in phi])
                weights = np.exp(logits - logits.max())
                weights /= weights.sum()
                o = sum(wq * gq for wq, gq in zip(weights, g))
                expected[n, i, j] = x[n, i, j] + gamma[0] * (o @ wo[0, 0])
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(3, 3, 8, 5), (12, 20)])
def test_spectral_sigma_closed_forms(shape):
    """From the exact top singular vector: 'max' gives sigma itself; 'rsqrt_add' gives
    a^2 / sqrt(a^2 + eps) with a = sigma^2 / sqrt(sigma^2 + eps) (both normalisations shrink by eps)."""
    w = RNG(3).standard_normal(shape) * 0.05  # sigma < 1: the eps forms differ visibly
    _, s, vt = np.linalg.svd(w.reshape(-1, shape[-1]))
    u0 = vt[:1]
    sigma = s[0]
    assert ref.spectral_sigma(w, u0, "max") == pytest.approx(sigma, rel=1e-12)
    a = sigma ** 2 / np.sqrt(sigma ** 2 + ref.SN_EPS)
    assert ref.spectral_sigma(w, u0, "rsqrt_add") == pytest.approx(a ** 2 / np.sqrt(a ** 2 + ref.SN_EPS), rel=1e-12)
    assert abs(ref.spectral_sigma(w, u0, "rsqrt_add") / sigma - 1) > 1e-5


def _table():
    rng = RNG(4)
    return rng.standard_normal((ref.NUM_STATS, 3)) + np.arange(ref.NUM_STATS)[:, None]


def test_continuous_interpolation_hits_rows_and_is_linear():
    table = _table()
    for k in range(ref.NUM_STATS):
        # t*50 in float32 (the module's dtype) is within an ulp of k: the row, to float32 rounding.
        np.testing.assert_allclose(ref.interpolate_stats(table, k / 50), table[k], rtol=0, atol=1e-5)
    np.testing.assert_allclose(ref.interpolate_stats(table, 0.314), 0.3 * table[15] + 0.7 * table[16], atol=1e-5)
    np.testing.assert_array_equal(ref.interpolate_stats(table, 1.0), table[50])


def test_hf_reading_agrees_only_where_the_readings_coincide():
    table = _table()
    for t, row in ((0.2, 10), (0.5, 25), (1.0, 50)):  # exact grid points in both readings
        np.testing.assert_array_equal(ref.hf_interpolation(table, t), table[row])
        np.testing.assert_array_equal(ref.interpolate_stats(table, t), table[row])
    # Off the grid the HF weights are swapped: at 0.314 it gives 0.7 S15 + 0.3 S16 (the midpoint 0.31
    # would agree, both weights being 0.5).
    np.testing.assert_allclose(ref.hf_interpolation(table, 0.314), 0.7 * table[15] + 0.3 * table[16], atol=1e-12)
    assert np.abs(ref.hf_interpolation(table, 0.314) - ref.interpolate_stats(table, 0.314)).max() > 0.1
    np.testing.assert_allclose(ref.hf_interpolation(table, 0.31), ref.interpolate_stats(table, 0.31), atol=1e-5)
    # float64 rounding of t / 0.02: 0.14 reads truncation 0.16's row, 0.58 reads 0.56's.
    np.testing.assert_allclose(ref.hf_interpolation(table, 0.14), table[8], atol=1e-12)
    np.testing.assert_allclose(ref.hf_interpolation(table, 0.58), table[28], atol=1e-12)
    np.testing.assert_allclose(ref.interpolate_stats(table, 0.14), table[7], atol=1e-5)


CH = 4
KINDS = {"biggan-128/2": "biggan", "biggan-deep-128/1": "biggan_deep"}


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    out = {}
    for kind in KINDS:
        path = str(tmp_path_factory.mktemp("hub") / kind.replace("/", "_"))
        out[kind] = layout.write_official_module(kind, path, ch=CH, seed=5)
    return out


def _inputs(module, classes, num_classes=1000, seed=6):
    rng = RNG(seed)
    z = 0.5 * np.clip(rng.standard_normal((len(classes), module["dim_z"])), -2, 2)
    return z, np.eye(num_classes)[classes]


def _forward(module, kind, z, y, truncation, **kw):
    return ref.module_forward(module["values"], KINDS[kind], z, y, truncation, module["stacks"] or None, **kw)


@pytest.mark.parametrize("kind", list(KINDS))
def test_module_forward_on_official_layout(modules, kind):
    m = modules[kind]
    z, y = _inputs(m, [3, 7])
    img = _forward(m, kind, z, y, 0.5)
    assert img.shape == (2, 128, 128, 3)
    assert np.all(np.isfinite(img)) and np.abs(img).max() <= 1.0 and img.std() > 1e-2
    assert np.abs(img[0] - img[1]).max() > 1e-3  # z and the class reach the output

    # The class embedding is y @ linear/w: a 10-class module holding the first 10 rows gives the same images.
    ten = dict(m["values"])
    name = next(n for n in ten if n.startswith("linear/w"))
    ten[name] = ten[name][:10]
    z10, y10 = _inputs(m, [3, 7], num_classes=10)
    np.testing.assert_allclose(ref.module_forward(ten, KINDS[kind], z10, y10, 0.5, m["stacks"] or None), img,
                               rtol=0, atol=1e-12)

    # hub.Module's 'module/' scope is read as the file's names; raw twins of EMA variables are not read.
    prefixed = {"module/" + n: v for n, v in m["values"].items()}
    for n, v in m["values"].items():
        if "/ema_" in n:
            prefixed["module/" + n.split("/ema_")[0]] = 1.5 * v
    np.testing.assert_array_equal(ref.module_forward(prefixed, KINDS[kind], z, y, 0.5, m["stacks"] or None), img)

    # The fixture's u0 is each kernel's converged singular vector with sigma ~30: both SN normalisations agree.
    np.testing.assert_allclose(_forward(m, kind, z, y, 0.5, sn_normalize="max"), img, rtol=0, atol=1e-6)
    np.testing.assert_allclose(_forward(m, kind, z, y, 0.5, dtype=np.float32), img, rtol=0, atol=1e-5)


def test_truncation_selects_statistics_only_in_deep_modules(modules):
    v2, deep = modules["biggan-128/2"], modules["biggan-deep-128/1"]
    z, y = _inputs(v2, [1])
    np.testing.assert_array_equal(_forward(v2, "biggan-128/2", z, y, 0.3), _forward(v2, "biggan-128/2", z, y, 1.0))
    z, y = _inputs(deep, [1])
    at = {t: _forward(deep, "biggan-deep-128/1", z, y, t) for t in (0.5, 0.314)}
    assert np.abs(at[0.5] - at[0.314]).max() > 1e-3
    np.testing.assert_array_equal(_forward(deep, "biggan-deep-128/1", z, y, 0.5, stats_reading="hf"), at[0.5])
    assert np.abs(_forward(deep, "biggan-deep-128/1", z, y, 0.314, stats_reading="hf") - at[0.314]).max() > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("kind", layout.KINDS)
def test_module_forward_all_kinds(tmp_path, kind):
    """Every official kind at a reduced width: the resolution follows from the GBlock count, the
    attention layer and the widths from the kernels."""
    m = layout.write_official_module(kind, str(tmp_path / "m"), ch=CH, seed=7)
    z, y = _inputs(m, [0, 999])
    family = "biggan_deep" if m["stacks"] else "biggan"
    img = ref.module_forward(m["values"], family, z, y, 0.4, m["stacks"] or None)
    assert img.shape == (2, m["resolution"], m["resolution"], 3)
    assert np.all(np.isfinite(img)) and np.abs(img).max() <= 1.0 and img.std() > 1e-2
