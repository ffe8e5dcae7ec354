"""The stability toolkit inside training (paper Section 4, Appendices E, G): training latents reach
the step, interventions and kept checkpoints on disk. The real CLI from a detected collapse to an intervention
resume (Appendix G.1) is tests/test_cli.py's two-replica scenario.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from tf_biggan.config import HParamsError, load_hparams
from tf_biggan.errors import UserError
from tf_biggan.training import intervene
from tf_biggan.training.stability import PriorLatentSampler

TINY = ("model.ch=4,train.batch_size=8,train.steps_per_loop=2,train.log_every=2,train.save_every=2,"
        "train.sv_every=2,train.sample_every=100,train.sample_columns=2,eval.standing_stats_passes=2,"
        "eval.standing_stats_batch=20")


def draw(name, step=0, shape=(4000, 8), extra=""):
    hp = load_hparams(None, f"train.latents={name},train.latents_p=0.3,train.latents_anneal_steps=100,"
                            f"train.latents_sigma_low=0.5,train.latents_sigma_high=2.5" + extra)
    sampler = PriorLatentSampler(hp.train, shape[1], 10, shape[0], 1, 1, 0)
    return sampler.sample_z(shape, tf.constant([7, 3], tf.int64), tf.constant(step, tf.int64)).numpy()


@pytest.mark.parametrize("name,support,mean,var", [
    ("normal", None, 0.0, 1.0),
    ("uniform", (-1.0, 1.0), 0.0, 1.0 / 3),
    ("bernoulli", {0.0, 1.0}, 0.3, 0.3 * 0.7),
    ("censored_normal", (0.0, np.inf), 1 / np.sqrt(2 * np.pi), 0.5 - 1 / (2 * np.pi)),
    ("bernoulli_symmetric", {-1.0, 1.0}, 2 * 0.3 - 1, 4 * 0.3 * 0.7),
    ("categorical", {-1.0, 0.0, 1.0}, 0.0, 2.0 / 3),
    ("normal_times_bernoulli", None, 0.0, 0.3),
])
def test_training_latents_support_and_moments(name, support, mean, var):
    """Appendix E's priors as train.latents draws them: support and first two moments (closed form)."""
    z = draw(name)
    if isinstance(support, set):
        assert set(np.unique(z)) == support
    elif support is not None:
        assert z.min() >= support[0] and z.max() <= support[1]
    tol = 4 * np.sqrt(max(var, 1e-3) / z.size) * 3  # a few standard errors
    assert abs(z.mean() - mean) < tol + 0.01
    assert abs(z.var() - var) < 0.05 * var + 0.01
    if name == "normal_times_bernoulli":
        assert abs((z == 0).mean() - 0.7) < 0.02  # P(dropped) = 1 - p


def test_structured_training_latents():
    z = draw("normal_bernoulli_concat")
    assert set(np.unique(z[:, 4:])) == {0.0, 1.0} and abs(z[:, :4].var() - 1) < 0.05
    # Variance annealing: σ = 2 at step 0, 1.5 half-way, 1 from latents_anneal_steps on (σ a variance).
    for step, expected in ((0, 2.0), (50, 1.5), (100, 1.0), (1000, 1.0)):
        assert abs(draw("variance_annealed", step).var() - expected) < 0.05 * expected
    # Per-sample variance σ_i ~ U[0.5, 2.5]: E[σ_i] = 1.5; each row's variance lies in the range.
    z = draw("variable_variance", shape=(4000, 64))
    assert abs(z.var() - 1.5) < 0.05
    rows = z.var(axis=1)
    assert np.quantile(rows, 0.01) > 0.5 * 0.5 and np.quantile(rows, 0.99) < 2.5 * 1.6


def all_weights(trainer):
    out = {}
    for name, model in (("g", trainer.g), ("d", trainer.d), ("ema", trainer.ema_g)):
        out.update({f"{name}:{v.path}": np.asarray(v.numpy()) for v in model.weights})
    return out


