"""The step's extension points (d_inputs, penalty terms, latent sampler, post-step hooks) and the
checkpoint format (object names; a checkpoint written the way the previous trainer wrote it restores)."""

import numpy as np
import pytest
import tensorflow as tf

from conftest import mirrored_strategy
from tf_biggan import seeds
from tf_biggan.config import load_hparams
from tf_biggan.models.variables_checkpoint import variables_checkpoint
from tf_biggan.training.checkpoints import CHECKPOINT_OBJECTS
from tf_biggan.training.step import CALLS, INLINE, SHARED, LatentSampler, PenaltyTerm, StepParts, UpdateWays, update_ways
from tf_biggan.training.trainer import GANTrainer

# This module's fixtures are built once: all its tests run on one xdist worker (CI: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("training_step")

TINY = "model.ch=4,train.batch_size=8,train.disc_steps=2,train.steps_per_loop=1"


@pytest.fixture(scope="module")
def hooked():
    """A trainer with every hook installed, after one step: (trainer, metrics, what the hooks saw)."""
    hp = load_hparams(None, TINY)
    seen = {"d_inputs": [], "post_step": []}

    def d_inputs(images, step, substep, micro=0):
        seen["d_inputs"].append((substep, tuple(images.shape)))  # at trace time: once per call site
        return images * 1.0

    parts = StepParts(
        d_inputs=[d_inputs],
        d_penalties=[PenaltyTerm("d_probe", lambda ctx: 0.0 * tf.reduce_sum(ctx.real_logits) + 0.25 / ctx.num_replicas)],
        g_penalties=[PenaltyTerm("g_probe", lambda ctx: 0.0 * tf.reduce_sum(ctx.x_fake) + 0.5)],
        post_step=[lambda step: seen["post_step"].append("traced")])
    trainer = GANTrainer(hp, verbose=False, parts=parts)
    metrics = trainer.train_steps(1)
    return trainer, metrics, seen


def test_hooks_see_every_d_input_and_penalties_are_logged(hooked):
    trainer, metrics, seen = hooked
    # D steps see [real; fake] (2 x 8), the G step sees the fakes (8); substeps 0, 1 are D steps.
    assert seen["d_inputs"] == [(0, (16, 16, 16, 3)), (1, (16, 16, 16, 3)), (2, (8, 16, 16, 3))]
    assert metrics["d_probe"] == pytest.approx(0.25) and metrics["g_probe"] == pytest.approx(0.5)
    assert metrics["ortho_reg"] > 0 and seen["post_step"] == ["traced"]
    assert set(trainer.train_step.metric_names) == set(metrics)
    # A d_inputs part reads the substep as a Python number: the D steps are traced one by one.
    assert trainer.train_step.ways == UpdateWays(d=INLINE, g=INLINE)
    assert trainer.train_step._shared_d_update is None


def test_d_steps_share_one_trace_and_give_the_same_weights(hooked):
    """One device, no D part: the disc_steps D steps call ONE traced function (SHARED in step.py);
    a step gives the weights and Adam moments of the unrolled step bit for bit. The unrolled step is
    the hooked trainer's (its d_inputs part forces one trace per D step): its probes add constants
    to the losses and exact zeros to the gradients, so its weights are the plain step's."""
    hp = load_hparams(None, TINY)
    unrolled = hooked[0]
    shared = GANTrainer(hp, verbose=False)
    shared.train_steps(1)
    assert shared.train_step.ways == UpdateWays(d=SHARED, g=INLINE)
    assert shared.train_step._shared_d_update.experimental_get_tracing_count() == 1
    assert unrolled.train_step._shared_d_update is None
    variables = lambda t: t.g.weights + t.d.weights + t.ema_g.weights + t.g_opt.variables + t.d_opt.variables  # noqa: E731
    for a, b in zip(variables(shared), variables(unrolled)):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    # Several replicas: MirroredStrategy's merge_call refuses a nested function.
    assert GANTrainer(hp, strategy=mirrored_strategy(2), verbose=False).train_step.ways.d == INLINE


