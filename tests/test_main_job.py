"""`--mode=all`, the main job, through the real CLI: every stage runs, the report is complete, a rerun
skips every stage, and a run interrupted during synthesis finishes with the same numbers."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

# This module's fixtures are built once: all its tests run on one xdist worker (CI: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("main_job")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The embedded default made tiny: a few steps, two truncations, one CAS epoch.
TINY = ",".join([
    "train.train_steps=6", "train.steps_per_loop=3", "train.save_every=3", "train.log_every=3",
    "train.sv_every=6", "train.sample_every=6", "eval.num_samples=100", "eval.truncations=[0.5,0]",
    "eval.standing_stats_passes=2", "eval.export_truncations=[0.5,1.0]", "eval.classifier_epochs=1",
    "eval.classifier_max_examples=500", "cas.epochs=1", "cas.save_every=3", "cas.steps_per_loop=3",
])
STAGES = ["train", "sweep", "export", "synthesize", "cas_real", "cas_synthetic"]
NUMBERS = ["fid", "is", "truncation", "sample_class_accuracy", "cas_top1", "real_top1", "step"]


def _all_command(model_dir, *extra):
    return [sys.executable, "-m", "tf_biggan.main", "--mode=all", f"--model_dir={model_dir}",
            f"--hparams_overrides={TINY}", "--images_per_class=30", *extra]


def _run_all(model_dir, *extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    proc = subprocess.run(_all_command(model_dir, *extra), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def main_job_run(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("main_job") / "run")
    out = _run_all(model_dir)
    with open(os.path.join(model_dir, "report.json")) as f:
        return model_dir, json.load(f), out


def test_main_job_runs_every_stage_and_reports(main_job_run):
    model_dir, report, out = main_job_run
    for key in ("fid", "is", "truncation", "sample_class_accuracy", "cas_top1", "real_top1", "wall_seconds",
                "stages"):
        assert key in report, key
    assert sorted(report["stages"]) == sorted(STAGES)
    assert all(not s["skipped"] and s["seconds"] > 0 for s in report["stages"].values())
    assert report["step"] == 6
    # The synthesis truncation is the sweep's best-FID threshold, as the report says.
    with open(os.path.join(model_dir, "sweep_report.json")) as f:
        sweep = json.load(f)
    assert report["truncation"] == sweep["best_fid"]["truncation"]
    assert min(p["fid"] for p in sweep["points"]) == report["fid"]
    with open(os.path.join(model_dir, "synthetic", "manifest.json")) as f:
        assert json.load(f)["truncation"] == report["truncation"]
    # CAS: synthetic-only and real-data classifiers, both scored on the real held-out digits.
    for name, kind in (("cas_real", "real"), ("cas_synthetic", "synthetic")):
        with open(os.path.join(model_dir, name, "cas_report.json")) as f:
            cas = json.load(f)
        assert cas["top1"] == report["cas_top1" if kind == "synthetic" else "real_top1"]
        assert cas["synthetic_fraction"] == (1.0 if kind == "synthetic" else 0.0)
    # report.md shows the pictures it names, and they exist.
    with open(os.path.join(model_dir, "report.md")) as f:
        md = f.read()
    for picture in (os.path.relpath(report["outputs"]["samples"], model_dir), "sweep_is_fid.png", "cas_top1.png"):
        assert f"]({picture})" in md
        assert os.path.getsize(os.path.join(model_dir, picture)) > 100
    assert "CAS top-1 vs real top-1" in out


def test_rerun_skips_every_stage(main_job_run, capsys):
    """In this process, through the mode's function with the launch's request (no TensorFlow start: a
    rerun of a finished job reads its outputs only)."""
    import evaluation_run
    from tf_biggan.config import load_hparams

    model_dir, report, _ = main_job_run
    capsys.readouterr()
    evaluation_run.run("all", load_hparams(None, TINY), model_dir, hparams_overrides=TINY, images_per_class=30)
    out = capsys.readouterr().out
    for stage in STAGES:
        assert f"[all] {stage}: complete, skipped" in out
    with open(os.path.join(model_dir, "report.json")) as f:
        again = json.load(f)
    assert {k: again[k] for k in NUMBERS} == {k: report[k] for k in NUMBERS}


def test_interrupted_synthesis_resumes_to_the_same_report(main_job_run):
    """A kill during synthesis leaves complete shards (atomic) and no manifest; the rerun writes the
    missing shards byte for byte and CAS on them gives the same numbers. (In place: the synthesis
    plan names the run's absolute paths, so a copied run would be refused; this test runs last.)"""
    model_dir, report, _ = main_job_run
    copy = model_dir
    synthetic = os.path.join(copy, "synthetic")
    with open(os.path.join(synthetic, "manifest.json")) as f:
        shards = json.load(f)["shards"]
    kept = open(os.path.join(synthetic, shards[0]), "rb").read()
    lost = open(os.path.join(synthetic, shards[-1]), "rb").read()
    os.remove(os.path.join(synthetic, "manifest.json"))
    os.remove(os.path.join(synthetic, shards[-1]))
    shutil.rmtree(os.path.join(copy, "cas_synthetic"))
    out = _run_all(copy)
    assert "[all] synthesize: running" in out and "[all] cas_real: complete, skipped" in out
    assert open(os.path.join(synthetic, shards[-1]), "rb").read() == lost
    assert open(os.path.join(synthetic, shards[0]), "rb").read() == kept
    with open(os.path.join(copy, "report.json")) as f:
        again = json.load(f)
    assert {k: again[k] for k in NUMBERS} == {k: report[k] for k in NUMBERS}


def _figures(value, path=""):
    """Every number of a report, by its path, except wall-clock times and rates (and stage flags)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not any(word in k for word in ("seconds", "per_sec", "rate")):
                yield from _figures(v, f"{path}/{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _figures(v, f"{path}/{i}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


@pytest.mark.slow
def test_main_job_killed_during_cas_synthetic_reruns_to_the_same_report(main_job_run, tmp_path):
    """kill -9 while the synthetic-data classifier trains (after its first checkpoint, mid-epoch), rerun:
    the classifier resumes on the batches the uninterrupted run saw, and report.json equals the
    uninterrupted run's in every figure but wall-clock times and rates."""
    _, report, _ = main_job_run
    model_dir = str(tmp_path / "run")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    proc = subprocess.Popen(_all_command(model_dir), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    ckpt_dir = os.path.join(model_dir, "cas_synthetic", "checkpoints")
    deadline = time.time() + 900
    try:
        while time.time() < deadline and proc.poll() is None:
            if os.path.exists(os.path.join(ckpt_dir, "checkpoint")):
                break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert os.path.exists(os.path.join(ckpt_dir, "checkpoint")), "never reached cas_synthetic's first checkpoint"
    assert not os.path.exists(os.path.join(model_dir, "cas_synthetic", "cas_report.json")), "finished before the kill"
    assert not os.path.exists(os.path.join(model_dir, "report.json"))
    out = _run_all(model_dir)
    assert "[all] cas_real: complete, skipped" in out and "resuming at step" in out
    with open(os.path.join(model_dir, "cas_synthetic", "cas_report.json")) as f:
        resumed_from = json.load(f)["resumed_from_step"]
    assert 0 < resumed_from and resumed_from % 9 != 0  # 300 synthetic images / batch 32: 9 steps per epoch
    with open(os.path.join(model_dir, "report.json")) as f:
        again = json.load(f)
    figures, expected = dict(_figures(again)), dict(_figures(report))
    assert {"/cas_top1", "/cas_top5", "/real_top1", "/fid", "/is", "/step"} <= set(figures)
    assert figures == expected


def test_main_job_needs_eval_data_off_the_embedded_set(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, "-m", "tf_biggan.main", "--mode=all", "--hparams=biggan_128",
                           f"--model_dir={tmp_path / 'x'}", "--cas_hparams=no_such_protocol"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "--cas_hparams" in proc.stderr and "no_such_protocol" in proc.stderr


def test_stage_requests_take_the_jobs_fields_with_the_stage_on_top():
    """Each stage's request takes the fields it shares by name with the job's request (the launch, the
    seed, --inception_path, the synthesis settings), the run's model dir, the latest checkpoint and no
    intervention; every field of a stage's request is the job's or one the job decides, so no flag
    given to --mode=all is dropped unseen."""
    import dataclasses

    from tf_biggan.job.stages import JOB_DECIDES, MainJob
    from tf_biggan.requests import (AllRequest, CasRequest, ExportRequest, Launch, SweepRequest, SynthesizeRequest,
                                    TrainRequest)

    launch = AllRequest(model_dir="elsewhere", images_per_class=30, jpeg_quality=80, seed=3, inception_path="inc",
                        hparams_overrides="cas.epochs=1", eval_data="e", launch=Launch(cpu_replicas=2))
    job = MainJob(None, launch, "run")
    assert job.stage_request(SynthesizeRequest, output_dir="run/synthetic", truncation=0.5, num_shards=4) == \
        SynthesizeRequest("run/synthetic", model_dir="run", truncation=0.5, num_shards=4, images_per_class=30,
                          jpeg_quality=80, seed=3)
    assert job.stage_request(TrainRequest) == TrainRequest("run", inception_path="inc", launch=Launch(cpu_replicas=2))
    assert job.stage_request(SweepRequest) == SweepRequest("run", seed=3, inception_path="inc")
    assert job.stage_request(CasRequest, model_dir="run/cas_real", train_data="t", eval_data="e") == CasRequest(
        "run/cas_real", "t", "e", launch=Launch(cpu_replicas=2))
    shared = {f.name for f in dataclasses.fields(AllRequest)}
    for kind in (TrainRequest, SweepRequest, ExportRequest, SynthesizeRequest, CasRequest):
        assert {f.name for f in dataclasses.fields(kind)} <= shared | set(JOB_DECIDES), kind