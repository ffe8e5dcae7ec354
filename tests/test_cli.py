"""Flags through the real CLI (a subprocess, cwd = the repository root): --mode=train stops at a
detected collapse and resumes from a kept --checkpoint with --intervene and --cpu_replicas=2;
required / exclusive / out-of-range flags fail before any work with exit status 2 and one line
naming the flag."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny digits run: 4 channels, 16 px, batch 8, 1 D step, a loop of 2 steps with a log line, σ0 (the
# collapse detector's record) and a save after each; the sample grid fires on the final step only.
SCENARIO = ("model.ch=4,train.batch_size=8,train.disc_steps=1,train.steps_per_loop=2,train.log_every=2,"
            "train.save_every=2,train.sv_every=2,train.sample_every=100,train.sample_columns=2,"
            "train.sample_stats_passes=1,train.sample_stats_batch=8")


def cli(*args, timeout=900, **extra_env):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="", **extra_env)
    return subprocess.run([sys.executable, "-m", "tf_biggan.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # three training processes through the CLI (~40 s): collapse detection is tested on traces
# (test_stability.py), the intervention in-process (test_stability_train.py), the flags in test_requests.py
def test_two_cpu_replicas_collapse_stop_then_intervene_resumes(tmp_path):
    """A user's run, through the real CLI (paper Appendix G.1's workflow): a detected collapse stops the
    run (exit 2) and keeps the checkpoint before it; --checkpoint + --intervene resume from that
    checkpoint with --cpu_replicas=2 (MirroredStrategy: a checkpoint does not depend on the replica
    count) to a later step, with the changed settings and everything else as the run had it, and write
    train_report.json and the final grid; the resumed run is on TF_BIGGAN_MALLOC=mimalloc."""
    run = str(tmp_path / "run")
    # A rule that fires on the second record (D's loss "jumps" by more than -100) exercises the
    # plumbing deterministically; the rule itself is tested on traces in test_stability.py.
    detect = (",stability.detect_collapse=true,stability.collapse_window=1,stability.collapse_patience=1,"
              "stability.collapse_d_loss_jump=-100.0,stability.keep_before_collapse=1")
    first = cli("--mode=train", f"--model_dir={run}", f"--hparams_overrides={SCENARIO},train.train_steps=8{detect}")
    assert first.returncode == 2, first.stdout[-2000:] + first.stderr[-3000:]
    assert "collapse detected at step 4" in first.stderr and "pre_collapse" in first.stderr
    with open(os.path.join(run, "collapse.json")) as f:
        assert json.load(f)["step"] == 4
    chosen = os.path.join(run, "pre_collapse", "ckpt-2")
    assert tf.io.gfile.exists(chosen + ".index")
    with open(os.path.join(run, "hparams.yaml")) as f:
        before = yaml.safe_load(f)

    second = cli("--mode=train", "--cpu_replicas=2", f"--model_dir={run}",
                 f"--hparams_overrides={SCENARIO},train.train_steps=6,stability.detect_collapse=false",
                 f"--checkpoint={chosen}", "--intervene=g_lr=1.0e-4,freeze=d,reset_adam=g",
                 TF_BIGGAN_MALLOC="mimalloc")  # the CLI re-executes itself on it (tf_biggan/host/malloc.py)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "on 2 replica(s) (MirroredStrategy)" in second.stdout
    assert "resumed from" in second.stdout and "ckpt-2 at step 2" in second.stdout
    with open(os.path.join(run, "train_report.json")) as f:
        report = json.load(f)
    assert report["step"] == 6 and report["replicas"] == 2 and report["strategy"] == "MirroredStrategy"
    assert report["malloc"] == "mimalloc"
    assert report["checkpoint"].endswith("ckpt-6")
    assert os.path.exists(os.path.join(run, "samples", "step_00000006.png"))  # final step: a grid
    # Progress lines: one format, [stage] prefix, step/total, images/s.
    lines = [l for l in second.stdout.splitlines() if l.startswith("[train] 6/6")]
    assert lines and "img/s" in lines[0]

    with open(os.path.join(run, "hparams.yaml")) as f:
        after = yaml.safe_load(f)
    assert after["train"]["g_lr"] == 1e-4 and after["stability"]["freeze"] == "d"
    from tf_biggan.training import intervene
    from tf_biggan.training.checkpoints import RESUMABLE_KEYS

    for section in before:  # everything else as the run had it
        for key, value in before[section].items():
            if f"{section}.{key}" not in RESUMABLE_KEYS | {"train.g_lr", "stability.freeze"}:
                assert after[section][key] == value, (section, key)
    (entry,) = intervene.history(run)
    assert entry["checkpoint"] == chosen and entry["actions"] == {"reset_adam": "g"}

    old, new = tf.train.load_checkpoint(chosen), tf.train.load_checkpoint(os.path.join(run, "ckpt-6"))
    names = [n for n, _ in tf.train.list_variables(chosen)]
    kernels = {net: [n for n in names if n.startswith(f"{net}/") and n.endswith("kernel/.ATTRIBUTES/VARIABLE_VALUE")]
               for net in ("generator", "discriminator")}
    assert kernels["generator"] and kernels["discriminator"]
    for n in kernels["discriminator"]:  # D frozen from the chosen checkpoint on: identical weights
        np.testing.assert_array_equal(old.get_tensor(n), new.get_tensor(n), err_msg=n)
    assert any(not np.array_equal(old.get_tensor(n), new.get_tensor(n)) for n in kernels["generator"])
    iterations = {n.split("/")[0]: new.get_tensor(n) for n in names if n.endswith("iterations/.ATTRIBUTES/VARIABLE_VALUE")}
    assert iterations == {"g_optimizer": 4, "d_optimizer": 2}, iterations  # G's Adam reset at step 2


@pytest.mark.parametrize("args, flag", [
    (["--mode=train"], "--model_dir"),
    (["--mode=export"], "--model_dir"),
    (["--mode=sweep"], "--model_dir"),
    (["--mode=synthesize", "--model_dir=r"], "--output_dir"),
    (["--mode=synthesize", "--output_dir=o"], "exactly one of --model_dir or --module"),
    (["--mode=synthesize", "--output_dir=o", "--model_dir=r", "--module=m"], "exactly one of --model_dir or --module"),
    (["--mode=synthesize", "--output_dir=o", "--module=m", "--checkpoint=c"], "--module and --checkpoint"),
    (["--mode=train", "--model_dir=r", "--tpu=t", "--cpu_replicas=2"], "--tpu and --cpu_replicas"),
    (["--mode=train", "--model_dir=r", "--cpu_replicas=-1"], "--cpu_replicas=-1"),
    (["--mode=synthesize", "--jpeg_quality=101"], "--jpeg_quality=101"),
])
def test_flag_errors_are_one_line_with_exit_2(tmp_path, args, flag):
    proc = cli(*args, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tf-biggan: error:") and flag in lines[0], proc.stderr
    assert not os.path.exists("r")  # failed before any work
