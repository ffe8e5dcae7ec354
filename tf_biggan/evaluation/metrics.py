"""FID, IS and KID from precomputed classifier outputs, in float64 numpy.

BigGAN (Brock et al., 2019) reports Inception Score and Fréchet Inception Distance
(Section 4, Table 2 and the IS-vs-FID truncation curves of Appendix D) "computed
with TF-GAN". `tensorflow-gan` no longer imports on TF 2.21, so the definitions of
TF-GAN's `classifier_metrics` are re-derived here as small pure functions over
activations and logits: the feature extractor that produces those arrays (Inception
from a local path, or the project's own classifier) lives in `tf_biggan.evaluation.features`.

Everything is computed in float64, as TF-GAN does ("use maximum precision for best
results"): FID subtracts two traces of size ~1e2-1e3 to get a number that can be ~1,
and float32 loses it.

Public:
    frechet_distance(acts_a, acts_b)                 FID (Heusel et al., 2017, arXiv:1706.08500)
    frechet_distance_from_stats(mu1, s1, mu2, s2)    the same from cached statistics
    activation_statistics(acts)                      (mu, unbiased covariance)
    inception_score(logits, splits=10)               (mean, std) over splits (Salimans et al., 2016)
    kernel_inception_distance(acts_a, acts_b)        unbiased MMD², cubic kernel (Bińkowski et al., 2018, arXiv:1801.01401)
    kernel_inception_distance_and_std(...)           the same with TF-GAN's block standard error
    classification_accuracy(logits, labels)          share of argmax(logits) == label
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import scipy.special


def _as_2d_float64(x, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{what} must be 2-D [num_examples, dims], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or infinite values")
    return x


def activation_statistics(acts) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased (N - 1) covariance of activations [N, D], as TF-GAN fits its Gaussians.

    TF-GAN's `frechet_classifier_distance_from_activations` scales the maximum-likelihood
    covariance by N / (N - 1); so do we, so that cached real statistics and on-the-fly ones
    agree with numbers computed by TF-GAN.
    """
    acts = _as_2d_float64(acts, "activations")
    if acts.shape[0] < 2:
        raise ValueError(f"need at least 2 examples for a covariance, got {acts.shape[0]}")
    mu = acts.mean(axis=0)
    centred = acts - mu
    sigma = centred.T @ centred / (acts.shape[0] - 1)
    return mu, sigma


def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root via an eigendecomposition, with round-off negatives set to 0.

    The input is a covariance (or a congruence of one), so its true eigenvalues are >= 0;
    tiny negative ones are float round-off on near-singular matrices and their square root
    is taken as 0 (TF-GAN does the same with an SVD and an epsilon threshold).
    """
    mat = 0.5 * (mat + mat.T)  # exact symmetry, so eigh's assumption holds
    w, v = np.linalg.eigh(mat)
    w = np.sqrt(np.clip(w, 0.0, None))
    return (v * w) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr((Σ1 Σ2)^½) for symmetric PSD Σ1, Σ2, via the eigenvalues of Σ1^½ Σ2 Σ1^½.

    Σ1 Σ2 is not symmetric, but it is similar to A Σ2 A with A = Σ1^½ (same eigenvalues,
    since eig(A·AΣ2) = eig(AΣ2·A)), and A Σ2 A is symmetric PSD. So the trace of the
    square root is Σ_i sqrt(λ_i(A Σ2 A)), computed with two symmetric eigendecompositions.
    This is TF-GAN's `trace_sqrt_product` argument.

    Why not `scipy.linalg.sqrtm(Σ1 Σ2)` as pytorch-fid does: sqrtm works on the non-symmetric
    product through a Schur decomposition; when the covariances are singular (more feature
    dimensions than samples, or dead ReLU features) it returns complex results or fails, and
    pytorch-fid then retries with ε·I added to both covariances, which biases the value by an
    amount that depends on ε and on the dimension. The eigenvalue route never leaves the reals,
    needs no ε, and the only clipping it does is of round-off negatives (|λ| ~ 1e-16·‖Σ‖).
    """
    a = _psd_sqrt(sigma1)
    m = a @ sigma2 @ a
    m = 0.5 * (m + m.T)
    lam = np.linalg.eigvalsh(m)
    return float(np.sum(np.sqrt(np.clip(lam, 0.0, None))))


