"""The stability toolkit's formulas against independent references (paper Section 4, Appendices E-I):
σ0 clamp and regulariser vs numpy SVD, R1 vs a hand-computed gradient, clipping vs numpy, the
hinge margin, and the collapse rule on collapse-shaped and healthy traces.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_biggan.layers.conditioning import clamp_sigma0, sigma0_penalty, top_singular_pairs
from tf_biggan.training import collapse
from tf_biggan.training.losses import hinge_d_loss
from tf_biggan.training.penalties import clip_gradients, embedding_decay, r1_penalty

DATA = os.path.join(os.path.dirname(__file__), "data")


def matrix_with_spectrum(m, n, sigmas, seed=0):
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((m, m)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.zeros((m, n))
    s[np.arange(len(sigmas)), np.arange(len(sigmas))] = sigmas
    return (u @ s @ v.T).astype(np.float32)


@pytest.mark.parametrize("shape", [(12, 7), (7, 12), (3, 3, 4, 6)])
def test_top_singular_pairs_match_numpy_svd(shape):
    m = int(np.prod(shape[:-1]))
    n = shape[-1]
    k = min(m, n)
    w = matrix_with_spectrum(m, n, np.linspace(5.0, 0.5, k), seed=1)
    sigma, u, v = top_singular_pairs(tf.constant(w), k=2, iterations=40)
    u_np, s_np, vt_np = np.linalg.svd(w)
    np.testing.assert_allclose(sigma.numpy(), s_np[:2], rtol=1e-4)
    for i in range(2):  # singular vectors up to sign
        np.testing.assert_allclose(abs(float(u[:, i].numpy() @ u_np[:, i])), 1.0, atol=1e-4)
        np.testing.assert_allclose(abs(float(v[:, i].numpy() @ vt_np[i])), 1.0, atol=1e-4)


@pytest.mark.parametrize("target,sigma_reg,clamp", [("fixed", 4.0, 4.0), ("ratio", 0.0, 1.5 * 3.0),
                                                    ("fixed", 2.5, 2.5)])
def test_clamp_sets_sigma0_and_keeps_the_other_singular_values(target, sigma_reg, clamp):
    """Eq. (4): after W - max(0, σ0 - σ_clamp) u0 v0ᵀ the old σ0 becomes σ_clamp and σ1.. are
    unchanged (numpy SVD before and after; a clamp below σ1 leaves σ1 on top)."""
    sigmas = np.array([9.0, 3.0, 2.0, 1.0, 0.4])
    w = matrix_with_spectrum(8, 5, sigmas, seed=2).reshape(2, 2, 2, 5)  # a conv kernel
    var = tf.Variable(w)
    before = np.linalg.svd(w.reshape(8, 5), compute_uv=False)
    seen = clamp_sigma0(var, target=target, sigma_reg=sigma_reg, ratio=1.5, iterations=40)
    after = np.linalg.svd(var.numpy().reshape(8, 5), compute_uv=False)
    np.testing.assert_allclose(float(seen), before[0], rtol=1e-5)
    expected = np.sort(np.concatenate([[clamp], before[1:]]))[::-1]
    np.testing.assert_allclose(after, expected, rtol=1e-4, atol=1e-5)
    # Already below the clamp: nothing changes (max(0, .)).
    again = var.numpy().copy()
    clamp_sigma0(var, target="fixed", sigma_reg=100.0, iterations=40)
    np.testing.assert_array_equal(var.numpy(), again)


@pytest.mark.parametrize("target", ["fixed", "ratio"])
def test_sigma0_regulariser_gradient_matches_numpy_derivation(target):
    """d/dW s (σ0 - t)² = 2 s (σ0 - t) u0 v0ᵀ, t = σ_reg or r·sg(σ1) (no gradient through σ1)."""
    strength, sigma_reg, ratio = 0.3, 1.0, 2.0
    ws = [matrix_with_spectrum(6, 4, [4.0, 2.0, 1.0, 0.5], seed=3),
          matrix_with_spectrum(9, 5, [3.0, 2.5, 1.0, 0.2, 0.1], seed=4).reshape(3, 3, 1, 5)]
    variables = [tf.Variable(w) for w in ws]
    with tf.GradientTape() as tape:
        penalty, largest = sigma0_penalty(variables, strength, target, sigma_reg, ratio, iterations=40)
    grads = tape.gradient(penalty, variables)
    expected_penalty = 0.0
    for w, g in zip(ws, grads):
        mat = w.reshape(-1, w.shape[-1]).astype(np.float64)
        u, s, vt = np.linalg.svd(mat)
        t = sigma_reg if target == "fixed" else ratio * s[1]
        expected_penalty += strength * (s[0] - t) ** 2
        expected = 2 * strength * (s[0] - t) * np.outer(u[:, 0], vt[0])
        np.testing.assert_allclose(g.numpy().reshape(mat.shape), expected, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(float(penalty), expected_penalty, rtol=1e-4)
    np.testing.assert_allclose(float(largest), 4.0, rtol=1e-4)


class TinyD(tf.Module):
    """D(x, y) = Σ tanh(x·a) · b + c_y: a small D whose input gradient is known in closed form."""

    def __init__(self):
        rng = np.random.default_rng(5)
        self.a = tf.Variable(rng.standard_normal((6, 3)).astype(np.float32))
        self.b = tf.Variable(rng.standard_normal((3,)).astype(np.float32))
        self.c = tf.Variable(rng.standard_normal((4,)).astype(np.float32))

    def __call__(self, inputs, training=False):
        x, y = inputs
        h = tf.tanh(tf.reshape(x, (-1, 6)) @ self.a)
        return tf.linalg.matvec(h, self.b) + tf.gather(self.c, y)


def test_r1_equals_hand_computed_gradient_norm():
    d = TinyD()
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 1, 2, 3)).astype(np.float32)
    y = np.array([0, 1, 2, 3, 1], np.int32)
    gamma = 10.0
    r1, logits = r1_penalty(d, tf.constant(x), tf.constant(y), gamma)
    a, b = d.a.numpy().astype(np.float64), d.b.numpy().astype(np.float64)
    pre = x.reshape(5, 6) @ a
    grad = ((1 - np.tanh(pre) ** 2) * b) @ a.T  # ∂D/∂x per example, by hand
    expected = gamma / 2 * np.mean(np.sum(grad ** 2, axis=1))
    np.testing.assert_allclose(float(r1), expected, rtol=1e-5)
    np.testing.assert_allclose(logits.numpy(), np.tanh(pre) @ b + d.c.numpy()[y], rtol=1e-5)
    # Global-batch scaling: the share of 5 examples in a global batch of 20 is a quarter of the mean.
    r1_share, _ = r1_penalty(d, tf.constant(x), tf.constant(y), gamma, global_batch=20)
    np.testing.assert_allclose(float(r1_share), expected * 5 / 20, rtol=1e-5)
    # R1 is differentiable w.r.t. D's weights (double backprop).
    with tf.GradientTape() as tape:
        value, _ = r1_penalty(d, tf.constant(x), tf.constant(y), gamma)
    assert all(g is not None for g in tape.gradient(value, [d.a, d.b]))


def test_clip_gradients_matches_numpy():
    rng = np.random.default_rng(7)
    grads = [rng.standard_normal((3, 4)).astype(np.float32) * 5, rng.standard_normal(6).astype(np.float32)]
    norms = [np.linalg.norm(g) for g in grads]
    per = clip_gradients([tf.constant(g) for g in grads], per_param_norm=1.0)
    for g, n, c in zip(grads, norms, per):
        np.testing.assert_allclose(c.numpy(), g * min(1.0, 1.0 / n), rtol=1e-5)
    total = np.sqrt(sum(n ** 2 for n in norms))
    glob = clip_gradients([tf.constant(g) for g in grads], global_norm=2.0)
    for g, c in zip(grads, glob):
        np.testing.assert_allclose(c.numpy(), g * 2.0 / total, rtol=1e-5)
    same = clip_gradients([tf.constant(g) for g in grads])
    np.testing.assert_array_equal(same[0].numpy(), grads[0])


def test_hinge_margin_and_embedding_decay():
    real, fake = tf.constant([0.5, 3.0, -1.0]), tf.constant([-2.5, 0.0, 1.0])
    total, r, f = hinge_d_loss(real, fake, margin=2.0)
    np.testing.assert_allclose(float(r), np.mean(np.maximum(0, 2 - np.array([0.5, 3.0, -1.0]))))
    np.testing.assert_allclose(float(f), np.mean(np.maximum(0, 2 + np.array([-2.5, 0.0, 1.0]))))
    table = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(float(embedding_decay(tf.constant(table), 1e-2, 2)), 1e-2 * 55 / 2)


# ---------------------------------------------------------------------------- collapse detection

def synthetic_trace(collapse_at=None, records=40, seed=0):
    """σ0 of two G layers growing ~1% a record with noise, D loss ~0.3, G loss ~1 (Figure 20's
    shape); from `collapse_at` on, the first layer's σ0 explodes and D's loss jumps (Section 4)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(records):
        s0 = 3.0 * 1.01 ** i * (1 + 0.03 * rng.standard_normal())
        s1 = 1.5 * (1 + 0.03 * rng.standard_normal())
        d, g = 0.3 + 0.05 * rng.standard_normal(), 1.0 + 0.2 * rng.standard_normal()
        if collapse_at is not None and i >= collapse_at:
            s0 *= 4.0 ** (i - collapse_at + 1)
            d, g = 2.5, 6.0
        out.append(collapse.Record(i * 100, {"linear/kernel": s0, "out_conv/kernel": s1}, d, g))
    return out


