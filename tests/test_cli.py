"""Flags through the real CLI (a subprocess, cwd = the repository root): --mode=train with
--cpu_replicas trains, reports and resumes; required / exclusive / out-of-range flags fail before
any work with exit status 2 and one line naming the flag."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Tiny digits run: 4 channels, 16 px, batch 8, 1 D step; σ, samples and the save fire on the final step.
TINY = ("model.ch=4,train.batch_size=8,train.disc_steps=1,train.steps_per_loop=1,train.log_every=1,"
        "train.save_every=1,train.sv_every=100,train.sample_every=100,train.sample_columns=2,"
        "train.sample_stats_passes=1,train.sample_stats_batch=8")


def cli(*args, timeout=900):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "tf_biggan.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_train_on_two_cpu_replicas_reports_and_resumes(tmp_path):
    model_dir = str(tmp_path / "run")
    common = ["--mode=train", "--cpu_replicas=2", f"--model_dir={model_dir}", f"--hparams_overrides={TINY}"]
    first = cli(*common, "--train_steps=1")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    with open(os.path.join(model_dir, "train_report.json")) as f:
        report = json.load(f)
    assert report["step"] == 1 and report["replicas"] == 2 and report["strategy"] == "MirroredStrategy"
    assert report["checkpoint"].endswith("ckpt-1")
    assert os.path.exists(os.path.join(model_dir, "samples", "step_00000001.png"))  # final step: a grid

    second = cli(*common, "--train_steps=2")
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "resumed from" in second.stdout and "ckpt-1 at step 1" in second.stdout
    with open(os.path.join(model_dir, "train_report.json")) as f:
        report = json.load(f)
    assert report["step"] == 2 and report["checkpoint"].endswith("ckpt-2")
    # Progress lines: one format, [stage] prefix, step/total, images/s.
    lines = [l for l in second.stdout.splitlines() if l.startswith("[train] 2/2")]
    assert lines and "img/s" in lines[0]


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