def test_the_step_draws_train_latents():
    """The trainer's step samples z from train.latents (Appendix E), labels as before."""
    from tf_biggan.training.step import LatentSampler
    from tf_biggan.training.trainer import GANTrainer

    trainer = GANTrainer(load_hparams(None, TINY + ",train.latents=bernoulli_symmetric"), verbose=False)
    z, y = trainer.train_step.latents(tf.constant(3, tf.int64), 1)
    assert set(np.unique(z.numpy())) == {-1.0, 1.0} and z.shape == (8, trainer.hp.model.dim_z)
    _, y_default = LatentSampler(trainer.hp.model.dim_z, 10, 8, 1, 1, 0)(tf.constant(3, tf.int64), 1)
    np.testing.assert_array_equal(y.numpy(), y_default.numpy())


def test_each_replica_draws_its_own_dropout_masks():
    """stability.d_dropout: the step hands D each replica's own key (step.TrainStep.d_call with the
    d_dropout_key part), not one stored on D, which replicas interleaving at D's spectral-norm
    updates overwrote (every replica drew the last replica's masks). Same images on both replicas:
    their outputs differ, and agree once the key ignores the replica id."""
    import types

    from conftest import mirrored_strategy
    from tf_biggan.models import Discriminator
    from tf_biggan.training.stability import dropout_keys
    from tf_biggan.training.step import TrainStep

    hp = load_hparams(None, "model.ch=4")
    strategy = mirrored_strategy(2)
    with strategy.scope():
        d = Discriminator(hp.model, 10, dropout=0.5)
        d.build_for_input()
    x = tf.random.stateless_uniform((2, 16, 16, 3), (4, 2), -1, 1)
    y = tf.constant([1, 7])
    per_replica = dropout_keys(seed=3, disc_steps=1)

    def outputs(key_fn):
        step = types.SimpleNamespace(d=d, d_dropout_key=key_fn)
        run = tf.function(lambda: strategy.run(lambda: TrainStep.d_call(step, x, y, tf.constant(5, tf.int64), 0, {})))
        return [v.numpy() for v in strategy.experimental_local_results(run())]

    own = outputs(per_replica)
    assert not np.allclose(own[0], own[1])
    shared = outputs(lambda step, substep: tf.random.experimental.stateless_fold_in((3, 5), 0))
    np.testing.assert_array_equal(shared[0], shared[1])


@pytest.mark.slow  # two trainers traced with every knob on: ~65 s of CPU
def test_knobs_in_the_step_two_replicas_equal_one_device():
    """R1, σ0 regulariser + clamp, embedding decay, global and per-parameter clipping and a training
    prior inside the real step: 2 replicas give one device's update (the clip norms are those of the
    all-reduced gradient), and the step draws z from train.latents."""
    from conftest import mirrored_strategy
    from tf_biggan.training.step import LatentSampler
    from tf_biggan.training.trainer import GANTrainer

    hp = load_hparams(None, TINY + ",train.adam_epsilon=1.0e-3,train.latents=categorical,train.r1_gamma=1.0,"
                      "stability.g_sigma0_reg=0.1,stability.g_sigma0_clamp=true,stability.sigma0_target=ratio,"
                      "stability.sigma_ratio=1.05,stability.shared_embedding_decay=1.0e-3,"
                      "stability.grad_clip_global=0.5,stability.grad_clip_per_param=0.2,stability.hinge_margin=1.5")
    single = GANTrainer(hp, tf.distribute.get_strategy(), verbose=False)
    mirrored = GANTrainer(hp, mirrored_strategy(2), verbose=False)
    z, y = single.train_step.latents(tf.constant(3, tf.int64), 0)
    assert set(np.unique(z.numpy())) == {-1.0, 0.0, 1.0} and z.shape == (8, hp.model.dim_z)
    before = all_weights(single)
    m1, m2 = single.train_steps(1), mirrored.train_steps(1)
    assert {"r1", "sigma0_reg", "embedding_decay"} <= set(m1) and m1["r1"] > 0 and m1["sigma0_reg"] > 0
    for k in m1:
        assert m1[k] == pytest.approx(m2[k], rel=1e-4, abs=1e-5), k
    after = all_weights(single)
    for (k, a), b in zip(after.items(), all_weights(mirrored).values()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=k)
    assert any(not np.allclose(before[k], after[k]) for k in before if k.startswith("g"))
    # The clamp held: every G kernel's σ0 <= 1.05 σ1 after the step (numpy SVD).
    for kernel in single.g.ortho_reg_kernels():
        s = np.linalg.svd(kernel.numpy().reshape(-1, kernel.shape[-1]), compute_uv=False)
        assert s[0] <= 1.05 * s[1] * (1 + 1e-3)
    # The "normal" prior draws exactly the default sampler's numbers (default runs unchanged).
    args = (hp.model.dim_z, 10, 8, 1, 1, 0)
    default = LatentSampler(*args)(tf.constant(3, tf.int64), 0)
    normal = PriorLatentSampler(load_hparams(None, "").train, *args)(tf.constant(3, tf.int64), 0)
    np.testing.assert_array_equal(normal[0].numpy(), default[0].numpy())


