"""The truncation trick (Section 3.1) and Appendix E latents (tf_biggan.sampling.latents)."""

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from tf_biggan.sampling import latents
from tf_biggan.errors import UserError

THRESHOLDS = [0.04, 0.5, 1.0, 2.0]


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_truncated_z_never_exceeds_threshold(threshold):
    z = latents.truncated_z([256, 128], threshold, seed=11).numpy()
    assert z.shape == (256, 128)
    assert np.abs(z).max() <= threshold


@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("method", ["resample", "inverse_cdf"])
def test_truncated_z_keeps_the_normal_shape_inside(threshold, method):
    # Resampling outside values leaves N(0, 1) conditioned on |z| <= t, i.e. truncnorm(-t, t).
    z = latents.truncated_z([20_000], threshold, seed=3, method=method).numpy().astype(np.float64)
    p = scipy.stats.kstest(z, scipy.stats.truncnorm(-threshold, threshold).cdf).pvalue
    assert p > 0.01


def test_truncated_z_np_twin_has_the_same_distribution():
    z = latents.truncated_z_np([20_000], 0.8, seed=5)
    assert np.abs(z).max() <= 0.8
    assert scipy.stats.kstest(z, scipy.stats.truncnorm(-0.8, 0.8).cdf).pvalue > 0.01
    np.testing.assert_array_equal(z, latents.truncated_z_np([20_000], 0.8, seed=5))


@pytest.mark.parametrize("threshold", [None, 0, 0.0, -1.0])
def test_no_threshold_means_untruncated_normal(threshold):
    z = latents.truncated_z([20_000], threshold, seed=4).numpy()
    assert np.abs(z).max() > 3.0
    assert scipy.stats.kstest(z, "norm").pvalue > 0.01
    np.testing.assert_array_equal(z, latents.normal([20_000], seed=4).numpy())


def test_truncated_z_deterministic_per_seed_eager_and_in_tf_function():
    a = latents.truncated_z([64, 20], 0.5, seed=7).numpy()
    b = latents.truncated_z([64, 20], 0.5, seed=7).numpy()
    c = latents.truncated_z([64, 20], 0.5, seed=8).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)

    @tf.function
    def sample(threshold, seed):
        return latents.truncated_z([64, 20], threshold, seed)

    d = sample(tf.constant(0.5), tf.constant([7, 0], tf.int64)).numpy()
    np.testing.assert_array_equal(a, d)
    # A tensor threshold <= 0 inside the graph is untruncated too.
    e = sample(tf.constant(0.0), tf.constant([7, 0], tf.int64)).numpy()
    np.testing.assert_array_equal(e, latents.normal([64, 20], seed=7).numpy())


def test_hub_notebook_variant_scales_a_fixed_truncnorm():
    t = 0.5
    z = latents.hub_notebook_truncated_z([4000, 8], t, seed=0).numpy()
    # Support is [-2t, 2t], not [-t, t]: this is not the paper's truncation.
    assert np.abs(z).max() <= 2 * t
    assert np.abs(z).max() > t
    assert scipy.stats.kstest(z.ravel() / t, scipy.stats.truncnorm(-2, 2).cdf).pvalue > 0.01
    np.testing.assert_array_equal(z, latents.hub_notebook_truncated_z([4000, 8], t, seed=0).numpy())
    # The two conventions by name; an unknown name is the user's error.
    np.testing.assert_array_equal(latents.convention_z([4000, 8], t, 0, "hub_notebook").numpy(), z)
    np.testing.assert_array_equal(latents.convention_z([50, 8], t, 0, "paper_resample").numpy(),
                                  latents.truncated_z([50, 8], t, 0).numpy())
    with pytest.raises(UserError, match="latent_convention='other'"):
        latents.convention_z([2, 2], t, 0, "other")


