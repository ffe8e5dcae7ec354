"""The paper's qualitative tools (tf_biggan/qualitative.py): interpolation grids (Figures 8-9),
class-wise nearest neighbours in pixel and feature space (Figures 10-14), D's memorisation test
(Section 4.2). Grid sizes, report contents and the invariants each tool rests on.

Uses the session's tiny trained run (conftest.py `tiny_run`, tests/evaluation_run.py).
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import evaluation_run
from evaluation_run import request
from tf_biggan import images
from tf_biggan.errors import UserError
from tf_biggan.evaluation import qualitative, scoring as evaluator
from tf_biggan.evaluation.real_data import real_images
from tf_biggan.runs import load_run
from tf_biggan.sampling.standing_stats import apply_standing_stats

# The session's tiny run (conftest.py) is trained once: every module that reads it runs on one xdist worker.
pytestmark = pytest.mark.xdist_group("tiny_run")


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run


def _png_shape(path):
    return tuple(tf.io.decode_png(tf.io.read_file(path)).numpy().shape)


def _grid_shape(rows, cols, size=16):
    s = images.upscale_factor(size)
    gap = images.GRID_GAP
    return (rows * size * s + (rows - 1) * gap, cols * size * s + (cols - 1) * gap, 3)


def test_tile_layout():
    images = np.zeros((2, 3, 4, 4, 3), np.float32)
    images[1, 2] = 1.0  # last cell white
    grid = qualitative.tile(images, scale=2, gap=1)
    assert grid.shape == (2 * 8 + 1, 3 * 8 + 2, 3)
    assert (grid[9:, 18:] == 255).all() and (grid[:8, :8] == 128).all()  # -1..1 -> 0..255; 0 -> 128
    assert (grid[8, :] == 128).all()  # the gap row


def test_interpolation_grids(run, tmp_path):
    model_dir, hp = run
    out_dir = str(tmp_path)
    report = qualitative.run_interpolate(None, request("interpolate", model_dir, truncation=0.5, output_dir=out_dir))
    rows, steps = hp.eval.qualitative_rows, hp.eval.interpolation_steps
    for name in (qualitative.INTERPOLATE_ZC_PNG, qualitative.INTERPOLATE_CLASS_PNG):
        assert _png_shape(os.path.join(out_dir, name)) == _grid_shape(rows, steps)
    with open(os.path.join(out_dir, qualitative.INTERPOLATE_REPORT)) as f:
        on_disk = json.load(f)
    assert on_disk["alphas"][0] == 0.0 and on_disk["alphas"][-1] == 1.0 and len(on_disk["alphas"]) == steps
    for key in ("zc", "class"):
        pairs = np.array(on_disk[key]["class_pairs"])
        assert pairs.shape == (rows, 2) and (pairs[:, 0] != pairs[:, 1]).all()
    assert report["truncation"] == 0.5 and report["step"] == evaluation_run.STEPS

    # The end columns are plain samples of their endpoints: alpha = 0 is (z_a, one-hot c_a).
    g = load_run(model_dir, hp=hp).ema_generator
    apply_standing_stats(g, 0.5, hp.eval.standing_stats_passes, hp.eval.standing_stats_batch, 0)
    out = qualitative.interpolations(g, rows, steps, 0.5, seed=0)
    z_ends = qualitative.figure_latents(g.dim_z, 2 * rows, 0.5, 0, qualitative.INTERP_ZC).reshape(rows, 2, -1)
    first = g((z_ends[:, 0], out["pairs_zc"][:, 0]), training=False).numpy()
    last = g((z_ends[:, 1], out["pairs_zc"][:, 1]), training=False).numpy()
    np.testing.assert_allclose(out["zc"][:, 0], first, atol=2e-5)
    np.testing.assert_allclose(out["zc"][:, -1], last, atol=2e-5)
    # With z held constant, only the class changes along a row: the row's images are not all equal.
    assert np.abs(out["class"][:, 0] - out["class"][:, -1]).max() > 0.1


def test_nearest_neighbours_of_real_images_are_themselves(run):
    _, hp = run
    images, labels = real_images(hp, "train", max_examples=200)
    queries, q_labels = images[[3, 50, 120]], labels[[3, 50, 120]]
    batches = [(images[i:i + 64], labels[i:i + 64]) for i in range(0, 200, 64)]  # streamed in batches
    nn = qualitative.nearest_neighbors(queries, q_labels, batches, k=4)
    assert nn["indices"][:, 0].tolist() == [3, 50, 120]
    np.testing.assert_allclose(nn["distances"][:, 0], 0.0, atol=1e-3)
    assert (np.diff(nn["distances"], axis=1) >= 0).all()
    assert (labels[nn["indices"]] == q_labels[:, None]).all()  # class-wise search
    np.testing.assert_array_equal(nn["images"][:, 0], queries)
    # The same search against a brute-force reference, in a learned feature space.
    embed = lambda x: x.reshape(x.shape[0], -1)[:, ::3] * 2.0  # noqa: E731
    nn_f = qualitative.nearest_neighbors(queries, q_labels, batches, k=4, embed=embed)
    for qi in range(3):
        same = np.nonzero(labels == q_labels[qi])[0]
        d = np.linalg.norm(embed(images[same]) - embed(queries[qi:qi + 1]), axis=1)
        np.testing.assert_array_equal(nn_f["indices"][qi], same[np.argsort(d, kind="stable")[:4]])


def test_neighbors_mode_grids(run, tmp_path):
    model_dir, hp = run
    out_dir = str(tmp_path)
    report = qualitative.run_neighbors(None, request("neighbors", model_dir, output_dir=out_dir))
    rows, k = hp.eval.qualitative_rows, hp.eval.neighbors_k
    _, labels = real_images(hp, "train")
    for space, name in (("pixel", qualitative.NEIGHBORS_PIXEL_PNG), ("feature", qualitative.NEIGHBORS_FEATURE_PNG)):
        assert _png_shape(os.path.join(out_dir, name)) == _grid_shape(rows, k + 1)  # sample + k neighbours
        d = np.array(report[space]["distances"])
        idx = np.array(report[space]["indices"])
        assert d.shape == (rows, k) and np.isfinite(d).all() and (np.diff(d, axis=1) >= 0).all()
        assert (labels[idx] == np.array(report["classes"])[:, None]).all()
    assert os.path.exists(os.path.join(out_dir, qualitative.NEIGHBORS_REPORT))


def test_memorization_shares(run, tmp_path):
    model_dir, hp = run
    out_dir = str(tmp_path)
    report = qualitative.run_memorization(None, request("memorization", model_dir, output_dir=out_dir))
    for key in ("train_real_share", "heldout_real_share"):
        assert 0.0 <= report[key] <= 1.0
    assert report["train_examples"] == 1433 and report["heldout_examples"] == 364  # the digits' fixed split
    assert _png_shape(os.path.join(out_dir, qualitative.MEMORIZATION_PNG))[2] in (3, 4)
    with open(os.path.join(out_dir, qualitative.MEMORIZATION_REPORT)) as f:
        assert json.load(f)["heldout_real_share"] == pytest.approx(report["heldout_real_share"])
    # D was restored from the checkpoint, not freshly initialised: a new D scores differently.
    from tf_biggan.models import Discriminator

    d_run = load_run(model_dir, hp=hp, ema_generator=False, discriminator=True)
    d, step = d_run.discriminator, d_run.step
    fresh = Discriminator(hp.model, hp.data.num_classes, name="discriminator")
    fresh.build_for_input(2)
    x, y = real_images(hp, "validation", max_examples=20)
    assert step == evaluation_run.STEPS
    assert not np.allclose(qualitative.discriminator_outputs(d, [(x, y)]),
                           qualitative.discriminator_outputs(fresh, [(x, y)]))
    # The shares are the share of positive logits.
    shares = qualitative.memorization_shares([2.0, 1.0, -1.0, 0.5], [-3.0, 0.1])
    assert shares["train_real_share"] == 0.75 and shares["heldout_real_share"] == 0.5
    assert shares["gap"] == pytest.approx(0.25)


def test_memorization_user_errors(tmp_path):
    from tf_biggan.config import save_hparams

    hp = evaluation_run.tiny_hp("data.kind=tfrecord,data.pattern=/data/train-*")
    model_dir = str(tmp_path / "tfrecord_run")
    save_hparams(hp, os.path.join(model_dir, "hparams.yaml"))
    with pytest.raises(UserError, match=r"held-out images.*eval.validation_pattern=/data/imagenet/validation-\*"):
        qualitative.run_memorization(None, request("memorization", model_dir))
    digits_dir = str(tmp_path / "digits_run")
    save_hparams(evaluation_run.tiny_hp(), os.path.join(digits_dir, "hparams.yaml"))
    with pytest.raises(UserError, match="no checkpoint yet"):
        qualitative.run_memorization(None, request("memorization", digits_dir))
    with pytest.raises(UserError, match=r"--checkpoint=.*does not exist"):
        qualitative.run_memorization(None, request("memorization", digits_dir, checkpoint=os.path.join(digits_dir, "ckpt-1")))


def test_figure_latents_are_not_the_sweeps_at_any_seed():
    """The qualitative figures draw from their own seed stream: at no pair of seeds do they show the
    latents the sweep scored (before streams, qualitative --seed=0 drew the sweep's --seed=11 z)."""
    sweep_z = {s: evaluator.eval_latents(8, 0, 4, 0.0, seed=s).numpy() for s in range(0, 40)}
    for seed in range(0, 40):
        for figure in (qualitative.INTERP_ZC, qualitative.INTERP_CLASS, qualitative.NEIGHBORS):
            z = qualitative.figure_latents(8, 4, 0.0, seed, figure)
            assert not any(np.allclose(z, other) for other in sweep_z.values()), (seed, figure)
    # Figures differ from each other, and each is reproducible.
    a = qualitative.figure_latents(8, 4, 0.0, 0, qualitative.INTERP_ZC)
    b = qualitative.figure_latents(8, 4, 0.0, 0, qualitative.NEIGHBORS)
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(a, qualitative.figure_latents(8, 4, 0.0, 0, qualitative.INTERP_ZC))