def test_collapse_detection_on_shaped_traces():
    event = collapse.scan(synthetic_trace(collapse_at=30), collapse.CollapseDetector())
    assert event is not None and event.step == 3000
    assert any("linear/kernel" in r for r in event.reasons)
    for seed in range(5):
        assert collapse.scan(synthetic_trace(None, seed=seed), collapse.CollapseDetector()) is None


def test_collapse_rule_criteria_and_patience():
    healthy = synthetic_trace(None, records=6)
    det = collapse.CollapseDetector(window=5, patience=2)
    for rec in healthy[:5]:
        assert det.update(rec) is None
    # D near zero while G's loss jumps: one record is noise, two in a row are a collapse.
    spike = collapse.Record(600, dict(healthy[4].g_sigma0), 0.02, 5.0)
    assert det.update(spike) is None
    assert det.update(healthy[5]) is None  # back to normal: the streak resets
    assert det.update(collapse.Record(800, dict(healthy[4].g_sigma0), 0.02, 5.0)) is None
    event = det.update(collapse.Record(900, dict(healthy[4].g_sigma0), 0.01, 6.0))
    assert event is not None and event.step == 800 and "near zero" in event.reasons[0]
    assert det.update(collapse.Record(1000, dict(healthy[4].g_sigma0), 0.01, 6.0)) is None  # reported once


