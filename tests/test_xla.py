"""XLA readiness without a TPU (issue 12 point 3).

A TPU runs XLA-compiled graphs with static shapes; the closest check on this machine is XLA on the
CPU. Each piece the TPU compiles is compiled here with `jit_compile=True` at the per-replica shapes
a TPU sees (the TPU hparams files' global batch / cores, their dtype: bf16 for
hparams/biggan_128_v3-8.yaml and the CAS v2-8 protocol), with tiny widths so it runs in seconds,
run once, and compared with the same computation without XLA:

- the GAN step body of training/step.py (D steps, G step, EMA: what `TrainStep._steps` repeats);
- the standing-statistics passes (Appendix C.1) and the sampling pass of G at inference;
- the truncation trick's resampling loop (a tf.while_loop, Section 3.1);
- the CAS classifier step (cas/train.py, the v2-8 protocol's optimiser, weight decay, bf16);
- the ADA pipeline and DiffAugment (augment/).

Where the TPU path differs (asserted below, so a TensorFlow change that removes the difference is
noticed): the float draws of `tf.random.stateless_uniform` / `stateless_normal` are DIFFERENT
numbers under XLA than from the TF CPU/GPU kernels for the same key, even with alg="philox"
(integer draws agree bit for bit), so the training latents, standing-statistics latents,
truncated z and ADA's draws of a TPU run are other samples of the same distributions than a
CPU/GPU run with the same seed (same-seed reproducibility holds within one kind of device). To compare numerically, the tests below draw
random numbers once outside the compiled function and feed both versions the same ones. Not
checkable here: the input pipeline (tf.data runs on the TPU host, outside XLA, on a TPU too) and
the cross-replica all-reduces (TPUStrategy lowers them to XLA collectives; MirroredStrategy's
CPU all-reduce cannot be placed inside a jit_compile function), so the steps run on one replica
with the per-replica batch.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tf_biggan.config import load_hparams

# Tiny widths; everything else (dtype, D steps, optimiser, batch per core) from the TPU files.
TINY_GAN = ("model.resolution=16,model.ch=4,model.dim_z=60,model.shared_dim=16,data.num_classes=10,"
            "model.g_attention_resolution=8,model.d_attention_resolution=8,train.ema_start_step=0")


def per_replica_batch(global_batch: int, tpu_size: str) -> int:
    cores = int(tpu_size.split("-")[1])
    assert global_batch % cores == 0
    return global_batch // cores


def max_rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


# ------------------------------------------------------------------------------- the RNG difference


def test_stateless_float_draws_differ_under_xla_integer_draws_agree():
    """The one TPU-path difference found: for the same key (and explicitly the same Philox
    algorithm), XLA's float draws are other numbers than the TF kernel's; integer draws agree."""

    def draw(key):
        return (tf.random.stateless_uniform((1000,), key, maxval=1000, dtype=tf.int32, alg="philox"),
                tf.random.stateless_uniform((1000,), key, alg="philox"),
                tf.random.stateless_normal((1000,), key, alg="philox"))

    key = tf.constant([7, 3], tf.int64)
    ints, u, n = (t.numpy() for t in tf.function(draw)(key))
    ints_x, ux, nx = (t.numpy() for t in tf.function(draw, jit_compile=True)(key))
    np.testing.assert_array_equal(ints, ints_x)
    for ref, xla in ((u, ux), (n, nx)):
        assert np.mean(np.abs(ref - xla) > 1e-3) > 0.9, "float draws now agree under XLA: update the docs"
    for sample in (n, nx):  # both N(0, 1), both U[0, 1)
        assert abs(sample.mean()) < 0.1 and abs(sample.std() - 1) < 0.1
    for sample in (u, ux):
        assert abs(sample.mean() - 0.5) < 0.05 and sample.min() >= 0 and sample.max() < 1


# ------------------------------------------------------------------------------- the GAN step


def _gan_hp(extra: str = ""):
    """hparams/biggan_128_v3-8.yaml (bf16, 32 images per core), tiny widths, one core's batch."""
    hp = load_hparams("biggan_128_v3-8", TINY_GAN)
    local = per_replica_batch(hp.train.batch_size, "v3-8")
    return load_hparams("biggan_128_v3-8", f"{TINY_GAN},train.batch_size={local}{extra}")


