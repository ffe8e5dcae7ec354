"""Gradient accumulation (train.d_accumulations / train.g_accumulations; training/step.py).

With k accumulations an update applies the mean of k micro-batch gradients, each micro-batch with
its own real batch and latents and its own BatchNorm statistics (BigGAN-PyTorch's train_fns.py):
checked against the gradients computed one by one, eagerly, by a tape written here. Two replicas
give one device's step with one optimiser apply (one all-reduce) per update, and a bad value is a
one-line error. A killed run with accumulation resumes on the same trajectory: tests/test_train.py's
kill-and-resume test runs with 2 D steps of 2 micro-batches.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import mirrored_strategy
from tf_biggan import seeds
from tf_biggan.config import load_hparams
from tf_biggan.data.pipeline import make_dataset
from tf_biggan.layers.ortho_reg import ortho_reg
from tf_biggan.training.trainer import GANTrainer

pytestmark = pytest.mark.xdist_group("accumulation")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Adam divides a gradient by its own size: a weight whose gradient is mathematically zero (a conv
# bias before BatchNorm) moves by +-lr on float noise; a larger epsilon keeps comparisons about
# real gradients (as tests/test_train.py does).
TINY = "model.ch=4,train.batch_size=8,train.steps_per_loop=1,train.adam_epsilon=1.0e-3"


def tiny_hp(extra: str):
    return load_hparams(None, f"{TINY},{extra}")


class Recorder:
    """Stands in for an optimiser in the step: counts `apply_gradients` calls at trace time (each is
    one all-reduce of the gradients under a strategy) and, when `variables` is given (one device),
    keeps the gradients of every update in variables before applying them."""

    def __init__(self, optimizer, variables=None, updates: int = 0):
        self._optimizer, self.calls = optimizer, 0
        self.kept = ([[tf.Variable(tf.zeros_like(v)) for v in variables] for _ in range(updates)]
                     if variables is not None else None)

    def apply_gradients(self, grads_and_vars):
        grads_and_vars = list(grads_and_vars)
        if self.kept is not None:
            for keep, (grad, _) in zip(self.kept[self.calls], grads_and_vars):
                keep.assign(tf.convert_to_tensor(grad))
        self.calls += 1
        return self._optimizer.apply_gradients(grads_and_vars)

    def __getattr__(self, name):
        return getattr(self._optimizer, name)


def _latents(hp, step: int, substep: int, micro: int):
    """(z, y) of a pass, from the seed streams directly: counter step x (disc_steps + 1) + substep,
    the key folded with the micro-batch index beyond micro-batch 0."""
    counter = step * (hp.train.disc_steps + 1) + substep
    keys = [seeds.key(name, hp.train.seed, counter) for name in ("train_z", "train_y")]
    if micro:
        keys = [tf.random.experimental.stateless_fold_in(k, micro) for k in keys]
    z = tf.random.stateless_normal((hp.train.batch_size, hp.model.dim_z), seed=keys[0])
    y = tf.random.stateless_uniform((hp.train.batch_size,), seed=keys[1], maxval=hp.data.num_classes, dtype=tf.int32)
    return z, y


def _mean(grads_per_micro):
    return [tf.add_n([tf.convert_to_tensor(g[i]) for g in grads_per_micro]) / len(grads_per_micro)
            for i in range(len(grads_per_micro[0]))]


def _assert_one_trace_per_network(trainer, expected_calls):
    """On one device without hooks, every micro-batch of D (of G) is a call of ONE traced function
    marked `_noinline`, which the runtime runs as a call: it starts after the barrier before it and
    frees its activations before the next, and the step's graph holds one micro-batch per network
    (the memory of one micro-batch: benchmarks/bench_accumulation.py)."""
    ts = trainer.train_step
    assert [f.experimental_get_tracing_count() for f in ts._micro_fns] == [1, 1]
    graph = ts._loop_fn.get_concrete_function(trainer.iterator, tf.constant(1, tf.int64)).graph
    functions = graph._functions  # the traced step's function library: name -> function
    body = next(f for name, f in functions.items() if name.startswith("while_body"))
    called = [op.get_attr("f").name for op in body.graph.get_operations()
              if op.type in ("PartitionedCall", "StatefulPartitionedCall")]
    for micro, calls in expected_calls.items():
        names = {name for name in called if f"_{micro}_" in name}
        assert len(names) == 1 and called.count(names.pop()) == calls, (micro, called)
    assert all(f.definition.attr["_noinline"].b for name, f in functions.items() if "_micro_" in name)


def test_update_applies_the_mean_of_the_micro_batch_gradients():
    """2 D steps x 2 micro-batches, then 3 G micro-batches: each update's gradient equals the mean of
    its micro-batches' gradients computed one at a time (hinge losses written out here, BN in
    training mode on each micro-batch, D micro-batch m of D step s on real batch s * k + m)."""
    kd, kg = 2, 3
    hp = tiny_hp(f"train.disc_steps=2,train.d_accumulations={kd},train.g_accumulations={kg}")
    stepped = GANTrainer(hp, verbose=False)
    reference = GANTrainer(hp, verbose=False)  # the same initial weights (train.seed)
    ts = stepped.train_step
    ts.d_opt = d_rec = Recorder(ts.d_opt, stepped.d.trainable_variables, updates=2)
    ts.g_opt = g_rec = Recorder(ts.g_opt, stepped.g.trainable_variables, updates=1)
    metrics = stepped.train_steps(1)
    assert (d_rec.calls, g_rec.calls) == (2, 1)  # one apply (all-reduce) per update, not per micro-batch
    _assert_one_trace_per_network(stepped, {"d_micro": 2 * kd, "g_micro": kg})

    g, d = reference.g, reference.d
    reals = iter(make_dataset(hp.data, hp.model.resolution, hp.train.batch_size))
    for s in range(2):
        per_micro, losses = [], []
        for m in range(kd):
            x, y = next(reals)
            z, y_fake = _latents(hp, 0, s, m)
            x_fake = g((z, y_fake), training=True)
            with tf.GradientTape() as tape:
                logits = d((tf.concat([x, x_fake], 0), tf.concat([y, y_fake], 0)), training=True)
                loss = (tf.reduce_mean(tf.nn.relu(1.0 - logits[:8])) + tf.reduce_mean(tf.nn.relu(1.0 + logits[8:])))
            per_micro.append(tape.gradient(loss, d.trainable_variables))
            losses.append(float(loss))
        expected = _mean(per_micro)
        for want, got, v in zip(expected, d_rec.kept[s], d.trainable_variables):
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-4, atol=2e-6, err_msg=f"D step {s}: {v.path}")
        # Not vacuous: the mean differs from one micro-batch's gradient.
        assert not all(np.allclose(a.numpy(), tf.convert_to_tensor(b).numpy(), rtol=1e-2)
                       for a, b in zip(expected, per_micro[0]))
        reference.d_opt.apply_gradients(zip(expected, d.trainable_variables))
    assert metrics["d_loss"] == pytest.approx(np.mean(losses), rel=1e-4)  # the last D update's mean

    per_micro, losses = [], []
    for m in range(kg):
        z, y = _latents(hp, 0, 2, m)
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(d((g((z, y), training=True), y), training=True))
            total = loss + ortho_reg(g.ortho_reg_kernels(), hp.model.ortho_reg)
        per_micro.append(tape.gradient(total, g.trainable_variables))
        losses.append(float(loss))
    for want, got, v in zip(_mean(per_micro), g_rec.kept[0], g.trainable_variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-4, atol=2e-6, err_msg=f"G: {v.path}")
    assert metrics["g_loss"] == pytest.approx(np.mean(losses), rel=1e-4)
    # BN's moving statistics saw every micro-batch of every pass (G ran 2 x 2 + 3 times in both).
    for a, b in zip(stepped.g.non_trainable_variables, g.non_trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.path)


def test_two_replicas_equal_one_device_with_one_all_reduce_per_update():
    """2 replicas x 2 micro-batches == one device x 2 on the same global micro-batches, with ADA
    augmenting every micro-batch (its own draws; p set to 0.5) and counting all their reals. The
    blit transforms only: random per image like the others, and a third of the default pipeline's
    trace (the pipelines themselves under two replicas: tests/test_augment.py).

    This is also the GAN step's two-replica check: global-batch loss scaling, cross-replica BN and
    sliced global latents. Under MirroredStrategy every D update runs INLINE (training/step.py's
    table), with or without accumulation and augmentation, so this one configuration covers the
    plain step's path on two replicas too."""
    hp = tiny_hp("train.disc_steps=1,train.d_accumulations=2,train.g_accumulations=2,augment.kind=ada,"
                 "augment.pipeline=blit,augment.interval=100")
    runs = []
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy(2)):
        trainer = GANTrainer(hp, strategy, verbose=False)
        trainer.augment.p.assign(0.5)
        ts = trainer.train_step
        ts.d_opt, ts.g_opt = Recorder(ts.d_opt), Recorder(ts.g_opt)
        before = {v.path: v.numpy() for v in trainer.g.weights + trainer.d.weights}
        metrics = trainer.train_steps(1)
        replicas = strategy.num_replicas_in_sync
        # The replica function is traced once per replica: one apply per update and replica.
        assert (ts.d_opt.calls, ts.g_opt.calls) == (replicas, replicas)
        assert ts._micro_fns is None  # ADA's hooks read the micro-batch (and merge_call): unrolled
        assert float(trainer.augment.count.numpy()) == 8 * 1 * 2  # batch x D steps x micro-batches
        assert abs(float(trainer.augment.sign_sum.numpy())) <= 16
        # The step changed G and D (the comparison below is not vacuous).
        for model in (trainer.g, trainer.d):
            assert any(not np.allclose(before[v.path], v.numpy()) for v in model.trainable_weights), model.name
        weights = [v.numpy() for v in trainer.g.weights + trainer.d.weights + trainer.ema_g.weights]
        # The sample grid runs under the strategy: standing statistics pooled over the replicas and
        # each replica's share of the fixed latents give the one-device grid.
        runs.append((weights, metrics, trainer.sample_grid()))
    (w1, m1, grid1), (w2, m2, grid2) = runs
    for a, b in zip(w1, w2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for k in m1:
        assert m1[k] == pytest.approx(m2[k], rel=1e-4, abs=1e-5), k
    assert grid1.shape == grid2.shape and grid1.dtype == np.uint8
    assert np.abs(grid1.astype(int) - grid2.astype(int)).max() <= 1
    assert grid1.std() > 5  # not a blank picture


def cli(*args, timeout=600, wait=True):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "tf_biggan.main", *args]
    if not wait:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("override, key", [("train.d_accumulations=0", "train.d_accumulations"),
                                           ("train.g_accumulations=-2", "train.g_accumulations")])
