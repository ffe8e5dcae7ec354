"""TF-Hub export: the official modules' contract, truncation-indexed standing statistics (Appendix C.1).

One export of the session's tiny run serves every test that reads a module (conftest.py `tiny_module`)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import evaluation_run
from tf_biggan.hub.export import export_generator, standing_stats_grid
from tf_biggan.sampling.standing_stats import set_bn_stats

# The session's tiny run (conftest.py) is trained once: every module that reads it runs on one xdist worker.
pytestmark = pytest.mark.xdist_group("tiny_run")

GRID = [0.5, 1.0]  # evaluation_run's eval.export_truncations


@pytest.fixture(scope="module")
def exported(tiny_run, tiny_module):
    """The session's tiny run exported by `--mode=export` with its defaults (conftest.py `tiny_module`),
    the run's EMA-G restored in memory, and the per-truncation BN statistics the export must hold
    (standing statistics over eval.export_truncations, Appendix C.1)."""
    from tf_biggan.runs import load_run

    model_dir, hp = tiny_run
    run = load_run(model_dir, hp=hp)
    g = run.ema_generator
    tables = standing_stats_grid(g, hp.eval.export_truncations, num_passes=hp.eval.standing_stats_passes,
                                 batch_size=hp.eval.standing_stats_batch, seed=hp.train.seed)
    return g, tiny_module, tables, run


def _inputs():
    rng = np.random.RandomState(0)
    z = rng.randn(4, 60).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[[0, 3, 7, 9]]
    y[3] = 0.5 * y[3] + 0.5 * np.eye(10, dtype=np.float32)[1]  # a class mixture
    return z, y


def _reference(g, tables, weights_fn):
    """G with BN statistics set by hand: row weights over the grid (+ untruncated last row)."""
    stats = {}
    for mean_path, (means, variances) in tables.items():
        stats[mean_path] = weights_fn(means)
        stats[mean_path.replace("moving_mean", "moving_var")] = weights_fn(variances)
    set_bn_stats(g, stats)
    z, y = _inputs()
    return g((z, y), training=False).numpy()


def test_hub_load_in_a_fresh_process_matches_the_in_memory_generator(exported, tmp_path):
    g, path, tables, _ = exported
    assert GRID == [0.5, 1.0]
    z, y = _inputs()
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    script = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf, tensorflow_hub as hub
        m = hub.load({path!r})
        z = tf.constant(np.load({str(tmp_path / 'z.npy')!r})); y = tf.constant(np.load({str(tmp_path / 'y.npy')!r}))
        outs = [m.signatures['default'](z=z, y=y, truncation=tf.constant(t))['default'].numpy() for t in (1.0, 0.75, 0.0)]
        np.save({str(tmp_path / 'out.npy')!r}, np.stack(outs))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=str(tmp_path))
    got = np.load(tmp_path / "out.npy")
    on_grid = _reference(g, tables, lambda rows: rows[1])  # truncation 1.0 is grid row 1
    between = _reference(g, tables, lambda rows: 0.5 * rows[0] + 0.5 * rows[1])  # 0.75: halfway 0.5 -> 1.0
    untruncated = _reference(g, tables, lambda rows: rows[-1])
    np.testing.assert_allclose(got[0], on_grid, atol=1e-5)
    np.testing.assert_allclose(got[1], between, atol=1e-5)
    np.testing.assert_allclose(got[2], untruncated, atol=1e-5)
    assert np.abs(got[0] - got[2]).max() > 1e-4  # the statistics really differ by truncation


def test_signature_names_shapes_dtypes_and_metadata(exported):
    """--mode=export's defaults: the LATEST checkpoint, the run's eval.export_truncations."""
    _, path, _, run = exported
    m = tf.saved_model.load(path)
    fn = m.signatures["default"]
    _, kwargs = fn.structured_input_signature
    assert {k: (v.shape.as_list(), v.dtype) for k, v in kwargs.items()} == {
        "z": ([None, 60], tf.float32), "y": ([None, 10], tf.float32), "truncation": ([], tf.float32)}
    outputs = fn.structured_outputs
    assert list(outputs) == ["default"] and outputs["default"].shape.as_list() == [None, 16, 16, 3]
    images = fn(z=tf.zeros((2, 60)), y=tf.one_hot([1, 2], 10), truncation=tf.constant(0.4))["default"]
    assert images.dtype == tf.float32 and float(tf.reduce_max(tf.abs(images))) <= 1.0
    with open(os.path.join(path, "assets", "metadata.json")) as f:
        meta = json.load(f)
    assert (meta["resolution"], meta["dim_z"], meta["num_classes"]) == (16, 60, 10)
    assert meta["step"] == run.step == evaluation_run.STEPS and meta["checkpoint"] == os.path.abspath(run.checkpoint)
    assert meta["truncation_grid"] == GRID and meta["latent_convention"] == "paper_resample"
    assert meta["hparams"]["model"]["ch"] == 4
    z = m.signatures["sample_latents"](batch_size=tf.constant(500), seed=tf.constant(3, tf.int64),
                                       truncation=tf.constant(0.5))["z"]
    assert z.shape == (500, 60) and float(tf.reduce_max(tf.abs(z))) <= 0.5
    again = m.signatures["sample_latents"](batch_size=tf.constant(500), seed=tf.constant(3, tf.int64),
                                           truncation=tf.constant(0.5))["z"]
    np.testing.assert_array_equal(z.numpy(), again.numpy())


def test_loads_as_hub_keras_layer_in_a_tf_keras_model(exported):
    import tensorflow_hub as hub
    import tf_keras

    _, path, _, _ = exported
    z, y = _inputs()
    layer = hub.KerasLayer(path, signature="default", output_key="default",
                           arguments=dict(truncation=tf.constant(0.5)))
    zi, yi = tf_keras.Input((60,), name="z"), tf_keras.Input((10,), name="y")
    model = tf_keras.Model([zi, yi], layer(dict(z=zi, y=yi)))
    direct = hub.load(path).signatures["default"](z=tf.constant(z), y=tf.constant(y),
                                                   truncation=tf.constant(0.5))["default"].numpy()
    np.testing.assert_allclose(model.predict([z, y], verbose=0), direct, atol=1e-6)


def test_export_replaces_atomically(exported, tmp_path):
    g = exported[0]
    target = tmp_path / "m"
    (target / "assets").mkdir(parents=True)  # an earlier export at the same path
    (target / "assets" / "metadata.json").write_text(json.dumps({"step": 1}))
    (target / "stale.txt").write_text("from the earlier export")
    export_generator(g, str(target), [1.0], num_passes=1, batch_size=8, metadata={"step": 2})
    with open(target / "assets" / "metadata.json") as f:
        assert json.load(f)["step"] == 2
    assert not (target / "stale.txt").exists()  # replaced whole, not merged
    assert sorted(os.listdir(tmp_path)) == ["m"]  # no temporary left beside it


def test_export_cli_exports_the_checkpoint_it_is_given(tiny_run, tmp_path):
    """Through the real CLI: --checkpoint=<an earlier checkpoint> exports THAT step (it used to
    export the latest silently) and honours the run's eval.* overrides (here eval.export_truncations,
    once dropped); a missing checkpoint is a user error naming the flag."""
    from tf_biggan.runs import load_run

    model_dir, hp = tiny_run
    earlier = os.path.join(model_dir, f"ckpt-{evaluation_run.STEPS // 2}")
    out = tmp_path / "hub"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    cli = [sys.executable, "-m", "tf_biggan.main", "--mode=export", f"--model_dir={model_dir}"]
    proc = subprocess.run(cli + [f"--checkpoint={earlier}", f"--export_dir={out}",
                                 "--hparams_overrides=eval.export_truncations=[0.5,1.5]"],
                          cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta = json.loads((out / "assets" / "metadata.json").read_text())
    assert meta["step"] == evaluation_run.STEPS // 2 and meta["checkpoint"] == os.path.abspath(earlier)
    assert meta["truncation_grid"] == [0.5, 1.5]
    assert f"step {evaluation_run.STEPS // 2}" in proc.stdout
    # The module is the EARLIER checkpoint's EMA-G with statistics at truncation 1.5 (grid row 1).
    g = load_run(model_dir, earlier, hp=hp).ema_generator
    tables = standing_stats_grid(g, [0.5, 1.5], num_passes=hp.eval.standing_stats_passes,
                                 batch_size=hp.eval.standing_stats_batch, seed=hp.train.seed)
    expected = _reference(g, tables, lambda rows: rows[1])
    z, y = _inputs()
    module = tf.saved_model.load(str(out))
    got = module.signatures["default"](z=tf.constant(z), y=tf.constant(y), truncation=tf.constant(1.5))["default"]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    # A missing checkpoint: a UserError naming the flag (the CLI prints any as one line, exit 2:
    # tests/test_cli.py), in this process (one TensorFlow start less), and nothing written.
    from tf_biggan.errors import UserError

    with pytest.raises(UserError, match=r"--checkpoint=.*ckpt-7 does not exist"):
        evaluation_run.run("export", None, model_dir, checkpoint=f"{model_dir}/ckpt-7", export_dir=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_export_mode_user_errors(tmp_path):
    from evaluation_run import run as run_mode
    from tf_biggan.errors import UserError

    run = tmp_path / "run"
    with pytest.raises(UserError, match="--model_dir=.* does not exist"):
        run_mode("export", None, str(run))
    run.mkdir()
    with pytest.raises(UserError, match="has no hparams.yaml"):
        run_mode("export", None, str(run))