def test_update_ways_follow_the_table():
    """step.py's table, row by row: the strategy, a D part, accumulation, jit_compile, a G penalty."""
    def cfg(disc_steps=2, kd=1, kg=1):
        return load_hparams(None, f"train.disc_steps={disc_steps},train.d_accumulations={kd},"
                                  f"train.g_accumulations={kg}").train

    plain, d_part = StepParts(), StepParts(d_dropout_key=lambda step, substep, micro=0: None)
    g_penalty = StepParts(g_penalties=[PenaltyTerm("g", lambda ctx: 0.0)])
    assert update_ways(cfg(), plain, True, False) == UpdateWays(SHARED, INLINE)
    assert update_ways(cfg(disc_steps=1), plain, True, False) == UpdateWays(INLINE, INLINE)
    assert update_ways(cfg(kd=2, kg=2), plain, True, False) == UpdateWays(CALLS, CALLS)
    assert update_ways(cfg(kd=2), plain, True, False) == UpdateWays(CALLS, INLINE)
    assert update_ways(cfg(kg=2), plain, True, False) == UpdateWays(SHARED, CALLS)
    assert update_ways(cfg(kd=2, kg=2), plain, True, True) == UpdateWays(INLINE, INLINE)  # jit_compile
    assert update_ways(cfg(kd=2, kg=2), g_penalty, True, False) == UpdateWays(INLINE, INLINE)
    for kd in (1, 2):
        # MirroredStrategy and the others, or a D part: INLINE throughout
        assert update_ways(cfg(kd=kd, kg=kd), plain, False, False) == UpdateWays(INLINE, INLINE)
        assert update_ways(cfg(kd=kd, kg=kd), d_part, True, False) == UpdateWays(INLINE, INLINE)


def test_strategies_that_run_the_replica_step_in_the_callers_graph():
    """OneDeviceStrategy and the default strategy, also inside the default's scope; not MirroredStrategy,
    even on one device (its replica threads refuse a merge_call from a nested function)."""
    from tf_biggan.training.step import runs_in_caller_graph

    default = tf.distribute.get_strategy()
    assert runs_in_caller_graph(default) and runs_in_caller_graph(tf.distribute.OneDeviceStrategy("/cpu:0"))
    with default.scope():
        assert runs_in_caller_graph(default)
    one = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert not runs_in_caller_graph(one) and not runs_in_caller_graph(mirrored_strategy(2))
    with one.scope():
        assert not runs_in_caller_graph(one)


def test_latent_sampler_slices_the_global_batch_from_seed_streams():
    sampler = LatentSampler(dim_z=6, num_classes=10, global_batch=8, num_replicas=2, disc_steps=2, seed=3)
    counter = 5 * 3 + 1  # step 5, substep 1, disc_steps + 1 draws per step
    z = tf.random.stateless_normal((8, 6), seed=seeds.key("train_z", 3, counter))
    y = tf.random.stateless_uniform((8,), seed=seeds.key("train_y", 3, counter), maxval=10, dtype=tf.int32)
    strategy = mirrored_strategy(2)
    per_replica = strategy.run(tf.function(lambda: sampler(tf.constant(5, tf.int64), 1)))
    got_z = tf.concat(strategy.experimental_local_results(per_replica[0]), 0)
    got_y = tf.concat(strategy.experimental_local_results(per_replica[1]), 0)
    np.testing.assert_array_equal(got_z.numpy(), z.numpy())
    np.testing.assert_array_equal(got_y.numpy(), y.numpy())
    assert len(set(np.round(z.numpy()[:, 0], 6))) == 8  # the two replicas' halves differ