def _step_body(trainer):
    """One iteration of TrainStep._steps without the iterator and the (single-replica) reduce."""
    ts = trainer.train_step

    def body(batches):
        metrics = ts.replica_step(batches, tf.convert_to_tensor(ts.step_var))
        ts.step_var.assign_add(1)
        for hook in ts.post_step:
            hook(ts.step_var)
        ts.ema.update(ts.step_var)
        return metrics
    return body


# XLA's CPU compiler takes ~20 s for the tiny step with one D step and no attention, ~35 s with the
# file's two D steps and non-local blocks in G and D: the full configuration is a slow test (G's
# non-local block is compiled in CI by the sampling test below).
GAN_STEP_CONFIGS = [
    pytest.param(",train.disc_steps=1,model.g_attention_resolution=0,model.d_attention_resolution=0", id="ci"),
    pytest.param("", id="v3-8_config", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("extra", GAN_STEP_CONFIGS)
def test_gan_train_step_compiles_and_matches(extra):
    from tf_biggan.training.trainer import GANTrainer

    hp = _gan_hp(extra)
    assert hp.model.dtype == "mixed_bfloat16" and hp.train.batch_size == 32
    b, res = hp.train.batch_size, hp.model.resolution
    rng = np.random.default_rng(0)
    batches = [(tf.constant(rng.uniform(-1, 1, (b, res, res, 3)), tf.float32),
                tf.constant(rng.integers(0, 10, b), tf.int32)) for _ in range(hp.train.disc_steps)]
    results = {}
    for jit in (False, True):
        trainer = GANTrainer(hp, verbose=False)  # same initial weights: train.seed
        # The step's own latents, drawn once without XLA (see the module docstring).
        fixed = [trainer.train_step.latents(tf.constant(0, tf.int64), k) for k in range(hp.train.disc_steps + 1)]
        trainer.train_step.latents = lambda step, k, fixed=fixed: fixed[k]
        g_before = [v.numpy() for v in trainer.g.trainable_variables]
        d_before = [v.numpy() for v in trainer.d.trainable_variables]
        metrics = tf.function(_step_body(trainer), jit_compile=jit)(batches)
        results[jit] = dict(metrics={k: float(v) for k, v in metrics.items()}, trainer=trainer,
                            g_before=g_before, d_before=d_before)

    xla, ref = results[True], results[False]
    t = xla["trainer"]
    assert int(t.step.numpy()) == 1
    assert all(np.isfinite(v) for v in xla["metrics"].values())
    assert t.g.compute_dtype == "bfloat16" and t.g.trainable_variables[0].dtype == tf.float32
    # The same step: metrics (bf16 compute: XLA fuses and rounds differently) and weights.
    for name, value in ref["metrics"].items():
        assert xla["metrics"][name] == pytest.approx(value, rel=5e-2, abs=5e-2), name
    for which, lr, steps in (("g", hp.train.g_lr, 1), ("d", hp.train.d_lr, hp.train.disc_steps)):
        model, ref_model = getattr(t, which), getattr(ref["trainer"], which)
        deltas, ref_deltas = [], []
        for before, after, other in zip(xla[f"{which}_before"], model.trainable_variables,
                                        ref_model.trainable_variables):
            deltas.append((after.numpy() - before).ravel())
            ref_deltas.append((other.numpy() - before).ravel())
        delta, ref_delta = np.concatenate(deltas), np.concatenate(ref_deltas)
        # Adam (beta1 = 0) moves each weight by at most ~lr per step (1.42 lr on the 2nd) ...
        assert np.max(np.abs(delta)) <= 2.5 * lr * steps, which
        # ... and XLA moved nearly all weights as TF did. Not all: Adam turns gradients that are
        # rounding noise (biases followed by BN have zero gradient) into full +-lr steps.
        agree = np.mean(np.abs(delta - ref_delta) <= 0.25 * lr * steps)
        assert agree > 0.9, (which, agree)
    # EMA (decay from the file, 0.9999): ema = decay * G_before + (1 - decay) * G_after.
    decay = hp.train.ema_decay
    trainable = {id(v) for v in t.g.trainable_variables}
    g_by_index = {i: v for i, v in enumerate(t.g.trainable_variables)}
    index = {id(v): i for i, v in g_by_index.items()}
    from tf_biggan.layers.spectral_norm import spectral_norm_layers

    own_u = {id(layer.u) for layer in spectral_norm_layers(t.ema_g)}  # EMA-G iterates on its own kernels
    for g_var, e_var in zip(t.g.weights, t.ema_g.weights):
        if id(g_var) in trainable:
            expected = decay * xla["g_before"][index[id(g_var)]] + (1 - decay) * g_var.numpy()
            np.testing.assert_allclose(e_var.numpy(), expected, rtol=1e-5, atol=1e-7)
        elif id(e_var) not in own_u:  # BN statistics: copied
            np.testing.assert_array_equal(e_var.numpy(), g_var.numpy())


# ------------------------------------------------------------------------------- sampling


def test_standing_stats_and_sampling_pass_compile_and_match():
    from tf_biggan.layers.batch_norm import batch_norm_layers
    from tf_biggan.models import Generator
    from tf_biggan.sampling.latents import truncated_z
    from tf_biggan.sampling.standing_stats import accumulate_standing_stats, get_bn_stats

    hp = _gan_hp()
    b, passes = hp.train.batch_size, 4
    import keras

    keras.utils.set_random_seed(0)
    g = Generator(hp.model, hp.data.num_classes)
    g.build_for_input(2)
    assert g.compute_dtype == "bfloat16"
    # Latents at truncation 0.5 (what a sweep point accumulates), drawn once without XLA.
    zs = tf.stack([truncated_z((b, hp.model.dim_z), 0.5, seed=i) for i in range(passes)])
    ys = tf.constant(np.arange(passes * b).reshape(passes, b) % 10, tf.int32)
    latents = lambda step: (tf.gather(zs, step), tf.gather(ys, step))  # noqa: E731

    accumulate_standing_stats(g, num_passes=passes, batch_size=b, latents=latents)
    ref_stats = get_bn_stats(g)

    @tf.function(jit_compile=True)
    def one_pass(step):
        g(latents(step), training=False, accumulate=True)

    layers = batch_norm_layers(g)
    for layer in layers:
        layer.reset_standing_stats()
    for step in range(passes):
        one_pass(tf.constant(step, tf.int64))
    for layer in layers:
        layer.finalize_standing_stats()
    xla_stats = get_bn_stats(g)
    assert ref_stats.keys() == xla_stats.keys() and len(ref_stats) >= 4
    for name in ref_stats:
        np.testing.assert_allclose(xla_stats[name], ref_stats[name], rtol=5e-2, atol=5e-3, err_msg=name)

    # The sampling pass (inference BN statistics), XLA vs not, same z and y.
    z, y = zs[0], ys[0]
    ref_images = tf.function(lambda z, y: g((z, y), training=False))(z, y).numpy()
    xla_images = tf.function(lambda z, y: g((z, y), training=False), jit_compile=True)(z, y).numpy()
    assert xla_images.shape == (b, hp.model.resolution, hp.model.resolution, 3)
    assert np.all(np.abs(xla_images) <= 1.0)
    # bf16 keeps ~3 significant digits and XLA fuses (and so rounds) differently through the whole
    # network: a few pixels differ by up to ~0.1, the image as a whole by far less.
    diff = np.abs(xla_images.astype(np.float32) - ref_images.astype(np.float32))
    assert diff.mean() < 1e-2 and np.percentile(diff, 99) < 5e-2 and diff.max() < 0.25


def test_truncation_resampling_loop_compiles():
    """truncated_z's tf.while_loop (Section 3.1) compiles: every entry inside the threshold, and the
    draws are the truncated normal (their std is the closed form's)."""
    from scipy import stats

    from tf_biggan.sampling.latents import truncated_z

    threshold = 0.5
    z = tf.function(lambda seed: truncated_z((32, 120), threshold, seed), jit_compile=True)(
        tf.constant([3, 4], tf.int64)).numpy()
    assert z.shape == (32, 120) and np.all(np.abs(z) <= threshold)
    expected_std = stats.truncnorm(-threshold, threshold).std()
    assert z.std() == pytest.approx(expected_std, rel=0.05)
    assert abs(z.mean()) < 0.02


# ------------------------------------------------------------------------------- CAS


def test_cas_train_step_compiles_and_matches():
    """The v2-8 protocol's step (Nesterov SGD on the warm-up schedule, weight decay off BN, bf16,
    128 images per core), on the small CIFAR ResNet at 32 px instead of ResNet-50 at 224 px."""
    from tf_biggan.cas.train import CasClassifier

    base = load_hparams("cas_resnet50_v2-8")
    local = per_replica_batch(base.cas.batch_size, "v2-8")
    hp = load_hparams("cas_resnet50_v2-8", f"cas.arch=resnet_cifar,cas.depth=8,cas.width=4,cas.image_size=32,"
                                           f"cas.batch_size={local},data.num_classes=10")
    assert hp.cas.dtype == "mixed_bfloat16" and hp.cas.nesterov and local == 128
    rng = np.random.default_rng(1)
    batch = (tf.constant(rng.normal(size=(local, 32, 32, 3)), tf.float32),
             tf.constant(rng.integers(0, 10, local), tf.int32))
    runs = {}
    for jit in (False, True):
        clf = CasClassifier(hp, tf.distribute.get_strategy(), steps_per_epoch=10)
        before = [v.numpy() for v in clf.model.trainable_variables]
        # Two steps: the second one uses the momentum built by the first.
        step = tf.function(clf.replica_step, jit_compile=jit)
        out = [step(batch), step(batch)]
        runs[jit] = (clf, before, [{k: float(v) for k, v in o.items()} for o in out])
    (clf, before, xla_out), (ref_clf, _, ref_out) = runs[True], runs[False]
    assert clf.step == 2 and clf.model.compute_dtype == "bfloat16"
    for xla_metrics, ref_metrics in zip(xla_out, ref_out):
        for name, value in ref_metrics.items():
            assert np.isfinite(xla_metrics[name])
            assert xla_metrics[name] == pytest.approx(value, rel=2e-2), name
    deltas = [(var.numpy() - b0).ravel() for b0, var in zip(before, clf.model.trainable_variables)]
    ref_deltas = [(var.numpy() - b0).ravel() for b0, var in zip(before, ref_clf.model.trainable_variables)]
    assert all(np.any(d != 0) for d in deltas)  # every weight moved
    # bf16 gradients: XLA's update of the whole network points where TF's does, to within a few
    # percent (single small tensors such as a BN gamma differ more: sums of bf16 products).
    delta, ref_delta = np.concatenate(deltas), np.concatenate(ref_deltas)
    cosine = delta @ ref_delta / (np.linalg.norm(delta) * np.linalg.norm(ref_delta))
    assert cosine > 0.98, cosine
    assert np.linalg.norm(delta - ref_delta) <= 0.2 * np.linalg.norm(ref_delta)


# ------------------------------------------------------------------------------- augmentation


class _RecordedDraws:
    """Wraps augment.draws.Draws: records every draw (eagerly), or replays the recorded numbers in
    the same order as constants, so an XLA run sees the numbers of the reference run."""

    def __init__(self, draws, replay=None):
        self.draws, self.replay, self.record = draws, replay, []

    def __getattr__(self, name):  # global_batch, local_batch, offset, key: the wrapped draws'
        return getattr(self.draws, name)

    def _take(self, name, *args):
        if self.replay is not None:
            return tf.constant(self.replay.pop(0))
        value = getattr(self.draws, name)(*args)
        self.record.append(value.numpy())
        return value

    def uniform(self, *shape):
        return self._take("uniform", *shape)

    def normal(self, *shape):
        return self._take("normal", *shape)

    def gate(self, probability, *shape):
        return self.uniform(*shape) < tf.cast(probability, tf.float32)

    def local_normal(self, shape):
        return self._take("local_normal", shape)


@pytest.mark.parametrize("kind", ["ada_bgc", "diffaugment"])
def test_augmentation_compiles_and_matches(kind):
    from tf_biggan import seeds
    from tf_biggan.augment.diffaugment import diff_augment
    from tf_biggan.augment.draws import Draws
    from tf_biggan.augment.transforms import ada_augment

    b, res = 32, 16  # one v3-8 core's batch at the tiny GAN's resolution
    rng = np.random.default_rng(2)
    images = tf.constant(rng.uniform(-1, 1, (b, res, res, 3)), tf.bfloat16)  # what bf16 D sees
    p = tf.constant(0.8)

    def augment(draws):
        if kind == "diffaugment":
            return diff_augment(images, draws, "color,translation,cutout", p)
        return ada_augment(images, p, draws, "bgc")

    recorder = _RecordedDraws(Draws(seeds.key("augment", 0, 5), b))
    ref = augment(recorder).numpy()  # eager: records the draws
    assert recorder.record, "no random draws were made"
    replay = _RecordedDraws(recorder.draws, replay=list(recorder.record))
    xla = tf.function(lambda: augment(replay), jit_compile=True)().numpy()
    assert xla.dtype == ref.dtype and xla.shape == ref.shape
    assert not np.allclose(ref.astype(np.float32), images.numpy().astype(np.float32))  # p = 0.8 did something
    np.testing.assert_allclose(xla.astype(np.float32), ref.astype(np.float32), atol=2e-2)
