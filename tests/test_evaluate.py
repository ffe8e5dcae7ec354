"""Evaluation as the paper reports it (tf_biggan/evaluate.py): the truncation sweep (Section 3.1,
Appendix D), Table 2's three points (Section 5.1), standing statistics per truncation
(Appendix C.1), eval_report.json, the best-FID keeper, and errors a user can fix.

One tiny trained run (tests/evaluation_run.py, ~25 s) is shared with tests/test_qualitative.py.
"""

import csv
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

import evaluation_run
from evaluation_run import flags, trained_run
from tf_biggan.evaluation import evaluate
from tf_biggan.errors import UserError
from tf_biggan.sampling.standing_stats import get_bn_stats


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture(scope="module")
def sweep(run):
    model_dir, _ = run
    return evaluate.run_sweep(None, flags(model_dir))


def test_sweep_report_is_rises_as_truncation_falls(run, sweep):
    model_dir, hp = run
    with open(os.path.join(model_dir, evaluate.SWEEP_REPORT)) as f:
        report = json.load(f)
    points = report["points"]
    assert [p["truncation"] for p in points] == [0.2, 1.0, 0.0]  # eval.truncations, in order
    for p in points:
        for key in ("truncation", "fid", "is", "kid", "class_accuracy"):
            assert isinstance(p[key], float) and math.isfinite(p[key]), (key, p)
        assert p["fid"] >= 0 and 1.0 <= p["is"] <= hp.data.num_classes and 0 <= p["class_accuracy"] <= 1
        assert p["num_samples"] == hp.eval.num_samples
    by_t = {p["truncation"]: p for p in points}
    # Section 3.1 / Figure 17: truncation trades variety for fidelity, so IS rises as the threshold
    # falls. Compared over the extremes (smallest threshold vs untruncated), where the trend is
    # robust; the middle point is left free.
    assert by_t[0.2]["is"] > by_t[0.0]["is"]
    assert by_t[0.2]["class_accuracy"] > by_t[0.0]["class_accuracy"]
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


def test_sweep_csv_and_plot(run, sweep):
    model_dir, _ = run
    with open(os.path.join(model_dir, evaluate.SWEEP_CSV)) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["truncation"]) for r in rows] == [0.2, 1.0, 0.0]
    for row, point in zip(rows, sweep["points"]):
        for key in ("fid", "is", "kid", "class_accuracy"):
            assert float(row[key]) == pytest.approx(point[key])
    png = tf.io.read_file(os.path.join(model_dir, evaluate.SWEEP_PLOT))
    image = tf.io.decode_png(png).numpy()
    assert image.shape[0] > 200 and image.shape[1] > 200 and image.std() > 0
    # Atomic writes leave no temporary files behind.
    assert not [n for n in os.listdir(model_dir) if n.startswith(".") and n.endswith(".tmp")]


def test_eval_mode_matches_the_sweep_point(run, sweep):
    """--mode=eval at one threshold reproduces that threshold's sweep point exactly: standing
    statistics, latents and labels are all a function of (checkpoint, seed, truncation)."""
    model_dir, _ = run
    report = evaluate.run_eval(None, flags(model_dir, truncation=1.0))
    with open(os.path.join(model_dir, evaluate.EVAL_REPORT)) as f:
        on_disk = json.load(f)
    for key in ("fid", "is", "kid", "class_accuracy", "truncation", "step"):
        assert key in on_disk
    point = next(p for p in sweep["points"] if p["truncation"] == 1.0)
    for key in ("fid", "is", "kid", "class_accuracy"):
        assert report[key] == pytest.approx(point[key], rel=1e-5, abs=1e-6), key
    assert on_disk["step"] == evaluation_run.STEPS


def test_standing_stats_make_samples_batch_size_invariant(run):
    model_dir, hp = run
    g, _, _ = evaluate.load_run_generator(model_dir, None, hp)
    evaluate.apply_standing_stats(g, 0.0, 4, 50, seed=0)
    untruncated = get_bn_stats(g)
    evaluate.apply_standing_stats(g, 0.5, 4, 50, seed=0)
    at_half = get_bn_stats(g)
    # Per-truncation statistics: truncated latents shrink the activations' moments.
    assert any(not np.allclose(untruncated[k], at_half[k], rtol=1e-3) for k in at_half)

    def samples(batch_size):
        return np.concatenate([x for x, _ in evaluate.sample_batches(g, 30, 0.5, batch_size, seed=3)])

    a, b, c = samples(30), samples(7), samples(1)
    np.testing.assert_allclose(a, b, atol=2e-5)
    np.testing.assert_allclose(a, c, atol=2e-5)
    # Without standing statistics (batch statistics) the same latents give batch-dependent images,
    # so the invariance above is the statistics' doing.
    z = evaluate.eval_latents(g.dim_z, 0, 30, 0.5, seed=3)
    y = evaluate.class_balanced_labels(0, 30, g.num_classes)
    full = g((z, y), training=True).numpy()
    part = g((z[:7], y[:7]), training=True).numpy()
    assert np.abs(full[:7] - part).max() > 1e-3
    # Latents and labels do not depend on the batch either; labels are class-balanced.
    np.testing.assert_array_equal(evaluate.eval_latents(g.dim_z, 5, 12, 0.5, 3).numpy(), z[5:12].numpy())
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
    chosen = evaluate.table2_points(points, validation_is=166.0)
    assert chosen["best_fid"]["truncation"] == 1.5
    assert chosen["max_is"]["truncation"] == 0.2
    assert chosen["valid_is"]["truncation"] == 1.0  # |150 - 166| = 16 < |200 - 166| = 34
    assert chosen["valid_is"]["target_is"] == 166.0
    assert evaluate.table2_points(points, validation_is=None)["valid_is"] is None
    # Ties go to the earlier point.
    tie = [{"truncation": 0.5, "fid": 5.0, "is": 10.0}, {"truncation": 1.0, "fid": 5.0, "is": 10.0}]
    chosen = evaluate.table2_points(tie, 10.0)
    assert [chosen[k]["truncation"] for k in ("best_fid", "valid_is", "max_is")] == [0.5, 0.5, 0.5]
    assert evaluate.table2_points([], 1.0) == {"best_fid": None, "valid_is": None, "max_is": None}


