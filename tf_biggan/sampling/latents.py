"""Latent sampling: the truncation trick (Section 3.1) and the latent spaces of Appendix E.

BigGAN (Brock et al., 2019) trains with z ~ N(0, I) and, at sampling time, draws z from a
*truncated* normal: "values which fall outside a range are resampled to fall inside that
range" (Section 3.1, the Truncation Trick). `truncated_z` does exactly that with stateless
TensorFlow RNG, so it is deterministic for a seed, runs inside `tf.function`, on TPU (which
ignores op-level seeds), and accepts a tensor threshold (sweeps, exported modules).

Classification Accuracy Score (Ravuri & Vinyals 2019, Appendix A.1 footnote 5) states its
truncation τ differently: "dimensions of the noise vector z whose values are outside the range
of -2τ to 2τ are resampled", i.e. the same resampling with the bound 2τ (`cas_truncated_z`).

The official TF-Hub notebook instead draws from a truncated normal on [-2, 2] and multiplies
it by `truncation` (tensorflow/hub#214): a *different* distribution from both (its support is
[-2t, 2t] like CAS's, but its shape does not change with t). It is here as
`hub_notebook_truncated_z`, named so nobody mistakes it for either paper's.

`convention_z` picks one of the three by name (LATENT_CONVENTIONS); `z_bound` gives the support
each puts z in. A truncation <= 0 means untruncated N(0, I) in the two resampling conventions; the
notebook's has no untruncated member (t = 0 makes z all zeros, every sample of a class the same), so
`check_truncation` refuses it there, and every mode that takes a truncation checks with it.

Appendix E ("Choosing latent spaces") lists the priors the authors tried as drop-in
replacements for N(0, I); each is a named stateless function below and `sample_latents(name,
shape, seed, **params)` dispatches on the name (for a configuration key).

Seeds: a Python int, or a shape-[2] integer tensor (the form stateless ops take; use it to
give every training step or TPU core its own stream, e.g. with
`tf.random.experimental.stateless_fold_in`).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Callable, Dict, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tf_biggan.errors import UserError

Seed = Union[int, Sequence[int], tf.Tensor, np.ndarray]
Shape = Union[Sequence[int], tf.Tensor]


def _seed_pair(seed: Seed) -> tf.Tensor:
    """A stateless-RNG seed of shape [2] (int64) from an int or an existing pair."""
    if isinstance(seed, (int, np.integer)):
        return tf.constant([int(seed), 0], dtype=tf.int64)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank == 0:
        return tf.stack([seed, tf.zeros_like(seed)])
    return tf.reshape(seed, [2])


def _is_untruncated(threshold) -> bool:
    """A Python threshold of None or <= 0 means 'no truncation' (the sweep's 0 entry)."""
    return threshold is None or (isinstance(threshold, (int, float, np.number)) and threshold <= 0)


# --------------------------------------------------------------------------------------------
# The truncation trick (Section 3.1).


def truncated_z(shape: Shape, threshold, seed: Seed, dtype=tf.float32,
                method: str = "resample") -> tf.Tensor:
    """z ~ N(0, I) with every entry |z| > threshold resampled until inside (Section 3.1).

    Args:
      shape: output shape, e.g. [batch, dim_z].
      threshold: the truncation threshold (Figure 2(a) uses 2, 1, 0.5, 0.04). None or <= 0
        means untruncated N(0, I). May be a scalar tensor; a tensor <= 0 also means
        untruncated.
      seed: int or shape-[2] integer tensor; the same seed gives the same z, eagerly or in a
        `tf.function`.
      method: "resample" (default) redraws only the out-of-range entries, round after round,
        from fresh stateless streams until none remain: the paper's procedure, taken
        literally. Each entry ends up distributed as N(0, 1) conditioned on |z| <= threshold.
        The expected number of rounds grows like log(size) / P(|z| <= t), so for very small
        thresholds (t = 0.01 accepts 0.8% per round) "inverse_cdf" draws the *same*
        distribution in one draw with `tf.random.stateless_parameterized_truncated_normal`.

    Returns:
      A tensor of `shape` and `dtype` with every entry in [-threshold, threshold].
    """
    seed = _seed_pair(seed)
    if _is_untruncated(threshold):
        return tf.random.stateless_normal(shape, seed=seed, dtype=dtype)
    t = tf.cast(threshold, dtype)
    if method == "inverse_cdf":
        def draw_truncated():
            return tf.random.stateless_parameterized_truncated_normal(
                shape, seed=seed, means=0.0, stddevs=1.0, minvals=-t, maxvals=t)

        if isinstance(threshold, (int, float, np.number)):
            return tf.cast(draw_truncated(), dtype)
        # A tensor threshold <= 0 means untruncated; the op itself rejects infinite bounds.
        return tf.cond(t > 0, lambda: tf.cast(draw_truncated(), dtype),
                       lambda: tf.random.stateless_normal(shape, seed=seed, dtype=dtype))
    if method != "resample":
        raise ValueError(f"method must be 'resample' or 'inverse_cdf', got {method!r}")
    z0 = tf.random.stateless_normal(shape, seed=seed, dtype=dtype)
    z = _resample_outside(z0, t, seed)
    # The shared graph function (reduce_retracing) may return an unknown batch size once it has
    # seen several shapes; restate what is known so callers' graphs (and their kernels, hence
    # their last bits) do not depend on what ran before.
    z.set_shape(z0.shape)
    return z


@tf.function(reduce_retracing=True, autograph=False)
def _resample_outside(z0, t, seed):
    """Redraw the entries of z0 with |z| > t (t > 0) until none remain (Section 3.1).

    A graph function so that eager callers do not pay Python overhead per round (a small
    threshold needs hundreds of rounds); inside another tf.function it is simply inlined.
    """

    def outside(z):
        return tf.logical_and(t > 0, tf.abs(z) > t)

    def keep_going(i, z):
        return tf.reduce_any(outside(z))

    def redraw(i, z):
        # A fresh stream per round: fold the round number into the seed, so the result is a
        # pure function of (seed, shape, threshold) and rounds never reuse numbers.
        fresh = tf.random.stateless_normal(
            tf.shape(z), seed=tf.random.experimental.stateless_fold_in(seed, i), dtype=z.dtype)
        return i + 1, tf.where(outside(z), fresh, z)

    _, z = tf.while_loop(keep_going, redraw, (tf.constant(1, tf.int64), z0))
    return z


def truncated_z_np(shape: Sequence[int], threshold: Optional[float], seed: int) -> np.ndarray:
    """NumPy twin of `truncated_z` (Section 3.1): same distribution, not the same numbers.

    Useful outside TensorFlow (scripts, plots). Draws N(0, 1) and redraws entries with
    |z| > threshold until none remain; threshold None or <= 0 means untruncated.
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(shape)
    if _is_untruncated(threshold):
        return z
    out = np.abs(z) > threshold
    while out.any():
        z[out] = rng.standard_normal(int(out.sum()))
        out = np.abs(z) > threshold
    return z


def hub_notebook_truncated_z(shape: Shape, truncation, seed: Seed, dtype=tf.float32) -> tf.Tensor:
    """The TF-Hub BigGAN notebook's sampler: truncation · TruncNormal(-2, 2), stateless.

    NOT the paper's truncation trick (Section 3.1): it samples a standard normal truncated
    to [-2, 2] and scales it by `truncation`, so values lie in [-2·truncation, 2·truncation]
    and the shape of the distribution never changes (tensorflow/hub#214). Nor is it CAS's
    (`cas_truncated_z` resamples outside the same [-2τ, 2τ]; the two agree only near τ = 1).
    Provided because the official modules were demonstrated with it; pair it with the module's
    `truncation` input as the notebook does.
    """
    base = tf.random.stateless_parameterized_truncated_normal(
        shape, seed=_seed_pair(seed), means=0.0, stddevs=1.0, minvals=-2.0, maxvals=2.0)
    return tf.cast(truncation, dtype) * tf.cast(base, dtype)


def cas_truncated_z(shape: Shape, truncation, seed: Seed, dtype=tf.float32) -> tf.Tensor:
    """CAS's truncation (Ravuri & Vinyals 2019, A.1 footnote 5): z ~ N(0, I) with every entry
    outside [-2τ, 2τ] resampled, i.e. `truncated_z` at the bound 2τ.

    Each entry is N(0, 1) conditioned on |z| <= 2τ (std at τ = 0.2 / 1.0: 0.23 / 0.88, where
    BigGAN's threshold τ gives 0.115 / 0.54). τ None or <= 0 (also as a tensor): untruncated.
    """
    if _is_untruncated(truncation):
        return truncated_z(shape, None, seed, dtype)
    return truncated_z(shape, 2.0 * tf.cast(truncation, dtype) if tf.is_tensor(truncation) else 2.0 * truncation,
                       seed, dtype)


# name -> (sampler, support bound per unit of truncation: z lies in [-k·τ, k·τ]).
_CONVENTIONS = {
    "paper_resample": (truncated_z, 1.0),  # BigGAN Section 3.1: resampled outside [-τ, τ]
    "cas_resample": (cas_truncated_z, 2.0),  # CAS A.1 footnote 5: resampled outside [-2τ, 2τ]
    "hub_notebook": (hub_notebook_truncated_z, 2.0),  # τ · TruncNormal(-2, 2), tensorflow/hub#214
}
LATENT_CONVENTIONS = tuple(_CONVENTIONS)


def check_convention(convention: str, flag: str = "latent_convention") -> None:
    if convention not in _CONVENTIONS:
        raise UserError(f"{flag}={convention!r}: use one of {', '.join(LATENT_CONVENTIONS)} (paper_resample: "
                        f"BigGAN's threshold; cas_resample: CAS's τ, z resampled outside ±2τ; hub_notebook: "
                        f"τ · truncnorm(-2, 2))")


def check_truncation(truncation: float, convention: str, flag: str = "--truncation") -> float:
    """`truncation` as a float, or a one-line UserError naming `flag`: it must be >= 0 (0 = untruncated
    N(0, I) in the resampling conventions), and > 0 under `hub_notebook`, where z = t · truncnorm(-2, 2)
    has no untruncated member and t = 0 makes every z all zeros (every sample of a class the same)."""
    check_convention(convention)
    t = float(truncation)
    if t < 0:
        raise UserError(f"{flag}={t:g}: must be >= 0 (0 = untruncated N(0, I))")
    if convention == "hub_notebook" and t <= 0:
        raise UserError(f"{flag}={t:g} with eval.latent_convention=hub_notebook: z = t · truncnorm(-2, 2) is all "
                        "zeros at t = 0; pass a truncation in (0, 1] (an imported run's default, eval.truncation, is 1.0)")
    return t


def z_bound(truncation: float, convention: str = "paper_resample") -> Optional[float]:
    """The bound b of the support [-b, b] z has at `truncation` in `convention`; None = untruncated
    (a truncation <= 0 in the resampling conventions)."""
    check_convention(convention)
    if _is_untruncated(truncation):
        return None
    return _CONVENTIONS[convention][1] * float(truncation)


def convention_z(shape: Shape, truncation, seed: Seed, convention: str = "paper_resample") -> tf.Tensor:
    """z in one of the named truncation conventions: `paper_resample` (`truncated_z`, BigGAN
    Section 3.1), `cas_resample` (`cas_truncated_z`, CAS A.1 footnote 5) or `hub_notebook`
    (`hub_notebook_truncated_z`). A truncation <= 0 is untruncated in the first two; a Python one
    <= 0 in `hub_notebook` is refused (`check_truncation`: z would be all zeros)."""
    check_convention(convention)
    if convention == "hub_notebook" and isinstance(truncation, (int, float, np.number)):
        check_truncation(truncation, convention, "truncation")
    return _CONVENTIONS[convention][0](shape, truncation, seed)


# --------------------------------------------------------------------------------------------
# Appendix E: latent distributions. Each takes (shape, seed, dtype) plus its own parameters.


def normal(shape: Shape, seed: Seed, dtype=tf.float32) -> tf.Tensor:
    """N(0, I): the default prior, used for the paper's main results (Appendix E)."""
    return tf.random.stateless_normal(shape, seed=_seed_pair(seed), dtype=dtype)


def uniform(shape: Shape, seed: Seed, dtype=tf.float32) -> tf.Tensor:
    """U[-1, 1]: the other standard choice; "performs similarly to N(0, I)" (Appendix E)."""
    return tf.random.stateless_uniform(shape, seed=_seed_pair(seed), minval=-1.0, maxval=1.0, dtype=dtype)


def _bernoulli01(shape, seed, p, dtype):
    u = tf.random.stateless_uniform(shape, seed=seed, dtype=tf.float32)
    return tf.cast(u < p, dtype)


def bernoulli(shape: Shape, seed: Seed, dtype=tf.float32, p: float = 0.5) -> tf.Tensor:
    """Bernoulli {0, 1} (Appendix E): a discrete prior; +8% IS and 60% fewer iterations than
    N(0, I) in the paper's SA-GAN baseline. The paper gives no probability; p = 0.5 here."""
    return _bernoulli01(shape, _seed_pair(seed), p, dtype)


def censored_normal(shape: Shape, seed: Seed, dtype=tf.float32) -> tf.Tensor:
    """Censored Normal max(N(0, I), 0) (Appendix E): sparse yet continuous; +15-20% IS."""
    return tf.nn.relu(normal(shape, seed, dtype))


def bernoulli_symmetric(shape: Shape, seed: Seed, dtype=tf.float32, p: float = 0.5) -> tf.Tensor:
    """Bernoulli {-1, 1} (Appendix E): discrete but not sparse; P(+1) = p (0.5 assumed)."""
    return 2.0 * _bernoulli01(shape, _seed_pair(seed), p, dtype) - 1.0


def categorical(shape: Shape, seed: Seed, dtype=tf.float32) -> tf.Tensor:
    """Independent Categorical in {-1, 0, 1} with equal probability (Appendix E)."""
    k = tf.random.stateless_uniform(shape, seed=_seed_pair(seed), minval=0, maxval=3, dtype=tf.int32)
    return tf.cast(k - 1, dtype)


def normal_times_bernoulli(shape: Shape, seed: Seed, dtype=tf.float32, p: float = 0.5) -> tf.Tensor:
    """N(0, I) multiplied elementwise by Bernoulli {0, 1} (Appendix E): continuous, sparse,
    with a peak at zero, not constrained positive. P(kept) = p (the paper gives none; 0.5)."""
    s = tf.random.experimental.stateless_split(_seed_pair(seed), num=2)
    return tf.random.stateless_normal(shape, seed=s[0], dtype=dtype) * _bernoulli01(shape, s[1], p, dtype)


def normal_bernoulli_concat(shape: Shape, seed: Seed, dtype=tf.float32, p: float = 0.5) -> tf.Tensor:
    """N(0, I) and Bernoulli {0, 1} concatenated, "each taking half of the latent dimensions"
    (Appendix E, after InfoGAN): the first floor(d/2) entries of the last axis are normal,
    the remaining ceil(d/2) Bernoulli (p = 0.5 assumed)."""
    shape = [int(d) for d in shape]
    d = shape[-1]
    s = tf.random.experimental.stateless_split(_seed_pair(seed), num=2)
    cont = tf.random.stateless_normal(shape[:-1] + [d // 2], seed=s[0], dtype=dtype)
    disc = _bernoulli01(shape[:-1] + [d - d // 2], s[1], p, dtype)
    return tf.concat([cont, disc], axis=-1)


def annealed_variance(step, anneal_steps, sigma_start: float = 2.0, sigma_end: float = 1.0):
    """The variance-annealing schedule of Appendix E: σ moves linearly from `sigma_start`
    (2 in the paper) to `sigma_end` (1) over `anneal_steps` steps, then stays at `sigma_end`.
    The paper compared "a variety of piecewise schedules"; linear is the simplest of them."""
    frac = tf.clip_by_value(tf.cast(step, tf.float32) / float(max(anneal_steps, 1)), 0.0, 1.0)
    return sigma_start + (sigma_end - sigma_start) * frac


def variance_annealed_normal(shape: Shape, seed: Seed, dtype=tf.float32, *, step, anneal_steps,
                             sigma_start: float = 2.0, sigma_end: float = 1.0) -> tf.Tensor:
    """Variance annealing, z ~ N(0, σ I) with σ from `annealed_variance(step, ...)` (Appendix E).

    σ multiplies the identity in the covariance, as the paper writes it, so it is a variance:
    z = sqrt(σ) · N(0, I). Pass the square if you think of σ as a standard deviation.
    """
    sigma = tf.cast(annealed_variance(step, anneal_steps, sigma_start, sigma_end), dtype)
    return tf.sqrt(sigma) * normal(shape, seed, dtype)


def variable_variance_normal(shape: Shape, seed: Seed, dtype=tf.float32, *, sigma_low: float,
                             sigma_high: float) -> tf.Tensor:
    """Per-sample variable variance (Appendix E): z_i ~ N(0, σ_i I) with σ_i ~ U[σ_l, σ_h]
    drawn independently for each sample i (the first axis). σ is a variance, as in
    `variance_annealed_normal`; the paper leaves (σ_l, σ_h) as hyper-parameters."""
    if not 0 <= sigma_low <= sigma_high:
        raise UserError(f"variable_variance needs 0 <= sigma_low <= sigma_high, got {sigma_low}, {sigma_high}")
    shape = [int(d) for d in shape]
    s = tf.random.experimental.stateless_split(_seed_pair(seed), num=2)
    sig = tf.random.stateless_uniform([shape[0]] + [1] * (len(shape) - 1), seed=s[1],
                                      minval=sigma_low, maxval=sigma_high, dtype=dtype)
    return tf.sqrt(sig) * tf.random.stateless_normal(shape, seed=s[0], dtype=dtype)


LATENT_DISTRIBUTIONS: Dict[str, Callable[..., tf.Tensor]] = {
    "normal": normal,
    "uniform": uniform,
    "bernoulli": bernoulli,
    "censored_normal": censored_normal,
    "bernoulli_symmetric": bernoulli_symmetric,
    "categorical": categorical,
    "normal_times_bernoulli": normal_times_bernoulli,
    "normal_bernoulli_concat": normal_bernoulli_concat,
    "variance_annealed": variance_annealed_normal,
    "variable_variance": variable_variance_normal,
}


def sample_latents(name: str, shape: Shape, seed: Seed, dtype=tf.float32, **params) -> tf.Tensor:
    """Draw z of `shape` from the Appendix E distribution called `name` (see
    LATENT_DISTRIBUTIONS); `params` are that distribution's own (p, step, sigma_low, ...).
    Deterministic for a seed; usable inside `tf.function`."""
    fn = LATENT_DISTRIBUTIONS.get(name)
    if fn is None:
        close = difflib.get_close_matches(name, LATENT_DISTRIBUTIONS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise UserError(f"unknown latent distribution {name!r}.{hint} Known: {', '.join(LATENT_DISTRIBUTIONS)}")
    try:
        inspect.signature(fn).bind(shape, seed, dtype, **params)
    except TypeError as e:
        # A missing or unknown parameter is the user's configuration, not a bug.
        raise UserError(f"latent distribution {name!r}: {e}") from e
    return fn(shape, seed, dtype, **params)
