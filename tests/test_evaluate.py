"""Evaluation as the paper reports it (tf_biggan/evaluation/): the truncation sweep (Section 3.1,
Appendix D), Table 2's three points (Section 5.1), standing statistics per truncation
(Appendix C.1), eval_report.json, the best-FID keeper, the real-statistics cache, and errors a user
can fix. Uses the session's tiny trained run (conftest.py `tiny_run`).
"""

import csv
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

import evaluation_run
from evaluation_run import request
from tf_biggan.errors import UserError
from tf_biggan.evaluation import best_fid, evaluate, real_data, real_stats, sweep
from tf_biggan.evaluation import scoring as evaluator
from tf_biggan.evaluation.extractor import FeatureExtractor
from tf_biggan.sampling.labels import class_balanced_labels
from tf_biggan.runs import load_run
from tf_biggan.sampling.standing_stats import apply_standing_stats, get_bn_stats

# The session's tiny run (conftest.py) is trained once: every module that reads it runs on one xdist worker.
pytestmark = pytest.mark.xdist_group("tiny_run")


@pytest.fixture(scope="module")
def swept(tiny_run):
    model_dir, _ = tiny_run
    return evaluate.run_sweep(None, request("sweep", model_dir))


def test_sweep_report_points_and_table2(tiny_run, swept):
    model_dir, hp = tiny_run
    with open(os.path.join(model_dir, sweep.SWEEP_REPORT)) as f:
        report = json.load(f)
    points = report["points"]
    assert [p["truncation"] for p in points] == [0.2, 1.0, 0.0]  # eval.truncations, in order
    for p in points:
        for key in ("truncation", "fid", "is", "kid", "class_accuracy"):
            assert isinstance(p[key], float) and math.isfinite(p[key]), (key, p)
        assert p["fid"] >= 0 and 1.0 <= p["is"] <= hp.data.num_classes and 0 <= p["class_accuracy"] <= 1
        assert p["num_samples"] == hp.eval.num_samples
    # Table 2's points are points of the sweep, chosen by their rules.
    assert report["best_fid"]["fid"] == min(p["fid"] for p in points)
    assert report["max_is"]["is"] == max(p["is"] for p in points)
    target = report["real"]["validation_is"]
    assert report["valid_is"]["target_is"] == pytest.approx(target)
    assert abs(report["valid_is"]["is"] - target) == pytest.approx(min(abs(p["is"] - target) for p in points))
    assert report["step"] == evaluation_run.STEPS and report["checkpoint"].endswith(f"ckpt-{evaluation_run.STEPS}")
    # Real references: the classifier recognises real held-out digits, and the sweep took the
    # validation IS from the digits' fixed test split (364 images).
    assert report["real"]["validation_examples"] == 364 and report["real"]["validation_class_accuracy"] > 0.8


def test_truncation_narrows_latents_and_samples(tiny_run):
    """Section 3.1's mechanism, for a fixed generator (what the sweep relies on, whatever a short
    run learned): the evaluation's latents stay within the threshold and their spread falls with
    it, and so does the spread of the samples of each class, with standing statistics recomputed at
    each threshold. Measured on this run for seeds 0-2: within-class pixel std 0.20-0.21 at 0.2,
    0.42-0.44 at 1.0, 0.49 untruncated; the asserted margins are many times that seed spread."""
    model_dir, hp = tiny_run
    g = load_run(model_dir, hp=hp).ema_generator
    spread = {}
    for t in (0.2, 1.0, 0.0):
        z = evaluator.eval_latents(g.dim_z, 0, 2000, t, seed=0).numpy()
        if t > 0:
            assert np.abs(z).max() <= t
        apply_standing_stats(g, t, hp.eval.standing_stats_passes, hp.eval.standing_stats_batch, seed=0)
        x = np.concatenate([b for b, _ in evaluator.sample_batches(g, 300, t, 100, seed=0)])
        y = class_balanced_labels(0, 300, g.num_classes)
        spread[t] = (z.std(), np.mean([x[y == c].std(axis=0).mean() for c in range(g.num_classes)]))
    assert spread[0.2][0] < spread[1.0][0] < spread[0.0][0]
    assert spread[0.2][1] < spread[1.0][1] < spread[0.0][1]
    assert spread[0.2][1] < 0.7 * spread[0.0][1]


