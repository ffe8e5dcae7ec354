"""ADA's validation heuristic r_v (augment.heuristic=rv, seed 003 Section 3): the TF controller against
its numpy reference, the direction of p, invariance to an offset of D's outputs, replicas, held-out
data and its errors, and the hparams (through the real CLI: tests/test_augment_train.py)."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import mirrored_strategy
from tf_biggan.augment.controller import HELDOUT, RV_MIN_SEPARATION, AugmentState, ada_update, rv_statistic
from tf_biggan.augment.heldout import HeldOut, heldout_images
from tf_biggan.config import AugmentConfig, HParamsError, load_hparams
from tf_biggan.data.digits import first_per_class, load_digits_split
from tf_biggan.errors import UserError


def rv_cfg(**kw):
    return AugmentConfig(**{**dict(kind="ada", heuristic="rv", interval=2, speed_kimg=0.05, target=0.6,
                                   p_max=0.8), **kw})


def run_interval(state, logits):
    """Feeds (train, held-out, fake) logits of each step (one device) and ends each step."""
    for real, heldout, fake in logits:
        state.accumulate_rv(tf.constant(real), tf.constant(fake), tf.constant(heldout))
        state.update(None, len(real))


def test_rv_controller_matches_the_numpy_reference():
    cfg = rv_cfg(interval=3, speed_kimg=0.1, target=0.4, p_max=0.7)
    batch = 8
    state = AugmentState(cfg, seed=0, global_batch=batch)
    rng = np.random.default_rng(3)
    p, sums, moved = 0.0, np.zeros(3), set()
    for i in range(45):
        # The level of all three swings from step to step; the gaps vary, some intervals without evidence.
        level, gap, sep = rng.normal(0, 2), rng.normal(0.3, 0.6), rng.normal(0.8, 1.0)
        real = level + rng.normal(0, 0.5, batch)
        heldout = level - gap + rng.normal(0, 0.5, batch)
        fake = level - sep + rng.normal(0, 0.5, batch)
        run_interval(state, [(real.astype(np.float32), heldout.astype(np.float32), fake.astype(np.float32))])
        sums += [np.float32(real).sum(), np.float32(heldout).sum(), np.float32(fake).sum()]
        if (i + 1) % 3 == 0:
            r_v, evidence = rv_statistic(*sums, 3 * batch)
            new_p = ada_update(p, 0.0, 3 * batch, cfg, rv_sums=sums, scored=3 * batch)
            moved.add((evidence, np.sign(new_p - p)))
            p, sums = new_p, np.zeros(3)
            assert float(state.r_v.numpy()) == pytest.approx(r_v, rel=1e-4, abs=1e-5)
        assert float(state.p.numpy()) == pytest.approx(p, abs=1e-6)
    assert (True, 1.0) in moved and (True, -1.0) in moved  # both directions seen
    assert int(state.rv_no_evidence.numpy()) >= 1


def test_p_rises_when_train_reals_score_above_held_out_and_falls_otherwise():
    state = AugmentState(rv_cfg(), seed=0, global_batch=4)
    fake = np.full(4, -1.0, np.float32)
    overfit = (np.full(4, 1.0, np.float32), np.full(4, -0.5, np.float32), fake)  # r_v = 1.5 / 2 = 0.75
    for _ in range(4):
        run_interval(state, [overfit] * 2)
    step = 2 * 4 / 50.0
    assert float(state.r_v.numpy()) == pytest.approx(0.75)
    assert float(state.p.numpy()) == pytest.approx(4 * step)
    generalises = (np.full(4, 1.0, np.float32), np.full(4, 0.9, np.float32), fake)  # r_v = 0.05
    run_interval(state, [generalises] * 2)
    assert float(state.r_v.numpy()) == pytest.approx(0.05)
    assert float(state.p.numpy()) == pytest.approx(3 * step)
    # No evidence: D scores fakes as high as its training reals. Train >> held-out, yet p must not go up.
    no_evidence = (np.full(4, 1.0, np.float32), np.full(4, -3.0, np.float32), np.full(4, 1.0, np.float32))
    run_interval(state, [no_evidence] * 2)
    assert float(state.r_v.numpy()) == 0.0 and int(state.rv_no_evidence.numpy()) == 1
    assert float(state.p.numpy()) == pytest.approx(2 * step)
    inverted = (np.full(4, -1.0, np.float32), np.full(4, -3.0, np.float32), np.full(4, 0.0, np.float32))
    run_interval(state, [inverted] * 2)  # D(train) < D(G): no evidence either
    assert float(state.p.numpy()) == pytest.approx(1 * step)
    assert rv_statistic(1.0, -3.0, 1.0 - 0.5 * RV_MIN_SEPARATION, 1.0) == (0.0, False)


@pytest.mark.parametrize("offset", [-2.5, 0.7, 4.0])
def test_r_v_is_invariant_to_an_offset_of_d_while_r_t_is_not(offset):
    """The property that motivates r_v under the hinge loss: D's level swings, the gaps stay."""
    rng = np.random.default_rng(1)
    logits = [tuple((m + rng.normal(0, 0.4, 6)).astype(np.float32) for m in (0.2, -0.1, -0.9)) for _ in range(2)]
    values = []
    for shift in (0.0, offset):
        state = AugmentState(rv_cfg(), seed=0, global_batch=6)
        for real, heldout, fake in logits:
            real, heldout, fake = real + shift, heldout + shift, fake + shift
            state.accumulate(tf.constant(real))
            state.accumulate_rv(tf.constant(real), tf.constant(fake), tf.constant(heldout))
            state.update(None, 6)
        values.append((float(state.r_v.numpy()), float(state.r_t.numpy()), float(state.p.numpy())))
    (rv0, rt0, p0), (rv1, rt1, p1) = values
    assert rv1 == pytest.approx(rv0, rel=1e-5) and p1 == p0
    assert rt1 != rt0  # the sign heuristic reads the level


