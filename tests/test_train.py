"""The trainer's invariants (paper Section 3 / Appendix C): distribution does not change the step,
the EMA follows its formula, a killed run resumes on the same trajectory, multi-worker runs.

Everything is tiny (ch=4, 16 px, batch 8, a few steps) so the file runs in well under 2 minutes on
2 CPU cores.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import mirrored_strategy
from tf_biggan.config import load_hparams
from tf_biggan.training.ema import EMA
from tf_biggan.errors import UserError
from tf_biggan.layers.spectral_norm import spectral_norm_layers
from tf_biggan.models import Generator
from tf_biggan.requests import TrainRequest
from tf_biggan.training.trainer import GANTrainer, NonFiniteLossError, prepare_model_dir, train_from_request

TINY = ("model.ch=4,train.batch_size=8,train.steps_per_loop=2,train.log_every=2,train.save_every=2,"
        "train.sv_every=2,train.sample_every=100,train.sample_columns=2,eval.standing_stats_passes=2,"
        "eval.standing_stats_batch=20")


def tiny_hp(extra: str = ""):
    return load_hparams(None, ",".join(x for x in (TINY, extra) if x))


def all_weights(trainer):
    out = {}
    for name, model in (("g", trainer.g), ("d", trainer.d), ("ema", trainer.ema_g)):
        for i, v in enumerate(model.weights):
            out[f"{name}{i}:{v.path}"] = np.asarray(v.numpy())
    for name, opt in (("gopt", trainer.g_opt), ("dopt", trainer.d_opt)):
        for i, v in enumerate(opt.variables):
            out[f"{name}{i}"] = np.asarray(v.numpy())
    return out


def assert_weights_close(a, b, rtol=1e-4, atol=1e-5):
    assert len(a) == len(b)
    for (ka, va), (kb, vb) in zip(a.items(), b.items()):
        np.testing.assert_allclose(va, vb, rtol=rtol, atol=atol, err_msg=f"{ka} vs {kb}")


def test_ema_matches_formula():
    hp = tiny_hp()
    g = Generator(hp.model, 10, name="g")
    e = Generator(hp.model, 10, name="e")
    g.build_for_input(2)
    e.build_for_input(2)
    ema = EMA(g, e, decay=0.9, start_step=3)
    ema.update(tf.constant(1))  # before start: a copy (but u: EMA-G's own iteration)
    own_u = {id(layer.u) for layer in spectral_norm_layers(e)}
    for a, b in zip(g.weights, e.weights):
        if id(b) not in own_u:
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    old_e = [v.numpy().copy() for v in e.weights]
    trainable = {id(v) for v in g.trainable_weights}
    rng = np.random.default_rng(0)
    for v in g.weights:
        v.assign(v.numpy() + rng.normal(size=v.shape).astype(np.float32))
    ema.update(tf.constant(3))  # from start on: decay * ema + (1 - decay) * g
    for gv, ev, old in zip(g.weights, e.weights, old_e):
        if id(ev) in own_u:
            continue
        expected = 0.9 * old + 0.1 * gv.numpy() if id(gv) in trainable else gv.numpy()
        np.testing.assert_allclose(ev.numpy(), expected, rtol=1e-6, atol=1e-6)
    # u: one power iteration on EMA-G's own new kernel from its previous u (numpy)
    for layer, old in ((lyr, old_e[[id(w) for w in e.weights].index(id(lyr.u))]) for lyr in spectral_norm_layers(e)):
        w = layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1]).astype(np.float64)
        v = old @ w.T
        v /= max(np.linalg.norm(v), 1e-4)
        u1 = v @ w
        u1 /= max(np.linalg.norm(u1), 1e-4)
        np.testing.assert_allclose(layer.u.numpy(), u1, rtol=1e-4, atol=1e-5)


def _assert_ema_sigma_is_its_own(trainer):
    """After a sample grid, the sigma EMA-G samples with (one iteration from its stored u, as at every
    inference call) is the top singular value of EMA-G's OWN averaged kernels (numpy SVD): its u
    iterates on them every step and settles on them before standing statistics."""
    worst = 0.0
    for layer in spectral_norm_layers(trainer.ema_g):
        svd = np.linalg.svd(layer.kernel.numpy().reshape(-1, layer.kernel.shape[-1]), compute_uv=False)[0]
        worst = max(worst, abs(float(layer.sigma()) - svd))
    assert worst < 1e-3
    # and G's kernels differ from EMA-G's, so this is not G's sigma read twice
    assert any(not np.allclose(a.kernel.numpy(), b.kernel.numpy())
               for a, b in zip(spectral_norm_layers(trainer.g), spectral_norm_layers(trainer.ema_g)))


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    """A run checkpointed at step 2 and killed later resumes to the same weights at step 4, with
    2 D steps of 2 accumulated micro-batches (train.d_accumulations): the input replay skips
    step x disc_steps x d_accumulations batches. The sigma EMA-G samples with is its own kernels'."""
    tf.config.experimental.enable_op_determinism()
    try:
        hp = tiny_hp("train.train_steps=4,train.disc_steps=2,train.d_accumulations=2,train.g_accumulations=2")
        request = TrainRequest(str(tmp_path / "run"))
        prepare_model_dir(hp, request.model_dir)
        # Uninterrupted: fit to step 2 (saves ckpt-2), then 2 more steps that are never saved:
        # the process "dies" after step 4 with only ckpt-2 on disk.
        straight = GANTrainer(hp, model_dir=request.model_dir, verbose=False)
        assert straight.images_per_step == 16  # images/s counts every G micro-batch
        straight.fit(2)
        straight.train_steps(2)
        straight.sample_grid()  # as fit() does at its end: standing stats for EMA-G's BN
        assert tf.train.latest_checkpoint(request.model_dir).endswith("ckpt-2")
        resumed, report = train_from_request(hp, request)  # restores ckpt-2, trains to 4
        assert int(resumed.step.numpy()) == 4 and report["step"] == 4
        assert_weights_close(all_weights(straight), all_weights(resumed), rtol=0, atol=0)
        _assert_ema_sigma_is_its_own(straight)
        with open(os.path.join(request.model_dir, "train_report.json")) as f:
            on_disk = json.load(f)
        assert on_disk["step"] == 4 and on_disk["checkpoint"].endswith("ckpt-4")
        for key in ("images_per_sec", "g_loss", "d_loss"):
            assert np.isfinite(on_disk[key])
        assert os.path.exists(os.path.join(request.model_dir, "samples", "step_00000004.png"))
        with open(os.path.join(request.model_dir, "train", "scalars.jsonl")) as f:
            tags = {json.loads(line)["tag"] for line in f}
        assert {"losses/d_loss", "losses/g_loss", "d_output/d_real", "lr/g", "perf/images_per_sec"} <= tags
        assert any(t.startswith("sv/G/") and t.endswith("sigma2") for t in tags)
        assert any(t.startswith("sv/D/") and t.endswith("sigma0") for t in tags)
        # Resuming with different hparams is a clear error naming the key.
        with pytest.raises(UserError, match="train.g_lr"):
            prepare_model_dir(tiny_hp("train.g_lr=1.0e-3"), request.model_dir)
    finally:
        disable = getattr(tf.config.experimental, "disable_op_determinism", None)
        if disable:
            disable()