def test_sweep_csv_and_plot(tiny_run, swept):
    model_dir, _ = tiny_run
    with open(os.path.join(model_dir, sweep.SWEEP_CSV)) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["truncation"]) for r in rows] == [0.2, 1.0, 0.0]
    for row, point in zip(rows, swept["points"]):
        for key in ("fid", "is", "kid", "class_accuracy"):
            assert float(row[key]) == pytest.approx(point[key])
    image = tf.io.decode_png(tf.io.read_file(os.path.join(model_dir, sweep.SWEEP_PLOT))).numpy()
    assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0
    # Atomic writes leave no temporary files behind.
    assert not [n for n in os.listdir(model_dir) if ".tmp-" in n]


def test_eval_mode_matches_the_sweep_point(tiny_run, swept):
    """--mode=eval at one threshold reproduces that threshold's sweep point exactly: standing
    statistics, latents and labels are all a function of (checkpoint, seed, truncation)."""
    model_dir, _ = tiny_run
    report = evaluate.run_eval(None, request("eval", model_dir, truncation=1.0))
    with open(os.path.join(model_dir, evaluate.EVAL_REPORT)) as f:
        on_disk = json.load(f)
    point = next(p for p in swept["points"] if p["truncation"] == 1.0)
    for key in ("fid", "is", "kid", "class_accuracy"):
        assert report[key] == pytest.approx(point[key], rel=1e-5, abs=1e-6), key
        assert on_disk[key] == pytest.approx(point[key], rel=1e-5, abs=1e-6), key
    assert on_disk["step"] == evaluation_run.STEPS


def test_eval_mode_honours_checkpoint(tiny_run):
    model_dir, _ = tiny_run
    earlier = os.path.join(model_dir, f"ckpt-{evaluation_run.STEPS // 2}")
    report = evaluate.run_eval(None, request("eval", model_dir, checkpoint=earlier,
                                             hparams_overrides="eval.num_samples=100"))
    assert report["step"] == evaluation_run.STEPS // 2 and report["checkpoint"] == earlier
    assert report["num_samples"] == 100  # an eval.* override applies to the run's own hparams


def test_standing_stats_make_samples_batch_size_invariant(tiny_run):
    model_dir, hp = tiny_run
    g = load_run(model_dir, hp=hp).ema_generator
    apply_standing_stats(g, 0.0, 4, 50, seed=0)
    untruncated = get_bn_stats(g)
    apply_standing_stats(g, 0.5, 4, 50, seed=0)
    at_half = get_bn_stats(g)
    # Per-truncation statistics: truncated latents shrink the activations' moments.
    assert any(not np.allclose(untruncated[k], at_half[k], rtol=1e-3) for k in at_half)

    def samples(batch_size):
        return np.concatenate([x for x, _ in evaluator.sample_batches(g, 30, 0.5, batch_size, seed=3)])

    a, b, c = samples(30), samples(7), samples(1)
    np.testing.assert_allclose(a, b, atol=2e-5)
    np.testing.assert_allclose(a, c, atol=2e-5)
    # Without standing statistics (batch statistics) the same latents give batch-dependent images,
    # so the invariance above is the statistics' doing.
    z = evaluator.eval_latents(g.dim_z, 0, 30, 0.5, seed=3)
    y = class_balanced_labels(0, 30, g.num_classes)
    full = g((z, y), training=True).numpy()
    part = g((z[:7], y[:7]), training=True).numpy()
    assert np.abs(full[:7] - part).max() > 1e-3
    # Latents and labels do not depend on the batch either; labels are class-balanced.
    np.testing.assert_array_equal(evaluator.eval_latents(g.dim_z, 5, 12, 0.5, 3).numpy(), z[5:12].numpy())
    assert np.abs(z.numpy()).max() <= 0.5
    assert np.bincount(y, minlength=10).tolist() == [3] * 10


def test_table2_points_on_hand_made_sweep():
    points = [
        {"truncation": 0.2, "fid": 30.0, "is": 250.0},
        {"truncation": 0.5, "fid": 12.0, "is": 200.0},
        {"truncation": 1.0, "fid": 8.0, "is": 150.0},
        {"truncation": 1.5, "fid": 7.5, "is": 130.0},
        {"truncation": 0.0, "fid": 9.0, "is": 100.0},
        {"truncation": 2.0, "fid": float("nan"), "is": 400.0},  # a failed point is never chosen
    ]
    chosen = sweep.table2_points(points, validation_is=166.0)
    assert chosen["best_fid"]["truncation"] == 1.5
    assert chosen["max_is"]["truncation"] == 0.2
    assert chosen["valid_is"]["truncation"] == 1.0  # |150 - 166| = 16 < |200 - 166| = 34
    assert chosen["valid_is"]["target_is"] == 166.0
    assert sweep.table2_points(points, validation_is=None)["valid_is"] is None
    # Ties go to the earlier point.
    tie = [{"truncation": 0.5, "fid": 5.0, "is": 10.0}, {"truncation": 1.0, "fid": 5.0, "is": 10.0}]
    chosen = sweep.table2_points(tie, 10.0)
    assert [chosen[k]["truncation"] for k in ("best_fid", "valid_is", "max_is")] == [0.5, 0.5, 0.5]
    assert sweep.table2_points([], 1.0) == {"best_fid": None, "valid_is": None, "max_is": None}


