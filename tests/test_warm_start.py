"""Warm start from another run (train.init_from / --init_from, training/warm_start.py): the first step's
weights are the source checkpoint's, read back from the file (tf.train.load_checkpoint); the class tables
follow data.class_map; another architecture is one line naming the variable; a warm-started run killed
with SIGKILL resumes from its own checkpoint (the source gone) to the uninterrupted run's report.

The source is the session's tiny_run (tests/evaluation_run.py: ch = 4, 10 digit classes, 60 steps).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import yaml

from evaluation_run import tiny_hp
from tf_biggan.errors import UserError
from tf_biggan.models.variables_checkpoint import checkpoint_key, named_variables
from tf_biggan.training.trainer import GANTrainer
from tf_biggan.training.warm_start import BN_STATISTICS, Source, check_architecture, pretrained_start

# The source is the session's tiny_run: on the worker that trained it (conftest.py), not a second copy.
pytestmark = pytest.mark.xdist_group("tiny_run")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NETS = (("generator", "g"), ("ema_generator", "ema_g"), ("discriminator", "d"))


def _start(model_dir, extra=""):
    """A trainer of the tiny configuration + `extra`, warm-started; (trainer, its fresh weights, log)."""
    trainer = GANTrainer(tiny_hp(extra), model_dir=model_dir, verbose=False)
    trainer.weights_ready()
    fresh = {part: {n: v.numpy() for n, v in named_variables(getattr(trainer, a)).items()} for part, a in NETS}
    lines = []
    pretrained_start(trainer, model_dir, log=lines.append)
    return trainer, fresh, lines


def _is_statistic(name):
    return name.rsplit(".", 1)[-1] in BN_STATISTICS


def test_first_step_weights_are_the_sources(tiny_run, tmp_path):
    """Every variable of G, EMA-G and D but BN statistics equals the source checkpoint's (SN vectors
    included); the statistics are the fresh layer's (recomputed, not copied); Adam and the step are fresh."""
    source = tf.train.latest_checkpoint(tiny_run[0])
    reader = tf.train.load_checkpoint(source)
    trainer, fresh, lines = _start(str(tmp_path), f"train.init_from={tiny_run[0]}")
    compared = 0
    for part, attr in NETS:
        for name, variable in named_variables(getattr(trainer, attr)).items():
            theirs = reader.get_tensor(checkpoint_key(part, name))
            if _is_statistic(name):
                np.testing.assert_array_equal(variable.numpy(), fresh[part][name], err_msg=name)
                if name.endswith(("moving_mean", "moving_var")):  # the source's moved away from the start
                    assert not np.array_equal(theirs, fresh[part][name]), name
            else:
                np.testing.assert_array_equal(variable.numpy(), theirs, err_msg=f"{part}/{name}")
                compared += 1
    assert compared > 60 and any(n.endswith("sn_u") for n in named_variables(trainer.d))
    assert int(trainer.step.numpy()) == 0
    assert int(trainer.g_opt.iterations.numpy()) == 0 and int(trainer.d_opt.iterations.numpy()) == 0
    assert lines == [f"warm start from {source} (step 60): generator, ema_generator, discriminator copied, class "
                     "embedding copied; BN statistics recomputed, optimisers fresh"]
    with open(tmp_path / "warm_start.json") as f:
        record = json.load(f)
    assert record["checkpoint"] == source and record["source_step"] == 60 and record["init_from"] == tiny_run[0]


def _mean_norm(rows):
    return np.mean(np.linalg.norm(rows.astype(np.float64), axis=1))


def test_class_tables_of_g_and_d_follow_the_class_map(tiny_run, tmp_path):
    """Digits 5-9 (data.classes) from a 10-class source: mapped classes start from their source class's
    row of G's embedding, EMA-G's embedding and D's projection; the others (all five without a map) keep
    the fresh draw's direction at the mean norm of that table's source rows."""
    source = tf.train.latest_checkpoint(tiny_run[0])
    reader = tf.train.load_checkpoint(source)
    (tmp_path / "map.txt").write_text("# target class  source class\n0 5\n1 6\n3 8\n")
    subset = f"data.classes=[5,6,7,8,9],data.num_classes=5,train.init_from={source}"
    tables = {"generator": ("g", "shared"), "ema_generator": ("ema_g", "shared"), "discriminator": ("d", "embed")}
    for mapped in ({0: 5, 1: 6, 3: 8}, {}):
        class_map = f",data.class_map={tmp_path / 'map.txt'}" if mapped else ""
        trainer, fresh, lines = _start(str(tmp_path / f"run{len(mapped)}"), subset + class_map)
        for part, (attr, layer) in tables.items():
            name = "shared_embedding.kernel" if layer == "shared" else "embed.kernel"
            theirs = reader.get_tensor(checkpoint_key(part, name)).astype(np.float64)
            rows = getattr(getattr(trainer, attr), layer).kernel.numpy().astype(np.float64)
            start = fresh[part][name].astype(np.float64)
            assert rows.shape == (5, theirs.shape[1])
            for k in range(5):
                if k in mapped:
                    np.testing.assert_array_equal(rows[k], theirs[mapped[k]], err_msg=f"{part} row {k}")
                else:
                    assert np.linalg.norm(rows[k]) == pytest.approx(_mean_norm(theirs), rel=1e-6)
                    cosine = rows[k] @ start[k] / np.linalg.norm(rows[k]) / np.linalg.norm(start[k])
                    assert cosine == pytest.approx(1, abs=1e-6), (part, k)
        note = ("class embedding: 3 of 5 rows from the source's rows of their class (data.class_map), 2 at the "
                "source rows' mean norm" if mapped else "class embedding re-initialised (10 -> 5 classes) at the "
                "source rows' mean norm")
        assert note in lines[-1] and "D's projection alike" in lines[-1]