def test_checkpoint_names_and_a_previous_layout_checkpoint_restores(hooked, tmp_path):
    trainer, _, _ = hooked
    # Written the way the previous trainer (GANTrainer before the step/loop split) built its checkpoint.
    old = tf.train.Checkpoint(generator=variables_checkpoint(trainer.g), discriminator=variables_checkpoint(trainer.d),
                              ema_generator=variables_checkpoint(trainer.ema_g), g_optimizer=trainer.g_opt,
                              d_optimizer=trainer.d_opt, step=trainer.step)
    path = tf.train.CheckpointManager(old, str(tmp_path), max_to_keep=1).save(checkpoint_number=1)
    top = {name.split("/")[0] for name, _ in tf.train.list_variables(path)} - {"_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter"}
    assert top == set(CHECKPOINT_OBJECTS)
    names = {name for name, _ in tf.train.list_variables(path)}
    # Every variable by its path in the model (BN statistics and SN u too); tf escapes "." as "..".
    expected = {"ema_generator/" + v.path[len("ema_generator/"):].replace("/", ".").replace(".", "..")
                + "/.ATTRIBUTES/VARIABLE_VALUE" for v in trainer.ema_g.variables}
    assert expected == {n for n in names if n.startswith("ema_generator/")}

    fresh = GANTrainer(load_hparams(None, TINY), model_dir=str(tmp_path), verbose=False)
    assert fresh.restore() == path  # the latest of the run; assert_consumed inside
    assert int(fresh.step.numpy()) == 1
    for a, b in [(trainer.g, fresh.g), (trainer.d, fresh.d), (trainer.ema_g, fresh.ema_g)]:
        for va, vb in zip(a.variables, b.variables):
            np.testing.assert_array_equal(va.numpy(), vb.numpy(), err_msg=va.path)
    for va, vb in zip(trainer.g_opt.variables + trainer.d_opt.variables, fresh.g_opt.variables + fresh.d_opt.variables):
        np.testing.assert_array_equal(va.numpy(), vb.numpy())
    # And the new code writes the same names.
    new_path = fresh.save()
    assert {n for n, _ in tf.train.list_variables(new_path)} == names


def test_sample_grid_uses_the_small_training_budget_not_eval_standing_stats(hooked, monkeypatch):
    """Issue 14: the monitoring grid takes train.sample_stats_passes x _batch passes, never the
    Appendix C.1 budget of eval.standing_stats_* (100 x 256 at ImageNet scale)."""
    import dataclasses

    from tf_biggan.sampling import standing_stats
    from tf_biggan.training.monitor import SampleGrid

    trainer, _, _ = hooked
    real_accumulate, calls = standing_stats.accumulate_standing_stats, []

    def spy(generator, num_passes=100, batch_size=256, latents=None, **kw):
        calls.append((num_passes, tuple(latents(tf.constant(0, tf.int64))[0].shape)))
        return real_accumulate(generator, num_passes=num_passes, batch_size=batch_size, latents=latents, **kw)

    monkeypatch.setattr(standing_stats, "accumulate_standing_stats", spy)
    hp = trainer.hp
    hp = dataclasses.replace(hp, eval=dataclasses.replace(hp.eval, standing_stats_passes=100, standing_stats_batch=256),
                             train=dataclasses.replace(hp.train, sample_stats_passes=3, sample_stats_batch=12))
    grid = SampleGrid(trainer.ema_g, hp, tf.distribute.get_strategy())()
    assert calls == [(3, (12, hp.model.dim_z))]
    assert grid.dtype == np.uint8 and grid.std() > 5
    # 0 passes: EMA-G's own BN statistics are used as they are.
    own = [v.numpy().copy() for v in trainer.ema_g.non_trainable_variables]
    hp0 = dataclasses.replace(hp, train=dataclasses.replace(hp.train, sample_stats_passes=0))
    SampleGrid(trainer.ema_g, hp0, tf.distribute.get_strategy())()
    assert len(calls) == 1
    for before, v in zip(own, trainer.ema_g.non_trainable_variables):
        np.testing.assert_array_equal(before, v.numpy())