class _Keeper:
    """A stand-in for the trainer as the keeper sees it: the EMA-G, the step and a checkpoint."""

    def __init__(self, run):
        self.ema_g = run.ema_generator
        self.step = tf.Variable(run.step, dtype=tf.int64)
        self.checkpoint = tf.train.Checkpoint(step=self.step, ema_generator=_variables(run.ema_generator))


def _variables(model):
    from tf_biggan.models.variables_checkpoint import variables_checkpoint

    return variables_checkpoint(model)


def test_best_fid_keeper_keeps_only_improvements(tiny_run, tmp_path):
    model_dir, hp = tiny_run
    trainer = _Keeper(load_run(model_dir, hp=hp))
    before = get_bn_stats(trainer.ema_g)
    # A separate directory for the kept checkpoint, sharing the run's cached classifier.
    keep_dir = str(tmp_path)
    from tf_biggan.evaluation.features import feature_extractor

    keeper = best_fid.BestFidKeeper(hp, keep_dir, num_samples=100, log=lambda m: None,
                                    extractor=feature_extractor(hp, model_dir, log=lambda m: None))
    fid = keeper(trainer)
    assert math.isfinite(fid)
    after = get_bn_stats(trainer.ema_g)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # training state untouched
    best = best_fid.best_checkpoint(keep_dir)
    assert best and best.endswith(f"ckpt-{evaluation_run.STEPS}")
    with open(os.path.join(keep_dir, best_fid.BEST_FID_DIR, best_fid.BEST_FID_REPORT)) as f:
        assert json.load(f)["fid"] == pytest.approx(fid)

    # A worse score keeps the old checkpoint; a better one replaces it (only the best is kept).
    scores = iter([fid + 1.0, fid - 1.0])
    keeper.evaluator.evaluate = lambda g, t: {"truncation": t, "fid": next(scores), "is": 1.0}
    trainer.step.assign(evaluation_run.STEPS + 10)
    keeper(trainer)
    assert best_fid.best_checkpoint(keep_dir) == best
    trainer.step.assign(evaluation_run.STEPS + 20)
    keeper(trainer)
    newer = best_fid.best_checkpoint(keep_dir)
    assert newer.endswith(f"ckpt-{evaluation_run.STEPS + 20}")
    assert keeper.best_fid == pytest.approx(fid - 1.0)
    index_files = [n for n in os.listdir(os.path.join(keep_dir, best_fid.BEST_FID_DIR)) if n.endswith(".index")]
    assert index_files == [f"ckpt-{evaluation_run.STEPS + 20}.index"]
    # The kept checkpoint is what --checkpoint takes: load_run restores its step.
    assert load_run(model_dir, newer, hp=hp).step == evaluation_run.STEPS + 20
    # A restarted keeper remembers the best so far.
    again = best_fid.BestFidKeeper(hp, keep_dir, num_samples=100, log=lambda m: None,
                                   extractor=keeper.evaluator.extractor)
    assert again.best_fid == pytest.approx(fid - 1.0)


def test_user_errors_name_the_flag_and_the_fix(tiny_run, tmp_path):
    model_dir, hp = tiny_run
    with pytest.raises(UserError, match="does not exist; train first"):
        evaluate.run_eval(None, request("eval", str(tmp_path / "nowhere")))
    untrained = tmp_path / "untrained"
    untrained.mkdir()
    (untrained / "hparams.yaml").write_text(open(os.path.join(model_dir, "hparams.yaml")).read())
    with pytest.raises(UserError, match="no checkpoint yet.*--mode=train"):
        evaluate.run_sweep(None, request("sweep", str(untrained)))
    with pytest.raises(UserError, match=r"--checkpoint=.*ckpt-99 does not exist.*omit --checkpoint"):
        evaluate.run_eval(None, request("eval", model_dir, checkpoint=os.path.join(model_dir, "ckpt-99")))
    with pytest.raises(UserError, match=r"(?s)--inception_path=.*does not exist.*tfhub.dev.*InceptionV3"):
        evaluate.run_eval(None, request("eval", model_dir, inception_path=str(tmp_path / "inception")))
    with pytest.raises(UserError, match="--truncation=-1: must be >= 0"):
        evaluate.run_eval(None, request("eval", model_dir, truncation=-1.0))