@pytest.mark.parametrize("tau", [0.2, 0.5, 1.0])
def test_cas_convention_resamples_outside_two_tau(tau):
    """CAS A.1 footnote 5: entries outside [-2τ, 2τ] resampled, so z ~ truncnorm(-2τ, 2τ) (in z units),
    checked against scipy's closed-form std and by a KS test, through synthesize's shard latents."""
    from tf_biggan.synthesis import synthesize

    z = synthesize.shard_latents(0, 2000, 20, tau, seed=3, convention="cas_resample").numpy().astype(np.float64)
    ref = scipy.stats.truncnorm(-2 * tau, 2 * tau)
    assert np.abs(z).max() <= 2 * tau and np.abs(z).max() > 1.9 * tau  # support [-2τ, 2τ], reached
    # std of 40,000 draws: standard error ~ std / sqrt(2n) < 0.4%; 2% tolerates 5 sigma.
    assert z.std() == pytest.approx(ref.std(), rel=0.02)
    assert scipy.stats.kstest(z.ravel(), ref.cdf).pvalue > 0.01
    # It is BigGAN's resampling at the bound 2τ, number for number; numpy's twin has the same law.
    np.testing.assert_array_equal(z, latents.truncated_z([2000, 20], 2 * tau, latents._seed_pair(
        synthesize.seeds.key("synthesize", 3, 0))).numpy())
    twin = latents.truncated_z_np([40_000], 2 * tau, seed=1)
    assert twin.std() == pytest.approx(ref.std(), rel=0.02)
    assert latents.z_bound(tau, "cas_resample") == 2 * tau and latents.z_bound(tau, "paper_resample") == tau


def test_cas_convention_stds_differ_from_biggan_threshold_and_notebook():
    """The issue's figures: std of z at τ = 0.2 / 1.0 is 0.23 / 0.88 in CAS's convention, 0.115 / 0.54
    with BigGAN's threshold τ; the notebook's τ · truncnorm(-2, 2) is a third law (0.176 at τ = 0.2)."""
    for tau, cas, biggan in ((0.2, 0.23, 0.115), (1.0, 0.88, 0.54)):
        z = latents.convention_z([20_000], tau, 5, "cas_resample").numpy()
        assert z.std() == pytest.approx(cas, abs=0.01)
        assert latents.convention_z([20_000], tau, 5, "paper_resample").numpy().std() == pytest.approx(biggan, abs=0.01)
    hub = latents.convention_z([20_000], 0.2, 5, "hub_notebook").numpy()
    assert hub.std() == pytest.approx(0.2 * scipy.stats.truncnorm(-2, 2).std(), rel=0.02)
    assert abs(hub.std() - 0.23) > 0.04
    # τ <= 0 (also a tensor in a graph) is untruncated N(0, I).
    np.testing.assert_array_equal(latents.convention_z([64], 0.0, 2, "cas_resample").numpy(),
                                  latents.normal([64], seed=2).numpy())
    g = tf.function(lambda t: latents.convention_z([64], t, 2, "cas_resample"))
    np.testing.assert_array_equal(g(tf.constant(0.0)).numpy(), latents.normal([64], seed=2).numpy())
    np.testing.assert_array_equal(g(tf.constant(0.3)).numpy(), latents.convention_z([64], 0.3, 2, "cas_resample"))
    assert latents.z_bound(0, "cas_resample") is None


EXTRA = {
    "variance_annealed": dict(step=0, anneal_steps=100),
    "variable_variance": dict(sigma_low=0.5, sigma_high=1.5),
}


@pytest.mark.parametrize("name", sorted(latents.LATENT_DISTRIBUTIONS))
def test_every_latent_is_deterministic_per_seed(name):
    kw = EXTRA.get(name, {})
    a = latents.sample_latents(name, [32, 16], 1, **kw).numpy()
    b = latents.sample_latents(name, [32, 16], 1, **kw).numpy()
    c = latents.sample_latents(name, [32, 16], 2, **kw).numpy()
    assert a.shape == (32, 16) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    d = tf.function(lambda s: latents.sample_latents(name, [32, 16], s, **kw))(
        tf.constant([1, 0], tf.int64)).numpy()
    np.testing.assert_array_equal(a, d)


def _draw(name, **kw):
    return latents.sample_latents(name, [2000, 64], 123, **kw).numpy().astype(np.float64)


