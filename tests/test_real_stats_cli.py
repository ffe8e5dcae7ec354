"""`--mode=real_stats` through the real CLI, and the whole own-images chain end to end.

real_stats: the statistics land in the cache file the evaluation reads (Evaluator.for_run finds
them and computes nothing), the plain .npz holds mu / sigma equal to numpy's mean and covariance of
the extractor's activations on the real images (an independent reference), a second call only
reports the cache. The slow chain: a folder of a few hundred images of mixed formats and sizes with
corrupt files -> prepare_data (killed with SIGKILL mid-run, rerun: only the missing shards are
written) -> real_stats -> train -> sweep (on the cached statistics) -> synthesize -> cas.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from test_image_folder import make_image_folder

from tf_biggan.data.image_folder import prepare_data
from tf_biggan.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A tiny GAN on 16 px images and evaluation cut to match (tests/test_cli.py's scenario).
TINY = ("model.resolution=16,model.ch=4,train.batch_size=8,train.disc_steps=1,train.steps_per_loop=2,"
        "train.log_every=2,train.save_every=4,train.sv_every=4,train.sample_every=100,train.sample_columns=2,"
        "train.sample_stats_passes=1,train.sample_stats_batch=8,eval.classifier_epochs=1,eval.num_samples=60,"
        "eval.batch_size=30,eval.standing_stats_passes=1,eval.standing_stats_batch=30,eval.truncations=[1.0,0],"
        "eval.is_splits=2")


def cli(*args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "tf_biggan.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _ok(proc):
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def test_real_stats_cli_fills_the_evaluation_cache(tmp_path):
    images = str(tmp_path / "images")
    make_image_folder(images, per_class=(14, 12, 10), corrupt=False)
    manifest = prepare_data(images, str(tmp_path / "shards"), validation_fraction=0.3, log=lambda m: None)["manifest"]
    overrides = f"{manifest['hparams_overrides']},{TINY}"
    run = str(tmp_path / "run")
    out = _ok(cli("--mode=real_stats", f"--model_dir={run}", f"--hparams_overrides={overrides}",
                  f"--output_dir={tmp_path / 'npz'}"))
    assert "training the project's classifier on 25 real training images" in out
    assert "[real_stats] 25 " in out and "real images read" in out  # the progress line
    with open(tmp_path / "npz" / "real_stats.json") as f:
        report = json.load(f)
    assert set(report["splits"]) == {"train", "validation"}
    assert report["splits"]["train"]["num_examples"] == 25 and report["splits"]["validation"]["num_examples"] == 11

    # The evaluation finds them where it looks and computes nothing.
    from tf_biggan.config import load_hparams
    from tf_biggan.evaluation import real_stats
    from tf_biggan.evaluation.scoring import Evaluator
    from tf_biggan.evaluation.features import load_classifier
    from tf_biggan.evaluation.real_data import real_images

    hp = load_hparams(None, overrides)
    extractor = load_classifier(os.path.join(run, "eval_classifier"))
    assert report["extractor"] == extractor.name
    for which in ("train", "validation"):
        assert report["splits"][which]["cache_file"] == real_stats.real_statistics_path(
            hp, extractor, which, os.path.join(run, "eval_cache"))
    computed = []
    original = real_stats.feature_statistics
    real_stats.feature_statistics = lambda *a, **k: computed.append(1) or original(*a, **k)
    try:
        evaluator = Evaluator.for_run(hp, run, extractor=extractor)
    finally:
        real_stats.feature_statistics = original
    assert computed == []
    # The .npz: numpy's mean and covariance of the extractor's activations on the real images.
    for which, stats in (("train", evaluator.reference), ("validation", evaluator.validation)):
        with np.load(report["splits"][which]["npz"]) as npz:
            assert sorted(npz.files) == ["mu", "sigma"]
            np.testing.assert_array_equal(npz["mu"], stats["mu"])
            np.testing.assert_array_equal(npz["sigma"], stats["sigma"])
            acts = extractor.activations(real_images(hp, which)[0]).astype(np.float64)
            np.testing.assert_allclose(npz["mu"], acts.mean(0), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(npz["sigma"], np.cov(acts, rowvar=False), rtol=1e-3, atol=1e-5)

    # A second call reports the cache (without --model_dir the CLI refuses it: tests/test_requests.py).
    import evaluation_run

    again = evaluation_run.run("real_stats", hp, run, hparams_overrides=overrides)
    assert all(s["was_cached"] for s in again["splits"].values())
    with pytest.raises(UserError, match="eval.validation_pattern"):
        bad = load_hparams(None, overrides.replace("eval.validation_pattern", "eval.stats_cache_dir")
                           + ",eval.fid_reference=validation")
        evaluation_run.run("real_stats", bad, str(tmp_path / "run2"))


def _start(args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen([sys.executable, "-m", "tf_biggan.main", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.slow
def test_own_images_end_to_end(tmp_path):
    """prepare_data (kill -9, rerun) -> real_stats -> train -> sweep -> synthesize -> cas, all via the CLI."""
    images = str(tmp_path / "images")
    good, bad = make_image_folder(images, per_class=(110, 100, 90), classes=("apple", "banana", "cherry"))
    assert sum(len(v) for v in good.values()) == 300 and len(bad) == 3
    shards = str(tmp_path / "shards")
    args = ("--mode=prepare_data", f"--image_dir={images}", f"--output_dir={shards}", "--validation_fraction=0.2",
            "--num_shards=12")
    proc = _start(args)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if any(n.endswith(".done") for n in (os.listdir(shards) if os.path.isdir(shards) else [])):
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    killed_output = proc.communicate()[0].decode()
    done = sorted(n[1:-len(".done")] for n in os.listdir(shards) if n.endswith(".done"))
    all_shards = [f"train-{i:05d}-of-00012" for i in range(12)] + [f"validation-{i:05d}-of-00003" for i in range(3)]
    assert done and not os.path.exists(os.path.join(shards, "manifest.json")), killed_output[-2000:]
    stamps = {n: os.stat(os.path.join(shards, n)).st_mtime_ns for n in done}
    out = _ok(cli(*args))
    print(out)
    missing = [n for n in all_shards if n not in done]
    assert f"{len(done)} complete, {len(missing)} to write" in out
    written = [line.split()[1] for line in out.splitlines() if line.startswith("[prepare_data] ") and " (" in line
               and line.split()[1] in all_shards]
    assert sorted(written) == sorted(missing)
    assert all(os.stat(os.path.join(shards, n)).st_mtime_ns == stamps[n] for n in done)
    with open(os.path.join(shards, "manifest.json")) as f:
        manifest = json.load(f)
    assert sorted(s["file"] for s in manifest["skipped"]) == sorted(bad)
    n_train, n_val = manifest["splits"]["train"]["images"], manifest["splits"]["validation"]["images"]
    assert n_train + n_val == 300

    overrides = f"{manifest['hparams_overrides']},{TINY}"
    run = str(tmp_path / "run")
    out = _ok(cli("--mode=real_stats", f"--model_dir={run}", f"--hparams_overrides={overrides}"))
    print(out)
    out = _ok(cli("--mode=train", f"--model_dir={run}", "--train_steps=4", f"--hparams_overrides={overrides}"))
    print(out)
    assert "[train] 4/4" in out
    out = _ok(cli("--mode=sweep", f"--model_dir={run}"))
    print(out)
    assert "training the project's classifier" not in out  # the classifier and statistics of real_stats
    with open(os.path.join(run, "sweep_report.json")) as f:
        sweep = json.load(f)
    assert sweep["real"]["train_examples"] == n_train and sweep["real"]["validation_examples"] == n_val
    synthetic = str(tmp_path / "synthetic")
    out = _ok(cli("--mode=synthesize", f"--model_dir={run}", f"--output_dir={synthetic}", "--images_per_class=20",
                  "--num_shards=2"))
    print(out)
    cas_dir = str(tmp_path / "cas")
    out = _ok(cli("--mode=cas", "--hparams=hparams/cas_digits.yaml", f"--model_dir={cas_dir}",
                  "--hparams_overrides=data.num_classes=3,cas.epochs=1,cas.batch_size=16,cas.steps_per_loop=2,"
                  "cas.save_every=4,cas.log_every=4,cas.decay_epochs=[1],cas.warmup_epochs=0.0",
                  f"--train_data={synthetic}/train-*", f"--eval_data={shards}/validation-*"))
    print(out)
    with open(os.path.join(cas_dir, "cas_report.json")) as f:
        cas = json.load(f)
    assert cas["synthetic_images"] == 60 and cas["real_images"] == 0 and cas["eval_images"] == n_val
    assert 0.0 <= cas["top1"] <= 1.0