def test_another_architecture_is_one_line_naming_the_first_variable(tiny_run, tmp_path):
    source = tf.train.latest_checkpoint(tiny_run[0])
    theirs = dict(tf.train.list_variables(source))[checkpoint_key("generator", "linear.kernel")]
    trainer = GANTrainer(tiny_hp(f"model.ch=8,train.init_from={source}"), verbose=False)
    with pytest.raises(UserError) as error:
        pretrained_start(trainer, str(tmp_path))
    assert str(error.value) == (
        f"train.init_from={source}: another architecture: generator variable linear.kernel is "
        f"{tuple(trainer.g.linear.kernel.shape)} here and {tuple(theirs)} in {source}; start from a run of the "
        "same model.* (the source's hparams.yaml), or train from scratch")
    assert tuple(trainer.g.linear.kernel.shape) != tuple(theirs)
    # A variable on one side only (here: a source without D's projection) is named too.
    shapes = {checkpoint_key(part, name): tuple(v.shape) for part, attr in NETS
              for name, v in named_variables(getattr(trainer, attr)).items()}
    del shapes[checkpoint_key("discriminator", "embed.kernel")]
    shapes[checkpoint_key("generator", "extra.kernel")] = (3,)
    embed = re.escape(str(tuple(trainer.d.embed.kernel.shape)))
    with pytest.raises(UserError, match=rf"^S: another architecture: discriminator variable embed.kernel is {embed} "
                                        r"here and missing in the source; "):
        check_architecture({"discriminator": trainer.d}, Source("ckpt", "S", shapes))
    with pytest.raises(UserError, match=r"^S: another architecture: generator variable extra.kernel is missing here "
                                        r"and \(3,\) in ckpt; "):
        check_architecture({"generator": trainer.g}, Source("ckpt", "S", shapes))


def test_no_source_and_bad_sources_are_one_line_errors(tmp_path):
    trainer = GANTrainer(tiny_hp(), verbose=False)
    assert pretrained_start(trainer, str(tmp_path)) is None  # fresh weights
    (tmp_path / "empty").mkdir()
    for init_from, message in ((tmp_path / "nothing", "is neither a run directory nor a checkpoint prefix"),
                               (tmp_path / "empty", "has no checkpoint: train it first")):
        trainer.hp = tiny_hp(f"train.init_from={init_from}")
        with pytest.raises(UserError, match=f"^train.init_from={init_from}.* {message}") as error:
            pretrained_start(trainer, str(tmp_path))
        assert "\n" not in str(error.value)


def test_data_classes_keeps_those_digits_relabelled_in_order():
    """data.classes (the benchmark's source 0-4 and target 5-9): the split's images of those digits, in
    split order, digit classes[k] -> k; a class count that is not len(classes) is refused by name."""
    from tf_biggan.config import HParamsError
    from tf_biggan.data.digits import load_digits_split

    images, labels = load_digits_split("test")
    for classes in ((5, 6, 7, 8, 9), (3, 0)):
        keep = np.isin(labels, classes)
        sub_images, sub_labels = load_digits_split("test", classes=classes)
        np.testing.assert_array_equal(sub_images, images[keep])
        np.testing.assert_array_equal(sub_labels, [classes.index(c) for c in labels[keep]])
    few, few_labels = load_digits_split("train", max_per_class=10, classes=(5, 6))
    assert np.bincount(few_labels).tolist() == [10, 10]
    with pytest.raises(HParamsError, match=r"data.num_classes must be 5, the number of data.classes"):
        tiny_hp("data.classes=[5,6,7,8,9]")
    with pytest.raises(UserError, match=r"data.classes=\[5, 10\]: the digits are classes 0..9"):
        load_digits_split("test", classes=(5, 10))