def test_records_from_jsonl_reads_the_trainer_scalars():
    lines = [json.dumps({"step": 100, "tag": t, "value": v}) for t, v in
             [("losses/d_loss", 0.5), ("losses/g_loss", 1.0), ("sv/G/generator/linear/kernel/sigma0", 3.0),
              ("sv/G/generator/linear/kernel/sigma1", 2.0), ("sv/D/discriminator/linear/kernel/sigma0", 9.0)]]
    lines.append(json.dumps({"step": 50, "tag": "losses/d_loss", "value": 0.7}))  # no spectra: skipped
    (rec,) = collapse.records_from_jsonl(lines)
    assert rec.step == 100 and rec.g_sigma0 == {"generator/linear/kernel": 3.0}
    assert (rec.d_loss, rec.g_loss) == (0.5, 1.0)


def recorded(name):
    with open(os.path.join(DATA, name)) as f:
        data = json.load(f)
    return data, [collapse.Record(r["step"], r["g_sigma0"], r["d_loss"], r["g_loss"]) for r in data["records"]]


def test_collapse_detection_on_recorded_digits_traces():
    """Traces recorded by benchmarks/bench_stability.py --record_traces (the embedded default, σ0 of
    every G layer and both losses every 25 steps): the healthy run never fires; the same run with D
    frozen at step 150 (Appendix G.1: G "immediately and dramatically collapses") fires at the first
    record after the freeze."""
    _, healthy = recorded("healthy_trace.json")
    assert collapse.scan(healthy, collapse.CollapseDetector()) is None
    data, frozen = recorded("freeze_d_trace.json")
    event = collapse.scan(frozen, collapse.CollapseDetector())
    assert event is not None and event.step == data["frozen_d_from"] + 25
    assert all("D's loss jumped" in r for r in event.reasons)