def test_stability_hparams_are_validated():
    hp = load_hparams(None, "")
    assert hp.stability.freeze == "none" and hp.train.r1_gamma == 0 and hp.train.latents == "normal"
    for bad in ("stability.d_dropout=1.0", "train.r1_gamma=-1.0", "stability.sigma0_target=median",
                "train.latents=gaussian", "stability.colapse_window=3"):
        with pytest.raises(HParamsError):
            load_hparams(None, bad)


def fake_run(tmp_path, steps=(2, 4, 6, 8)):
    """A run directory with hparams.yaml and tiny checkpoints ckpt-<step> (a CheckpointManager's)."""
    hp = load_hparams(None, TINY)
    from tf_biggan.config import save_hparams

    run = str(tmp_path / "run")
    save_hparams(hp, os.path.join(run, "hparams.yaml"))
    var = tf.Variable(0.0)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=var), run, max_to_keep=10)
    for s in steps:
        var.assign(float(s))
        manager.save(checkpoint_number=s)
    return hp, run


def test_intervention_moves_the_abandoned_branch_and_records_itself(tmp_path):
    hp, run = fake_run(tmp_path)
    kept = intervene.keep_checkpoints_before(run, 7, count=2)
    assert [os.path.basename(p) for p in kept] == ["ckpt-4", "ckpt-6"]
    chosen = os.path.join(run, "pre_collapse", "ckpt-4")
    new_hp, path, actions = intervene.begin(hp, run, "g_lr=1.0e-5,freeze=d,reset_adam=both", chosen)
    assert path == chosen and actions == {"reset_adam": "both"}
    assert (new_hp.train.g_lr, new_hp.stability.freeze) == (1e-5, "d")
    # Later checkpoints moved (not deleted); the run's own list ends at the chosen step.
    assert sorted(os.path.basename(p) for p in tf.io.gfile.glob(os.path.join(run, "abandoned", "0", "*.index"))) \
        == ["ckpt-6.index", "ckpt-8.index"]
    assert tf.train.latest_checkpoint(run).endswith("ckpt-4")
    (entry,) = intervene.history(run)
    assert entry["step"] == 4 and entry["changes"] == {"train.g_lr": [hp.train.g_lr, 1e-5],
                                                       "stability.freeze": ["none", "d"]}
    # A plain resume replays the record on top of --hparams: same as the rewritten hparams.yaml.
    assert intervene.replay(hp, run).to_dict() == new_hp.to_dict()
    for bad in ("g_lr", "warp=9", "freeze=both", "reset_adam=x", "g_lr=fast"):
        with pytest.raises(UserError):
            intervene.parse(bad)
    with pytest.raises(UserError, match="--checkpoint"):
        intervene.begin(hp, run, "g_lr=1.0e-5", os.path.join(run, "ckpt-99"))
