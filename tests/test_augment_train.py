"""Augmentation inside training (issue 11): ADA's p under a strategy with bf16, in the checkpoint,
TensorBoard and train_report.json; the hparams through the real CLI; a leaking configuration refused."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import mirrored_strategy
from tf_biggan.config import load_hparams
from tf_biggan.training.trainer import GANTrainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ("model.ch=4,train.batch_size=8,train.steps_per_loop=2,train.log_every=2,train.save_every=2,"
        "train.sv_every=100,train.sample_every=100,train.sample_columns=2,eval.standing_stats_passes=2,"
        "eval.standing_stats_batch=20")


@pytest.mark.slow  # ~25 s idle (a bf16 G and D traced on 2 replicas); the parts are fast tests in test_augment.py
def test_ada_p_under_two_replicas_bf16_and_in_the_checkpoint(tmp_path):
    """p moves by whole steps of the heuristic, holds one value on both replicas, and is saved in the
    checkpoint; bf16 images go through the augmentation."""
    hp = load_hparams(None, TINY + ",model.dtype=mixed_bfloat16,augment.kind=ada,augment.pipeline=blit,"
                             "augment.interval=1,augment.speed_kimg=0.08,augment.p_max=0.5")
    strategy = mirrored_strategy(2)
    trainer = GANTrainer(hp, strategy, verbose=False)
    metrics = trainer.train_steps(2)
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    step_size = 8 / 80.0  # 8 real images per interval of 1 step, speed 80 images for 0 -> 1
    p = float(trainer.augment.p.numpy())
    assert 0.0 <= p <= 0.5
    assert np.isclose(p / step_size, round(p / step_size), atol=1e-4)  # whole heuristic steps
    assert all(np.isclose(v.numpy(), p) for v in strategy.experimental_local_results(trainer.augment.p))
    path = trainer.checkpoint.write(str(tmp_path / "ckpt"))
    saved = {name: tf.train.load_variable(path, name) for name, _ in tf.train.list_variables(path)
             if name.startswith("augment_p/")}
    assert len(saved) == 1 and float(next(iter(saved.values()))) == pytest.approx(p)


def test_cli_trains_with_ada_rv_reports_p_r_v_and_refuses_a_leaking_p_max(tmp_path):
    """augment.* through the real CLI, with the validation heuristic (augment.heuristic=rv) on 10 digits
    per class: the held-out digits are scored, p, r_v and r_t land in train_report.json and TensorBoard
    scalars, and p moved the way the reported r_v says (one interval of 2 steps x 8 reals at speed
    0.01 kimg: a whole step to the cap). p_max = 1 is refused with the leak checker's reason (seed 003
    C.4) and no traceback. (The heuristics' arithmetic: tests/test_augment_rv.py.)"""
    env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
    model_dir = str(tmp_path / "run")
    proc = subprocess.run(
        [sys.executable, "-m", "tf_biggan.main", "--mode=train", f"--model_dir={model_dir}", "--train_steps=2",
         f"--hparams_overrides={TINY},data.max_per_class=10,augment.kind=ada,augment.heuristic=rv,"
         "augment.validation_examples=64,augment.pipeline=color,augment.speed_kimg=0.01,augment.interval=2,"
         "augment.target=0.05,augment.p_max=0.3"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(model_dir, "train_report.json")) as f:
        report = json.load(f)
    assert -1.0 <= report["augment_r_t"] <= 1.0 and np.isfinite(report["augment_r_v"])
    assert report["augment_rv_no_evidence_intervals"] in (0, 1) and "ada_rv_gap" in report["metrics"]
    assert report["augment_p"] == (pytest.approx(0.3) if report["augment_r_v"] > 0.05 else 0.0)
    with open(os.path.join(model_dir, "train", "scalars.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    ps = [r["value"] for r in rows if r["tag"] == "augment/p"]
    assert ps and ps[-1] == pytest.approx(report["augment_p"])
    assert {"augment/r_v", "augment/r_t", "losses/ada_rv_gap"} <= {r["tag"] for r in rows}
    if report["augment_p"] > 0:
        assert "reached its cap augment.p_max=0.3" in proc.stdout + proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "tf_biggan.main", "--mode=train", f"--model_dir={tmp_path / 'bad'}",
         "--hparams_overrides=augment.kind=ada,augment.p_max=1.0"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "augment.p_max" in message and "leak" in message and "Traceback" not in message
