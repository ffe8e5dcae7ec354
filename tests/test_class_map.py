"""`data.class_map` (tf_biggan/data/class_map.py): reading the map against prepare_data's labels.txt,
the rows a fine-tune starts from (numpy), refusals through the real CLI, and (slow) a class-mapped
fine-tune of an imported reduced-width module from prepare_data's shards through the CLI.

The in-process start of a fine-tune (`pretrained_start` on an imported module) is tested beside the
importer, in tests/test_hub_import.py, where the imported run already exists.
"""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from tf_biggan.data.class_map import parse_class_map, read_class_map, start_rows
from tf_biggan.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = ["beagle", "golden retriever", "lorry", "tabby"]  # labels.txt: folders in sorted order


def _data(tmp_path, text, names=NAMES, num_classes=None, kind="tfrecord"):
    shards = tmp_path / "shards"
    shards.mkdir(exist_ok=True)
    if names is not None:
        (shards / "labels.txt").write_text("".join(n + "\n" for n in names))
    path = tmp_path / "map.txt"
    path.write_text(text)
    return SimpleNamespace(kind=kind, pattern=str(shards / "train-*"), num_classes=num_classes or len(NAMES),
                           class_map=str(path))


def test_names_are_read_against_labels_txt(tmp_path):
    text = "# my class   ImageNet\n\ngolden retriever 207\n  tabby\t281  \nbeagle 162\n"
    assert read_class_map(_data(tmp_path, text)) == {1: 207, 3: 281, 0: 162}


def test_without_labels_txt_the_classes_are_ids(tmp_path):
    assert read_class_map(_data(tmp_path, "0 1\n9 999\n", names=None, num_classes=10, kind="digits")) == {0: 1, 9: 999}
    with pytest.raises(UserError, match=r"line 1: class 'beagle'.*the classes are the ids 0\.\.9"):
        read_class_map(_data(tmp_path, "beagle 162\n", names=None, num_classes=10, kind="digits"))


@pytest.mark.parametrize("text,match", [
    ("beagle 162\ntabbby 281\n", r"map\.txt line 2: class 'tabbby' is not in .*labels\.txt \(did you mean 'tabby'\?\)"),
    ("beagle 1000\n", r"map\.txt line 1: ImageNet index 1000 is out of range: the module has classes 0\.\.999"),
    ("beagle -1\n", r"line 1: ImageNet index -1 is out of range"),
    ("beagle 162\ntabby 281\nbeagle 163\n", r"line 3: class 'beagle' is mapped twice \(to 162 and 163\)"),
    ("beagle dog\n", r"line 1: 'dog' is not an ImageNet class index"),
    ("beagle\n", r"line 1: 'beagle' is not 'CLASS IMAGENET_INDEX'"),
    ("# nothing yet\n", r"map\.txt maps no class"),
])
def test_bad_maps_are_one_line_errors_naming_the_file(tmp_path, text, match):
    with pytest.raises(UserError, match=match) as info:
        read_class_map(_data(tmp_path, text))
    assert "\n" not in str(info.value) and "data.class_map=" in str(info.value)


def test_labels_txt_must_name_data_num_classes(tmp_path):
    with pytest.raises(UserError, match=r"names 4 classes but data.num_classes is 5; set data.num_classes=4"):
        read_class_map(_data(tmp_path, "beagle 162\n", num_classes=5))
    data = _data(tmp_path, "beagle 162\n")
    data.class_map = str(tmp_path / "nope.txt")
    with pytest.raises(UserError, match=r"data.class_map=.*nope.txt: no such file"):
        read_class_map(data)


def test_two_classes_may_share_an_imagenet_class():
    assert parse_class_map("a 5\nb 5\n", "m", 2, ["a", "b"]) == {0: 5, 1: 5}


def test_start_rows_mapped_rows_are_the_modules_and_the_others_sit_at_the_mean_norm():
    rng = np.random.default_rng(0)
    module = rng.standard_normal((1000, 128)) * rng.uniform(0.5, 3.0, (1000, 1))  # rows of unequal norms
    fresh = rng.standard_normal((6, 128)) * 0.1
    rows = start_rows(module, fresh, {0: 207, 3: 999, 5: 207})
    assert rows.dtype == np.float32 and rows.shape == (6, 128)
    for k, index in ((0, 207), (3, 999), (5, 207)):
        np.testing.assert_array_equal(rows[k], module[index].astype(np.float32))
    mean_norm = np.mean(np.sqrt(np.sum(module ** 2, axis=1)))
    for k in (1, 2, 4):
        assert np.linalg.norm(rows[k].astype(np.float64)) == pytest.approx(mean_norm, rel=1e-6)
        cosine = rows[k] @ fresh[k] / (np.linalg.norm(rows[k]) * np.linalg.norm(fresh[k]))
        assert cosine == pytest.approx(1.0, abs=1e-6)  # the fresh draw's direction, rescaled
    # No map: every row is the fresh direction at the mean norm.
    np.testing.assert_allclose(np.linalg.norm(start_rows(module, fresh, {}), axis=1), mean_norm, rtol=1e-6)