def test_non_finite_loss_stops_with_step_and_checkpoint(tmp_path):
    hp = tiny_hp("train.disc_steps=1")

    def nan_data(ctx):
        images = tf.fill((4, 16, 16, 3), float("nan"))
        return tf.data.Dataset.from_tensors((images, tf.zeros((4,), tf.int32))).repeat()

    trainer = GANTrainer(hp, model_dir=str(tmp_path), dataset_fn=nan_data, verbose=False)
    with pytest.raises(NonFiniteLossError, match=r"step 2 .*last good checkpoint: none"):
        trainer.fit(4)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two TF processes joined by gRPC collectives (~33 s of CI): the step runs INLINE under
# MultiWorkerMirroredStrategy as under MirroredStrategy (training/step.py), checked fast on two replicas by
# tests/test_accumulation.py; the workers' checkpoint directories: tests/test_rerun.py
def test_multi_worker_two_processes(tmp_path):
    """2 local processes with TF_CONFIG -> MultiWorkerMirroredStrategy completes steps."""
    ports = [_free_port(), _free_port()]
    workers = [f"127.0.0.1:{p}" for p in ports]
    model_dir = str(tmp_path / "mw")
    procs = []
    for i in range(2):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="",
                   TF_CONFIG=json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}}))
        cmd = [sys.executable, "-m", "tf_biggan.main", "--mode=train", f"--model_dir={model_dir}",
               f"--hparams_overrides={TINY},train.disc_steps=1", "--train_steps=2"]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=600)
            outputs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    with open(os.path.join(model_dir, "train_report.json")) as f:
        report = json.load(f)
    assert report["step"] == 2 and report["replicas"] == 2
    # tf.distribute.MultiWorkerMirroredStrategy is an alias of CollectiveAllReduceStrategy.
    assert report["strategy"] in ("MultiWorkerMirroredStrategy", "CollectiveAllReduceStrategy")
    assert not any(name.startswith(".worker") for name in os.listdir(model_dir))


def test_periodic_fid_keeps_the_best_checkpoint_apart(tmp_path):
    """eval.best_fid_every: EMA-G is scored during training and the best checkpoint kept in best_fid/."""
    hp = tiny_hp("train.train_steps=4,train.save_every=4,eval.best_fid_every=2,eval.best_fid_samples=100,"
                 "eval.classifier_epochs=1,eval.classifier_max_examples=300,eval.real_max_examples=300")
    request = TrainRequest(str(tmp_path / "run"))
    trainer, report = train_from_request(hp, request)
    with open(os.path.join(request.model_dir, "best_fid", "best_fid.json")) as f:
        best = json.load(f)
    assert best["step"] in (2, 4) and np.isfinite(best["fid"])
    assert tf.train.latest_checkpoint(os.path.join(request.model_dir, "best_fid")).endswith(f"ckpt-{best['step']}")
    scalars = [json.loads(line) for line in open(os.path.join(request.model_dir, "train", "scalars.jsonl"))]
    assert {row["step"] for row in scalars if row["tag"] == "eval/fid"} == {2, 4}


@pytest.mark.slow  # two replicas traced in bfloat16 (~22 s); bfloat16's numerics are checked fast in
# test_models.py / test_spectral_norm.py, the same path with accumulation in test_accumulation.py (slow)
def test_bfloat16_mixed_precision_trains_on_two_replicas():
    """The TPU path's dtype (model.dtype: mixed_bfloat16) trains under a strategy: float32 variables,
    finite losses, and the step moves the weights."""
    hp = tiny_hp("model.dtype=mixed_bfloat16,train.disc_steps=1")
    trainer = GANTrainer(hp, mirrored_strategy(2), verbose=False)
    before = [v.numpy().copy() for v in trainer.g.trainable_weights]
    metrics = trainer.train_steps(2)
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert all(v.dtype == tf.float32 for v in trainer.g.weights + trainer.d.weights)
    assert trainer.g.compute_dtype == "bfloat16"
    assert any(not np.allclose(b, v.numpy()) for b, v in zip(before, trainer.g.trainable_weights))