def test_rv_statistic_and_held_out_batch_under_two_replicas_equal_one_device():
    """The held-out batch is a slice of one global draw (augmented with replica-independent draws),
    and the sums behind r_v are all-reduced: 2 replicas give one device's r_v and p."""
    batch, step = 8, tf.constant(5, tf.int64)
    cfg = rv_cfg(interval=1, speed_kimg=0.004, target=0.3, pipeline="blit")
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (12, 8, 8, 3)).astype(np.uint8)
    labels = np.arange(12, dtype=np.int32) % 10
    logits = [rng.normal(m, 0.5, (batch, 1)).astype(np.float32) for m in (0.5, 0.1, -0.6)]

    single = AugmentState(cfg, seed=7, global_batch=batch)
    single.p.assign(0.5)
    heldout = HeldOut(images, labels, seed=7, global_batch=batch)
    x, y = heldout.batch(step, batch)
    expected_x = single.augment_images(x, step, 0, HELDOUT, local_batch=batch, replica=0).numpy()
    np.testing.assert_array_equal(y.numpy(), labels[heldout.indices(step).numpy()])
    single.accumulate_rv(logits[0], logits[2], logits[1])
    single.update(None, batch)

    strategy = mirrored_strategy(2)
    with strategy.scope():
        state = AugmentState(cfg, seed=7, global_batch=batch)
        held_out = HeldOut(images, labels, seed=7, global_batch=batch)
    state.p.assign(0.5)
    half = batch // 2
    split = lambda a: strategy.experimental_distribute_values_from_function(  # noqa: E731
        lambda ctx: a[ctx.replica_id_in_sync_group * half:(ctx.replica_id_in_sync_group + 1) * half])

    def replica(real, heldout, fake):
        r = tf.distribute.get_replica_context().replica_id_in_sync_group
        hx, hy = held_out.batch(step, half, r)
        share = state.accumulate_rv(real, fake, heldout)
        return state.augment_images(hx, step, 0, HELDOUT, local_batch=half, replica=r), hy, share

    @tf.function
    def run(real, heldout, fake):
        out = strategy.run(replica, args=(real, heldout, fake))
        state.update(None, batch)
        return out
    hx, hy, share = run(*[split(a) for a in logits])
    local = strategy.experimental_local_results
    np.testing.assert_allclose(np.concatenate([t.numpy() for t in local(hx)]), expected_x, atol=2e-5)
    np.testing.assert_array_equal(np.concatenate([t.numpy() for t in local(hy)]), y.numpy())
    assert sum(float(t.numpy()) for t in local(share)) == pytest.approx(float(logits[0].mean() - logits[1].mean()),
                                                                         abs=1e-5)
    assert [float(v.numpy()) for v in local(state.r_v)] == [pytest.approx(float(single.r_v.numpy()), rel=1e-5)] * 2
    assert [float(v.numpy()) for v in local(state.p)] == [pytest.approx(float(single.p.numpy()))] * 2