def _cli(*args, check=True):
    out = subprocess.run([sys.executable, "-m", "tf_biggan.main", *args], cwd=ROOT, capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def _fake_import(tmp_path):
    """A run directory as --mode=import_hub leaves it, as far as the TF-free checks read it."""
    from tf_biggan.config import load_hparams, save_hparams

    run = tmp_path / "run"
    run.mkdir()
    save_hparams(load_hparams(os.path.join(ROOT, "hparams", "biggan_deep_128.yaml")), str(run / "hparams.yaml"))
    (run / "import.json").write_text(json.dumps({"num_classes": 1000}))
    return run


def test_a_bad_map_is_refused_through_the_cli_before_training(tmp_path):
    run = _fake_import(tmp_path)
    data = _data(tmp_path, "beagle 162\ntabbby 281\n")
    out = _cli("--mode=train", f"--model_dir={run}", "--hparams_overrides=data.kind=tfrecord,"
               f"data.pattern={data.pattern},data.num_classes=4,data.class_map={data.class_map}", check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("tf-biggan: error:")]
    assert len(errors) == 1 and f"data.class_map={data.class_map} line 2: class 'tabbby'" in errors[0]


@pytest.mark.slow
def test_class_mapped_fine_tune_through_the_cli(tmp_path):
    """prepare_data on a 3-class folder, import_hub of a reduced-width biggan-deep-128/1, then one
    fine-tuning step with the recipe and a map of two classes: EMA-G's embedding holds the module's rows
    of the mapped ImageNet classes (to the drift of one step at the recipe's learning rate and EMA) and
    the third class's row at the module rows' mean norm."""
    from PIL import Image

    import tensorflow as tf

    from official_hub_layout import write_official_module

    rng = np.random.default_rng(1)
    for name in ("beagle", "lorry", "tabby"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "images" / name / f"{i}.png")
    shards, module, run = tmp_path / "shards", tmp_path / "module", tmp_path / "run"
    _cli("--mode=prepare_data", f"--image_dir={tmp_path / 'images'}", f"--output_dir={shards}")
    assert (shards / "labels.txt").read_text().split() == ["beagle", "lorry", "tabby"]
    info = write_official_module("biggan-deep-128/1", str(module), ch=4, seed=4)
    _cli("--mode=import_hub", f"--module={module}", f"--model_dir={run}")
    (tmp_path / "map.txt").write_text("# class  ImageNet index\nbeagle 162\ntabby 281\n")
    out = _cli("--mode=train", f"--model_dir={run}", "--hparams=finetune_biggan_deep_128", "--train_steps=1",
               f"--hparams_overrides=data.pattern={shards}/train-*,data.num_classes=3,data.class_map={tmp_path / 'map.txt'},"
               "train.batch_size=2,train.save_every=1,train.log_every=1,train.sv_every=1,train.sample_every=100,"
               "train.sample_stats_passes=1,train.sample_stats_batch=2,augment.kind=none,eval.best_fid_every=0")
    assert "class embedding: 2 of 3 rows from the module's ImageNet rows (data.class_map), 1 at" in out.stdout + out.stderr
    reader = tf.train.load_checkpoint(str(run / "ckpt-1"))
    rows = reader.get_tensor("ema_generator/shared_embedding..kernel/.ATTRIBUTES/VARIABLE_VALUE")  # '.' escaped
    module_rows = info["values"]["linear/w/ema_0.9999"].astype(np.float64)
    assert rows.shape == (3, 128)
    np.testing.assert_allclose(rows[0], module_rows[162], atol=1e-5)
    np.testing.assert_allclose(rows[2], module_rows[281], atol=1e-5)
    mean_norm = np.mean(np.linalg.norm(module_rows, axis=1))
    assert np.linalg.norm(rows[1]) == pytest.approx(mean_norm, rel=1e-4)
