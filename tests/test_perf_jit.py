"""train.jit_compile (issue 14, speed): the XLA-compiled replica update gives the same training
trajectory as the default graph (the latents are drawn outside XLA, whose stateless normal sampler
differs from TF's), set through the real CLI."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tf_biggan.config import load_hparams
from tf_biggan.training.trainer import GANTrainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "model.ch=2,train.batch_size=4,train.adam_epsilon=1.0e-3"


def _weights(jit: bool):
    hp = load_hparams(None, f"{TINY},train.jit_compile={str(jit).lower()}")
    trainer = GANTrainer(hp, tf.distribute.get_strategy(), verbose=False)
    metrics = trainer.train_steps(2)
    return metrics, [v.numpy() for v in trainer.g.weights + trainer.d.weights]


@pytest.mark.slow  # XLA compilation of G and D steps: about a minute on 2 cores
def test_xla_step_gives_the_same_weights():
    plain_metrics, plain = _weights(False)
    xla_metrics, xla = _weights(True)
    for a, b in zip(plain, xla):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for k in plain_metrics:
        np.testing.assert_allclose(plain_metrics[k], xla_metrics[k], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_jit_compile_through_the_cli(tmp_path):
    cmd = [sys.executable, "-m", "tf_biggan.main", "--mode=train", f"--model_dir={tmp_path}",
           f"--hparams_overrides={TINY},train.jit_compile=true,train.train_steps=2,train.sample_every=1000"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.load(open(tmp_path / "train_report.json"))
    assert report["step"] == 2 and np.isfinite(report["g_loss"])
    assert "jit_compile: true" in (tmp_path / "hparams.yaml").read_text()