def test_bad_accumulations_are_one_line_errors(tmp_path, override, key):
    proc = cli("--mode=train", f"--model_dir={tmp_path / 'run'}", f"--hparams_overrides={override}", timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "must be >= 1" in lines[0], proc.stderr
    assert not os.path.exists(tmp_path / "run")


CLI_RUN = ("model.ch=4,train.batch_size=8,train.disc_steps=1,train.d_accumulations=2,train.g_accumulations=2,"
           "train.steps_per_loop=1,train.log_every=1,train.save_every=1,train.keep_checkpoints=20,"
           "train.sv_every=100,train.sample_every=100,train.sample_columns=2,train.sample_stats_passes=1,"
           "train.sample_stats_batch=8,train.train_steps=8")


def _final_weights(model_dir):
    path = tf.train.latest_checkpoint(model_dir)
    return path, {name: tf.train.load_variable(path, name) for name, _ in tf.train.list_variables(path)
                  if name.startswith(("generator/", "discriminator/", "ema_generator/"))}


@pytest.mark.slow
def test_kill_9_and_resume_through_the_cli(tmp_path):
    """`--mode=train` with accumulation killed with SIGKILL after a checkpoint, rerun: the final
    weights are the uninterrupted run's."""
    straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
    assert cli("--mode=train", f"--model_dir={straight}", f"--hparams_overrides={CLI_RUN}").returncode == 0
    proc = cli("--mode=train", f"--model_dir={killed}", f"--hparams_overrides={CLI_RUN}", wait=False)
    deadline = time.time() + 600
    while not tf.io.gfile.glob(os.path.join(killed, "ckpt-3.index")) and proc.poll() is None:
        assert time.time() < deadline
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    died_at = tf.train.latest_checkpoint(killed)
    assert died_at and not died_at.endswith("ckpt-8"), died_at  # killed mid-run
    rerun = cli("--mode=train", f"--model_dir={killed}", f"--hparams_overrides={CLI_RUN}")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from" in rerun.stdout and "x 2 (D) / 2 (G) accumulated micro-batches" in rerun.stdout
    (path_a, a), (path_b, b) = _final_weights(straight), _final_weights(killed)
    assert path_a.endswith("ckpt-8") and path_b.endswith("ckpt-8") and a.keys() == b.keys() and a
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.slow
def test_jit_compile_with_accumulation_is_the_same_step():
    """train.jit_compile compiles the replica update, micro-batch loop included, with XLA: the same
    weights within float rounding (the latents are drawn outside XLA)."""
    extra = "train.disc_steps=1,train.d_accumulations=2,train.g_accumulations=2"
    plain = GANTrainer(tiny_hp(extra), verbose=False)
    compiled = GANTrainer(tiny_hp(extra + ",train.jit_compile=true"), verbose=False)
    before = [v.numpy() for v in plain.g.trainable_weights]
    m1, m2 = plain.train_steps(2), compiled.train_steps(2)
    # The plain step calls one trace per network; XLA compiles the unrolled update.
    assert plain.train_step._micro_fns is not None and compiled.train_step._micro_fns is None
    assert any(not np.allclose(b, v.numpy()) for b, v in zip(before, plain.g.trainable_weights))
    for a, b in zip(plain.g.weights + plain.d.weights, compiled.g.weights + compiled.d.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-4, err_msg=a.path)
    for k in m1:
        assert m1[k] == pytest.approx(m2[k], rel=1e-3, abs=1e-4), k


@pytest.mark.slow
def test_bfloat16_with_accumulation_trains_on_two_replicas():
    """Mixed bf16 (model.dtype): float32 gradients of the float32 variables are summed over the
    micro-batches; finite losses, and the step moves the weights."""
    hp = tiny_hp("model.dtype=mixed_bfloat16,train.disc_steps=1,train.d_accumulations=2,train.g_accumulations=2")
    trainer = GANTrainer(hp, mirrored_strategy(2), verbose=False)
    before = [v.numpy().copy() for v in trainer.g.trainable_weights + trainer.d.trainable_weights]
    metrics = trainer.train_steps(1)
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert trainer.g.compute_dtype == "bfloat16"
    assert all(v.dtype == tf.float32 for v in trainer.g.weights + trainer.d.weights)
    after = trainer.g.trainable_weights + trainer.d.trainable_weights
    assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before, after) if "kernel" in v.path)


def test_the_bs256x8_configuration_is_the_paper_recipe_at_batch_256_x_8():
    """hparams/biggan_128_bs256x8.yaml: effective batch 2,048 (Table 1 row 8) from 256 x 8, and every
    model and optimisation value of hparams/biggan_128.yaml (the paper's)."""
    from dataclasses import asdict

    ours, paper = load_hparams("biggan_128_bs256x8"), load_hparams("biggan_128")
    assert ours.train.batch_size * ours.train.d_accumulations == paper.train.batch_size == 2048
    assert ours.train.batch_size * ours.train.g_accumulations == 2048 and ours.train.batch_size % 8 == 0
    assert asdict(ours.model) == asdict(paper.model)
    differ = {k for k, v in asdict(ours.train).items() if asdict(paper.train)[k] != v}
    assert differ == {"batch_size", "d_accumulations", "g_accumulations", "steps_per_loop", "sample_every",
                      "replay_input"}, differ