def test_best_fid_keeper_keeps_only_improvements(run, tmp_path):
    from tf_biggan.training.checkpoints import load_ema_generator
    from tf_biggan.training.trainer import GANTrainer

    model_dir, hp = run
    trainer = GANTrainer(hp, model_dir=None, verbose=False)
    trainer.checkpoint.restore(tf.train.latest_checkpoint(model_dir)).assert_consumed()
    before = get_bn_stats(trainer.ema_g)
    # A separate directory for the kept checkpoint, sharing the run's cached classifier.
    keep_dir = str(tmp_path)
    keeper = evaluate.BestFidKeeper(hp, keep_dir, num_samples=100, log=lambda m: None,
                                    extractor=evaluate.feature_extractor(hp, model_dir, log=lambda m: None))
    fid = keeper(trainer)
    assert math.isfinite(fid)
    after = get_bn_stats(trainer.ema_g)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # training state untouched
    best = evaluate.best_checkpoint(keep_dir)
    assert best and best.endswith(f"ckpt-{evaluation_run.STEPS}")
    with open(os.path.join(keep_dir, evaluate.BEST_FID_DIR, evaluate.BEST_FID_REPORT)) as f:
        assert json.load(f)["fid"] == pytest.approx(fid)

    # A worse score keeps the old checkpoint; a better one replaces it (only the best is kept).
    scores = iter([fid + 1.0, fid - 1.0])
    keeper.evaluator.evaluate = lambda g, t: {"truncation": t, "fid": next(scores), "is": 1.0}
    trainer.step.assign(evaluation_run.STEPS + 10)
    keeper(trainer)
    assert evaluate.best_checkpoint(keep_dir) == best
    trainer.step.assign(evaluation_run.STEPS + 20)
    keeper(trainer)
    newer = evaluate.best_checkpoint(keep_dir)
    assert newer.endswith(f"ckpt-{evaluation_run.STEPS + 20}")
    assert keeper.best_fid == pytest.approx(fid - 1.0)
    index_files = [n for n in os.listdir(os.path.join(keep_dir, evaluate.BEST_FID_DIR)) if n.endswith(".index")]
    assert index_files == [f"ckpt-{evaluation_run.STEPS + 20}.index"]
    # The kept checkpoint is a normal training checkpoint: --checkpoint can point at it.
    _, _, step = load_ema_generator(model_dir, newer, hp=hp)
    assert step == evaluation_run.STEPS + 20
    # A restarted keeper remembers the best so far.
    again = evaluate.BestFidKeeper(hp, keep_dir, num_samples=100, log=lambda m: None, extractor=keeper.evaluator.extractor)
    assert again.best_fid == pytest.approx(fid - 1.0)


def test_user_errors_name_the_flag_and_the_fix(run, tmp_path):
    from tf_biggan.training.trainer import prepare_model_dir

    model_dir, hp = run
    with pytest.raises(UserError, match="--model_dir is required"):
        evaluate.run_sweep(None, flags(None))
    with pytest.raises(UserError, match="does not exist; train first"):
        evaluate.run_eval(None, flags(str(tmp_path / "nowhere")))
    untrained = str(tmp_path / "untrained")
    prepare_model_dir(hp, untrained)
    with pytest.raises(UserError, match="no checkpoint yet.*--mode=train"):
        evaluate.run_sweep(None, flags(untrained))
    with pytest.raises(UserError, match=r"--checkpoint=.*ckpt-99 does not exist.*omit --checkpoint"):
        evaluate.run_eval(None, flags(model_dir, checkpoint=os.path.join(model_dir, "ckpt-99")))
    with pytest.raises(UserError, match=r"(?s)--inception_path=.*does not exist.*tfhub.dev.*InceptionV3"):
        evaluate.run_eval(None, flags(model_dir, inception_path=str(tmp_path / "inception")))
    with pytest.raises(UserError, match="--truncation=-1.0 must be >= 0"):
        evaluate.run_eval(None, flags(model_dir, truncation=-1.0))


def test_no_validation_data_is_explained(run):
    """A TFRecord run without eval.validation_pattern gets no valid_is column, with the fix named."""
    _, hp = run
    hp_tf = evaluation_run.tiny_hp("data.kind=tfrecord,data.pattern=/data/train-*")
    assert evaluate._real_data_cfg(hp_tf, "validation") is None
    with pytest.raises(UserError, match="eval.validation_pattern"):
        list(evaluate.real_batches(hp_tf, "validation", 10))
    hp_val = evaluation_run.tiny_hp("data.kind=tfrecord,data.pattern=/data/train-*,"
                                    "eval.validation_pattern=/data/validation-*")
    assert evaluate._real_data_cfg(hp_val, "validation").pattern == "/data/validation-*"
    assert evaluate._real_data_cfg(hp, "validation").split == "test"  # digits: the fixed held-out split
