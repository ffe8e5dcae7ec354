"""FID, IS and KID (tf_biggan.evaluation.metrics) against closed forms and independent computations."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.special

from tf_biggan.evaluation import metrics


def _random_spd(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def _closed_form_fid(mu1, s1, mu2, s2):
    # Well-conditioned SPD matrices: scipy's general sqrtm of the product is exact here.
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_fid_two_gaussian_samples_match_closed_form():
    rng = np.random.default_rng(0)
    d, n = 4, 50_000
    mu1, mu2 = np.zeros(d), np.array([0.5, -0.3, 0.0, 0.2])
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d, scale=2.0)
    expected = _closed_form_fid(mu1, s1, mu2, s2)
    a = rng.multivariate_normal(mu1, s1, size=n)
    b = rng.multivariate_normal(mu2, s2, size=n)
    got = metrics.frechet_distance(a, b)
    # Sampling error at n = 50k and d = 4 is ~1e-2; the value itself is ~2.
    assert expected > 1.0
    assert got == pytest.approx(expected, abs=0.05)


def test_fid_from_stats_equals_closed_form_exactly():
    rng = np.random.default_rng(1)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    assert metrics.frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(
        _closed_form_fid(mu1, s1, mu2, s2), rel=1e-9)


def test_fid_of_identical_sets_is_zero():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 32)) @ rng.normal(size=(32, 32))
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # Also when D > N (rank-deficient covariance).
    b = rng.normal(size=(20, 64))
    assert metrics.frechet_distance(b, b) == pytest.approx(0.0, abs=1e-8)


def test_fid_matches_independent_scipy_computation():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(500, 64)) * rng.uniform(0.5, 2.0, size=64)
    b = rng.normal(size=(400, 64)) + 0.3
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)  # unbiased, as TF-GAN
    expected = _closed_form_fid(mu1, s1, mu2, s2)
    assert metrics.frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_fid_near_singular_covariances_stay_finite_and_accurate():
    # More dimensions than samples: both covariances have rank <= n - 1 < d.
    rng = np.random.default_rng(4)
    n1, n2, d = 40, 50, 256
    a = rng.normal(size=(n1, d))
    b = rng.normal(size=(n2, d)) * 1.5 + 0.1
    got = metrics.frechet_distance(a, b)
    # Exact reference without any d x d square root: with S1 = AᵀA, S2 = BᵀB
    # (A = centred a / sqrt(n1 - 1)), the non-zero eigenvalues of S1 S2 are the squared
    # singular values of A Bᵀ, so Tr((S1 S2)^½) is the nuclear norm of the small A Bᵀ.
    ac = (a - a.mean(0)) / math.sqrt(n1 - 1)
    bc = (b - b.mean(0)) / math.sqrt(n2 - 1)
    tr_sqrt = np.linalg.svd(ac @ bc.T, compute_uv=False).sum()
    expected = (np.sum((a.mean(0) - b.mean(0)) ** 2) + np.sum(ac * ac) + np.sum(bc * bc)
                - 2 * tr_sqrt)
    assert np.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-7)


def test_fid_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        metrics.frechet_distance(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError):
        metrics.frechet_distance(np.zeros(10), np.zeros(10))


def test_inception_score_uniform_is_one():
    mean, std = metrics.inception_score(np.zeros((100, 10)), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_inception_score_confident_distinct_classes_is_num_classes():
    k = 7
    logits = np.tile(200.0 * np.eye(k), (10, 1))  # each split holds every class once
    mean, std = metrics.inception_score(logits, splits=10)
    assert mean == pytest.approx(k, rel=1e-9)
    assert std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_matches_formula_by_hand():
    rng = np.random.default_rng(5)
    n, k, splits = 103, 6, 4  # n not divisible by splits
    logits = rng.normal(scale=3.0, size=(n, k))
    scores = []
    for i in range(splits):
        part = logits[i * n // splits:(i + 1) * n // splits]
        p = np.exp(part) / np.exp(part).sum(1, keepdims=True)
        py = p.mean(0)
        kl = [sum(p[j, c] * math.log(p[j, c] / py[c]) for c in range(k)) for j in range(len(p))]
        scores.append(math.exp(sum(kl) / len(kl)))
    mean, std = metrics.inception_score(logits, splits=splits)
    assert mean == pytest.approx(np.mean(scores), rel=1e-10)
    assert std == pytest.approx(np.std(scores), rel=1e-8)
    # One split is TF-GAN's classifier_score_from_logits.
    one, one_std = metrics.inception_score(logits, splits=1)
    assert one_std == 0.0 and 1.0 < one < k


def test_inception_score_extreme_logits_stay_finite():
    logits = np.zeros((20, 5))
    logits[:, 0] = 5000.0  # softmax underflows to exact 0 for the other classes
    mean, _ = metrics.inception_score(logits, splits=2)
    assert mean == pytest.approx(1.0, abs=1e-12)


def test_inception_score_rejects_too_few_examples():
    with pytest.raises(ValueError):
        metrics.inception_score(np.zeros((5, 3)), splits=10)


def _naive_unbiased_mmd2(x, y):
    d = x.shape[1]
    k = lambda u, v: (np.dot(u, v) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kyy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return kxx + kyy - 2 * kxy


def test_kid_single_block_matches_naive_unbiased_mmd():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(30, 5)), rng.normal(size=(25, 5)) + 0.5
    kid, std = metrics.kernel_inception_distance_and_std(x, y)
    assert kid == pytest.approx(_naive_unbiased_mmd2(x, y), rel=1e-10)
    assert math.isnan(std)  # one block: no standard error


def test_kid_blocks_are_mean_of_per_block_estimates():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(10, 3)), rng.normal(size=(9, 3))
    # ceil(10 / 4) = 3 blocks; x splits 3, 3, 4 and y splits 3, 3, 3 (smaller blocks first).
    blocks = [(x[0:3], y[0:3]), (x[3:6], y[3:6]), (x[6:10], y[6:9])]
    ests = [_naive_unbiased_mmd2(a, b) for a, b in blocks]
    kid, std = metrics.kernel_inception_distance_and_std(x, y, max_block_size=4)
    assert kid == pytest.approx(np.mean(ests), rel=1e-10)
    assert std == pytest.approx(np.std(ests, ddof=1) / math.sqrt(3), rel=1e-10)


def test_kid_is_about_zero_for_same_distribution_and_positive_otherwise():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(2000, 16)), rng.normal(size=(2000, 16))
    kid, std = metrics.kernel_inception_distance_and_std(a, b, max_block_size=500)
    assert abs(kid) < 4 * std + 1e-3
    c = rng.normal(size=(2000, 16)) + 0.3
    kid_shift, std_shift = metrics.kernel_inception_distance_and_std(a, c, max_block_size=500)
    assert kid_shift > 10 * std_shift and kid_shift > 10 * abs(kid)


def test_classification_accuracy():
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, -1.0]])
    assert metrics.classification_accuracy(logits, [0, 1, 1]) == pytest.approx(2 / 3)