def test_appendix_e_supports_and_moments():
    z = _draw("uniform")
    assert z.min() >= -1 and z.max() <= 1 and abs(z.mean()) < 0.01

    z = _draw("bernoulli")
    assert set(np.unique(z)) == {0.0, 1.0} and abs(z.mean() - 0.5) < 0.01

    z = _draw("censored_normal")
    assert z.min() == 0.0 and abs((z == 0).mean() - 0.5) < 0.01
    assert scipy.stats.kstest(z[z > 0][:20_000], scipy.stats.halfnorm.cdf).pvalue > 0.01

    z = _draw("bernoulli_symmetric")
    assert set(np.unique(z)) == {-1.0, 1.0} and abs(z.mean()) < 0.02

    z = _draw("categorical")
    assert set(np.unique(z)) == {-1.0, 0.0, 1.0}
    for v in (-1, 0, 1):
        assert abs((z == v).mean() - 1 / 3) < 0.01

    z = _draw("normal_times_bernoulli")
    assert abs((z == 0).mean() - 0.5) < 0.01
    assert scipy.stats.kstest(z[z != 0][:20_000], "norm").pvalue > 0.01

    z = _draw("normal_bernoulli_concat")
    assert set(np.unique(z[:, 32:])) == {0.0, 1.0}
    assert scipy.stats.kstest(z[:, :32].ravel()[:20_000], "norm").pvalue > 0.01


def test_variance_annealing_and_variable_variance():
    start = _draw("variance_annealed", step=0, anneal_steps=100)
    end = _draw("variance_annealed", step=100, anneal_steps=100)
    later = _draw("variance_annealed", step=1000, anneal_steps=100)
    assert start.var() == pytest.approx(2.0, rel=0.03)  # N(0, σI) with σ = 2: a variance
    assert end.var() == pytest.approx(1.0, rel=0.03)
    np.testing.assert_array_equal(end, later)

    z = latents.sample_latents("variable_variance", [400, 4000], 9, sigma_low=0.5, sigma_high=1.5).numpy()
    per_sample = z.var(axis=1)
    assert per_sample.min() > 0.5 * 0.9 and per_sample.max() < 1.5 * 1.1
    assert per_sample.std() > 0.2  # the variance really differs between samples


def test_sample_latents_errors_are_user_errors():
    with pytest.raises(UserError, match="bernoulli"):
        latents.sample_latents("bernouli", [2, 2], 0)
    with pytest.raises(UserError, match="sigma_low"):
        latents.sample_latents("variable_variance", [2, 2], 0)


@pytest.mark.xdist_group("tiny_run")
def test_synthesize_cli_cas_convention_is_biggan_resampling_at_two_tau(tiny_run, tmp_path):
    """`--latent_convention=cas_resample --truncation=0.5` through the real CLI writes the images of
    BigGAN's resampling at threshold 1.0 (z and standing statistics drawn alike), byte for byte, and
    records the convention in the manifest. The reference runs the synthesize mode in this process
    (one TensorFlow start less), with the flags the CLI would give it."""
    import json
    import os
    import subprocess
    import sys

    import evaluation_run

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=root)
    outputs = {}
    for convention, t in (("cas_resample", 0.5), ("paper_resample", 1.0)):
        out = str(tmp_path / convention)
        if convention == "cas_resample":
            proc = subprocess.run([sys.executable, "-m", "tf_biggan.main", "--mode=synthesize",
                                   f"--model_dir={tiny_run[0]}", f"--output_dir={out}", f"--truncation={t}",
                                   f"--latent_convention={convention}", "--images_per_class=1", "--num_shards=1",
                                   "--also_write_npz"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        else:
            evaluation_run.run("synthesize", None, tiny_run[0], output_dir=out, truncation=t,
                               latent_convention=convention, images_per_class=1, num_shards=1, also_write_npz=True)
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
        assert manifest["latent_convention"] == convention and manifest["truncation"] == t
        assert manifest["standing_stats"]["latent_convention"] == convention
        outputs[convention] = np.load(os.path.join(out, "npz", manifest["shards"][0] + ".npz"))["images"]
    np.testing.assert_array_equal(outputs["cas_resample"], outputs["paper_resample"])


@pytest.mark.xdist_group("tiny_run")
def test_synthesize_from_our_module_feeds_it_biggan_threshold_two_tau(tiny_module, tmp_path):
    """Our modules pick standing statistics by BigGAN's threshold: CAS's τ = 0.5 is their input 1.0, so
    the images equal those of `--latent_convention=paper_resample --truncation=1.0` from the module."""
    import evaluation_run

    images = {}
    for convention, t in (("cas_resample", 0.5), ("paper_resample", 1.0)):
        out = str(tmp_path / convention)
        evaluation_run.run("synthesize", None, module=tiny_module, output_dir=out, truncation=t,
                           latent_convention=convention, images_per_class=1, num_shards=1, also_write_npz=True)
        images[convention] = np.load(next((tmp_path / convention / "npz").glob("*.npz")))["images"]
    np.testing.assert_array_equal(images["cas_resample"], images["paper_resample"])