def frechet_distance_from_stats(mu1, s1, mu2, s2) -> float:
    """Fréchet distance between N(mu1, s1) and N(mu2, s2) (Heusel et al., 2017, arXiv:1706.08500, the FID formula).

        d² = ‖mu1 − mu2‖² + Tr(s1 + s2 − 2 (s1 s2)^½)

    This is the FID of the BigGAN paper (Section 4, Table 2) when the statistics are those
    of Inception pool_3 activations. Use it with `activation_statistics` to score many
    generated sets against one cached set of real statistics.
    """
    mu1 = np.asarray(mu1, dtype=np.float64).reshape(-1)
    mu2 = np.asarray(mu2, dtype=np.float64).reshape(-1)
    s1 = np.atleast_2d(np.asarray(s1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(s2, dtype=np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(
            f"statistics do not match: mu1 {mu1.shape}, s1 {s1.shape}, mu2 {mu2.shape}, s2 {s2.shape}")
    mean_term = float(np.sum((mu1 - mu2) ** 2))
    cov_term = float(np.trace(s1) + np.trace(s2)) - 2.0 * trace_sqrt_product(s1, s2)
    fid = mean_term + cov_term
    # The distance is >= 0; a value below it is cancellation in the trace difference of
    # identical statistics (relative 1e-15), not information.
    return max(fid, 0.0)


def frechet_distance(acts_a, acts_b) -> float:
    """FID from two sets of activations [N, D] and [M, D] (TF-GAN's
    `frechet_classifier_distance_from_activations`; Heusel et al., 2017).

    Fits a Gaussian (mean, unbiased covariance) to each set and returns
    ‖m − m_w‖² + Tr(C + C_w − 2 (C C_w)^½). The estimate is biased upward for small sample
    sizes, so compare models only at equal numbers of samples (the paper uses 50k).
    Near-singular covariances (D > N, dead features) are handled by `trace_sqrt_product`.
    """
    acts_a = _as_2d_float64(acts_a, "acts_a")
    acts_b = _as_2d_float64(acts_b, "acts_b")
    if acts_a.shape[1] != acts_b.shape[1]:
        raise ValueError(f"activation sizes differ: {acts_a.shape[1]} vs {acts_b.shape[1]}")
    mu1, s1 = activation_statistics(acts_a)
    mu2, s2 = activation_statistics(acts_b)
    return frechet_distance_from_stats(mu1, s1, mu2, s2)


def _log_inception_score(log_p: np.ndarray) -> float:
    """log IS of one split: mean over x of KL(p(y|x) ‖ p(y)), with p(y) the split's marginal."""
    n = log_p.shape[0]
    # log p(y) = log mean_x p(y|x), in log space so a class whose probabilities underflow
    # in every example gives a finite log and a zero contribution instead of 0·(−inf).
    log_q = scipy.special.logsumexp(log_p, axis=0) - math.log(n)
    p = np.exp(log_p)
    kl = np.sum(p * (log_p - log_q[None, :]), axis=1)
    return float(np.mean(kl))


def inception_score(logits, splits: int = 10) -> Tuple[float, float]:
    """Inception Score exp(E_x KL(p(y|x) ‖ p(y))) (Salimans et al., 2016, Section 4), as
    (mean, standard deviation) over `splits` consecutive equal parts of the samples.

    p(y|x) = softmax(logits) (TF-GAN's `classifier_score_from_logits`, in float64 with
    log_softmax for stability); p(y) is the mean of p(y|x) within each split, and each split's
    score is exp(mean KL). The 10-split mean and (population, ddof=0) std are the numbers the
    original improved-GAN code and the BigGAN paper (Table 2) report; `splits=1` is TF-GAN's
    single score. Split i holds samples [i·N//splits, (i+1)·N//splits), so N need not divide.

    Bounds: 1 (every p(y|x) equal to p(y), e.g. uniform) ≤ IS ≤ number of classes (confident,
    evenly spread predictions).
    """
    logits = _as_2d_float64(logits, "logits")
    n = logits.shape[0]
    if splits < 1 or n < splits:
        raise ValueError(f"need 1 <= splits <= num_examples, got splits={splits}, num_examples={n}")
    log_p = scipy.special.log_softmax(logits, axis=1)
    scores = []
    for i in range(splits):
        part = log_p[i * n // splits:(i + 1) * n // splits]
        scores.append(math.exp(_log_inception_score(part)))
    return float(np.mean(scores)), float(np.std(scores))


def _kid_block_sizes(n: int, n_blocks: int) -> np.ndarray:
    """Split n into n_blocks contiguous sizes differing by at most one (TF-GAN's layout:
    the smaller blocks first)."""
    base = n // n_blocks
    n_plus_one = n - base * n_blocks
    sizes = np.array([base] * (n_blocks - n_plus_one) + [base + 1] * n_plus_one, dtype=np.int64)
    return np.concatenate([[0], np.cumsum(sizes)])


def kernel_inception_distance_and_std(acts_a, acts_b, max_block_size: int = 1024) -> Tuple[float, float]:
    """KID: unbiased MMD² with the kernel k(x, y) = (xᵀy / d + 1)³ ("Demystifying MMD GANs",
    Bińkowski et al., 2018, arXiv:1801.01401), with TF-GAN's block estimator and standard error.

    The samples are cut into n_blocks = ceil(max(N, M) / max_block_size) contiguous blocks of
    near-equal size (block estimator of Zaremba et al., 2013, as TF-GAN does); in each block
    the unbiased estimate is
        mean_{i≠j} k(a_i, a_j) + mean_{i≠j} k(b_i, b_j) − 2 mean_{i,j} k(a_i, b_j)
    and KID is the mean over blocks. The second value is the standard error of that mean,
    sqrt(var_blocks(ddof=1) / n_blocks), NaN with a single block. The blocks assume both sets
    are in random order (not sorted by class).
    """
    a = _as_2d_float64(acts_a, "acts_a")
    b = _as_2d_float64(acts_b, "acts_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"activation sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if max_block_size < 2:
        raise ValueError(f"max_block_size must be >= 2, got {max_block_size}")
    n_a, n_b = a.shape[0], b.shape[0]
    n_blocks = int(math.ceil(max(n_a, n_b) / max_block_size))
    if min(n_a, n_b) < 2 * n_blocks:
        raise ValueError(
            f"each of the {n_blocks} KID blocks needs >= 2 examples per set; got {n_a} and {n_b}")
    ia = _kid_block_sizes(n_a, n_blocks)
    ib = _kid_block_sizes(n_b, n_blocks)
    dim = float(a.shape[1])

    def kernel(x, y):
        return (x @ y.T / dim + 1.0) ** 3

    ests = np.empty(n_blocks)
    for i in range(n_blocks):
        x = a[ia[i]:ia[i + 1]]
        y = b[ib[i]:ib[i + 1]]
        m, n = float(x.shape[0]), float(y.shape[0])
        k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
        # Dropping the diagonal (k(x_i, x_i)) is what makes the estimate unbiased.
        ests[i] = ((k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
                   + (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
                   - 2.0 * k_xy.mean())
    mean = float(ests.mean())
    if n_blocks <= 1:
        return mean, float("nan")
    return mean, float(math.sqrt(ests.var(ddof=1) / n_blocks))


def kernel_inception_distance(acts_a, acts_b, max_block_size: int = 1024) -> float:
    """KID (Bińkowski et al., 2018): see `kernel_inception_distance_and_std`. Unbiased, so it
    can be slightly negative when the two distributions are equal."""
    return kernel_inception_distance_and_std(acts_a, acts_b, max_block_size)[0]


def classification_accuracy(logits, labels) -> float:
    """Share of examples whose argmax logit is the label: how often the extractor's
    classifier recognises the class a conditional G was asked for (the reports'
    `class_accuracy`; the paper's Section 4 class-leakage observations made measurable)."""
    logits = np.asarray(logits)
    labels = np.asarray(labels).reshape(-1)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits {logits.shape} and labels {labels.shape} do not match")
    return float(np.mean(np.argmax(logits, axis=1) == labels))