def test_held_out_digits_are_the_training_digits_beyond_max_per_class_and_errors_name_the_key():
    hp = load_hparams(None, "data.max_per_class=20,augment.kind=ada,augment.heuristic=rv,"
                            "augment.validation_examples=300")
    images, labels = heldout_images(hp)
    x, y = load_digits_split("train")
    beyond = ~first_per_class(y, 20)
    assert images.dtype == np.uint8 and images.shape == (300, 16, 16, 3)
    np.testing.assert_array_equal(labels, y[beyond][:300])
    # uint8 of the digits' pixel scale (round(v * 255)), replicated 2x2 to 16 px and to RGB
    np.testing.assert_array_equal(images[:, ::2, ::2, 0], np.round(x[beyond][:300] * 255).astype(np.uint8))
    with pytest.raises(UserError, match="augment.validation_pattern"):
        heldout_images(load_hparams(None, "augment.kind=ada,augment.heuristic=rv"))  # all digits train
    with pytest.raises(UserError, match="augment.validation_pattern"):
        heldout_images(load_hparams(None, "augment.kind=ada,augment.heuristic=rv,"
                                          "augment.validation_pattern=/nonexistent/val-*"))
    for bad, key in (("augment.heuristic=rx", "augment.heuristic"),
                     ("augment.heuristic=rv,augment.target=-0.2", "augment.target"),
                     ("augment.validation_examples=0", "augment.validation_examples")):
        with pytest.raises(HParamsError, match=key):
            load_hparams(None, bad)


@pytest.mark.slow  # two tiny trainers traced (~15 s idle); the statistic's parts are the fast tests above
def test_held_out_batch_in_the_d_call_is_outside_the_loss():
    """step.d_extra's images join the D step's D call but not its loss: D's update equals a run
    without them, and the D penalties see D's outputs on them (DContext.extra_logits)."""
    from tf_biggan.training.step import PenaltyTerm, StepParts
    from tf_biggan.training.trainer import GANTrainer

    hp = load_hparams(None, "model.ch=4,train.batch_size=4,train.steps_per_loop=1")
    extra_x = tf.random.stateless_uniform((4, 16, 16, 3), (1, 2), -1, 1)
    extra_y = tf.constant([3, 1, 4, 1])
    weights = []
    extra = StepParts(d_extra=lambda s, k: (extra_x, extra_y),
                      d_penalties=[PenaltyTerm("extra", lambda ctx: tf.constant(float(ctx.extra_logits.shape[0])))])
    for with_extra in (False, True):
        trainer = GANTrainer(hp, verbose=False, parts=extra if with_extra else None)
        before = [v.numpy() for v in trainer.d.trainable_variables]
        metrics = trainer.train_steps(1)
        weights.append([v.numpy() for v in trainer.d.trainable_variables])
    assert metrics["extra"] == 4.0  # the penalty saw one output per extra image
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a, b) for a, b in zip(before, weights[1]))