# SIGKILL right after the checkpoint of step 2 is on disk: the CLI (tf_biggan.main) with a save that dies.
KILL_AFTER_FIRST_SAVE = textwrap.dedent("""
    import os, signal, sys
    from tf_biggan.training import checkpoints

    save = checkpoints.RunCheckpoint.save

    def save_and_die(self):
        path = save(self)
        os.kill(os.getpid(), signal.SIGKILL)

    checkpoints.RunCheckpoint.save = save_and_die
    from tf_biggan import main
    sys.argv = ["tf-biggan", *sys.argv[1:]]
    main.run()
""")


def _train(model_dir, source, *prefix):
    args = [*prefix, "--mode=train", f"--model_dir={model_dir}", f"--init_from={source}", "--train_steps=4",
            "--hparams_overrides=model.ch=4,train.batch_size=16,train.steps_per_loop=2,train.save_every=2,"
            "train.log_every=2,train.sample_every=4,train.sv_every=4,train.sample_stats_passes=1"]
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def warm_run(tiny_run, tmp_path_factory):
    """(a copy of tiny_run, a run warm-started from it by the CLI's --init_from: 4 steps, ckpt-2 and ckpt-4,
    the completed process)."""
    root = tmp_path_factory.mktemp("warm")
    source = str(root / "source")
    shutil.copytree(tiny_run[0], source, ignore=shutil.ignore_patterns("eval*", "samples", "train", "best_fid"))
    out = _train(root / "straight", source, "-m", "tf_biggan.main")
    assert out.returncode == 0, out.stderr[-3000:]
    return source, root / "straight", out


def test_init_from_flag_through_the_cli(warm_run):
    """--init_from sets train.init_from: the run's hparams.yaml records it, warm_start.json and the log name
    the checkpoint it resolved to, and the run trains from it."""
    source, straight, out = warm_run
    assert f"warm start from {source}/ckpt-60 (step 60): generator, ema_generator, discriminator copied" in out.stdout
    assert yaml.safe_load((straight / "hparams.yaml").read_text())["train"]["init_from"] == source
    record = json.loads((straight / "warm_start.json").read_text())
    assert record["checkpoint"] == f"{source}/ckpt-60" and record["init_from"] == source
    assert json.loads((straight / "train_report.json").read_text())["step"] == 4


@pytest.mark.slow
def test_a_killed_warm_start_resumes_from_its_own_checkpoint(warm_run, tmp_path):
    """A warm-started run SIGKILLed after its first checkpoint, rerun with the same command once the source
    is gone, resumes from its own checkpoint and ends with the uninterrupted run's report and weights."""
    source, straight, _ = warm_run
    killed = tmp_path / "killed"
    died = _train(killed, source, "-c", KILL_AFTER_FIRST_SAVE)
    assert died.returncode == -signal.SIGKILL, died.stderr[-3000:]
    assert tf.train.latest_checkpoint(str(killed)).endswith("ckpt-2")
    os.rename(source, source + ".gone")  # the rerun must not read it
    try:
        rerun = _train(killed, source, "-m", "tf_biggan.main")
    finally:
        os.rename(source + ".gone", source)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"resumed from {killed}/ckpt-2 at step 2" in rerun.stdout and "warm start" not in rerun.stdout
    reports = [json.loads((run / "train_report.json").read_text()) for run in (straight, killed)]
    for key in ("step", "g_loss", "d_loss"):
        assert reports[1][key] == pytest.approx(reports[0][key], rel=1e-4, abs=1e-6), key
    assert os.path.basename(reports[1]["checkpoint"]) == os.path.basename(reports[0]["checkpoint"]) == "ckpt-4"
    a, b = (tf.train.load_checkpoint(str(run / "ckpt-4")) for run in (straight, killed))
    for key in a.get_variable_to_shape_map():
        if key.startswith(("generator/", "discriminator/", "ema_generator/")):
            np.testing.assert_allclose(a.get_tensor(key), b.get_tensor(key), rtol=1e-5, atol=1e-6, err_msg=key)


def test_the_digits_recipe_warm_starts_a_digits_run():
    """hparams/finetune_digits.yaml (bench_transfer's best arm) keeps digits.yaml's architecture, so a run of
    the embedded default is a source it can start from, and it trains without augmentation."""
    from tf_biggan.config import load_hparams

    recipe = load_hparams("finetune_digits", "data.classes=[5,6,7,8,9],data.num_classes=5,data.max_per_class=10")
    assert recipe.model == load_hparams("digits").model
    assert (recipe.augment.kind, recipe.train.train_steps, recipe.eval.fid_reference) == ("none", 500, "validation")