def test_no_validation_data_is_explained(tiny_run):
    """A TFRecord run without eval.validation_pattern gets no valid_is column, with the fix named."""
    _, hp = tiny_run
    hp_tf = evaluation_run.tiny_hp("data.kind=tfrecord,data.pattern=/data/train-*")
    assert real_data.real_data_config(hp_tf, "validation") is None
    with pytest.raises(UserError, match="eval.validation_pattern"):
        list(real_data.real_batches(hp_tf, "validation", 10))
    hp_val = evaluation_run.tiny_hp("data.kind=tfrecord,data.pattern=/data/train-*,"
                                    "eval.validation_pattern=/data/validation-*")
    assert real_data.real_data_config(hp_val, "validation").pattern == "/data/validation-*"
    assert real_data.real_data_config(hp, "validation").split == "test"  # digits: the fixed held-out split


class _Projection(FeatureExtractor):
    """A fixed linear extractor (pixels -> 8 features, 10 logits) that counts its calls."""

    def __init__(self, name="projection-v1"):
        self.name = name
        self.calls = 0
        rng = np.random.default_rng(0)
        self.w = tf.constant(rng.normal(size=(16 * 16 * 3, 8)).astype(np.float32))
        self.head = tf.constant(rng.normal(size=(8, 10)).astype(np.float32))

    def _forward(self, images):
        acts = tf.reshape(images, [tf.shape(images)[0], -1]) @ self.w
        return acts, acts @ self.head

    def activations_and_logits(self, images, batch_size=None):
        self.calls += 1
        return super().activations_and_logits(images, batch_size)


def test_real_statistics_cache_computes_once_and_writes_atomically(tmp_path):
    hp = evaluation_run.tiny_hp("eval.real_max_examples=200")
    ext, cache = _Projection(), str(tmp_path / "cache")
    a = real_stats.real_statistics(hp, ext, "train", cache)
    b = real_stats.real_statistics(hp, ext, "train", cache)
    assert ext.calls == 1
    for key in ("mu", "sigma", "kid_activations", "inception_score", "class_accuracy", "num_examples"):
        np.testing.assert_array_equal(a[key], b[key])
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].endswith(".npz") and not files[0].startswith(".")
    # The statistics are those of the real images, computed independently here.
    x, y = real_data.real_images(hp, "train", 200)
    acts = x.reshape(200, -1) @ ext.w.numpy()
    np.testing.assert_allclose(a["mu"], acts.mean(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(a["sigma"], np.cov(acts, rowvar=False), rtol=1e-3, atol=1e-2)
    assert a["class_accuracy"][0] == pytest.approx(np.mean(np.argmax(acts @ ext.head.numpy(), 1) == y))
    # Another extractor (or dataset) is another key and another file.
    real_stats.real_statistics(hp, _Projection("projection-v2"), "train", cache)
    assert len(os.listdir(cache)) == 2
    # A damaged file is recomputed and replaced; without a cache directory nothing is written.
    with open(os.path.join(cache, files[0]), "wb") as f:
        f.write(b"not an npz")
    c = real_stats.real_statistics(hp, ext, "train", cache)
    assert ext.calls == 2
    np.testing.assert_array_equal(c["mu"], a["mu"])
    assert real_stats.real_statistics(hp, ext, "train", None)["num_examples"][0] == 200


def test_tfgan_logits_are_mapped_to_imagenet_classes():
    """TF-GAN's Inception has 1008 logits with ImageNet class k at k + 1: class accuracy uses 1..1000."""
    logits = np.full((4, 1008), -5.0, np.float32)
    labels = np.array([0, 1, 999, 500])
    logits[np.arange(4), labels + 1] = 5.0
    logits[:, 0] = 10.0  # the background logit is never a class
    assert real_stats.class_logits(logits, 1000).shape == (4, 1000)
    assert real_stats.class_logits(logits, 10) is None

    class Fixed(FeatureExtractor):
        name = "fixed"

        def activations_and_logits(self, images, batch_size=None):
            return np.arange(8, dtype=np.float32).reshape(4, 2) ** 2, logits

    stats = real_stats.feature_statistics(Fixed(), np.zeros((4, 2, 2, 3), np.float32), labels=labels,
                                          num_classes=1000, splits=2)
    assert stats["class_accuracy"][0] == 1.0
