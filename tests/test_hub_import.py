"""Importing the official TF-Hub generators (`--mode=import_hub`) against an independent reading.

The modules are written by `official_hub_layout` in the official layouts from random weights (reduced
widths); the reference is `hub_reference_forward`, a numpy forward pass of the module architecture
written from the published converters' reading, block by block, that reads the module's variables by
their names: a variable landing in the wrong place (a permutation, a transpose, a swapped block) changes
the images. Each kind's resolution is 128 px here; benchmarks/check_hub_import.py runs all six kinds at
the real widths against the PyTorch references.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from hub_reference_forward import module_forward
from official_hub_layout import write_official_module
from tf_biggan.errors import UserError
from tf_biggan.hub.importer import import_hub, read_module

pytestmark = pytest.mark.xdist_group("hub_import")

KINDS = {"biggan-128/2": 8, "biggan-deep-128/1": 4}  # ch: D's attention at 64 px needs ch >= 8 for /2


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """{kind: (module dir, run dir)} for both families, imported in-process."""
    root = tmp_path_factory.mktemp("hub")
    out = {}
    for kind, ch in KINDS.items():
        module = str(root / kind.replace("/", "_"))
        write_official_module(kind, module, ch=ch, seed=1)
        run = str(root / ("run_" + kind.replace("/", "_")))
        import_hub(module, run, log=lambda *_: None)
        out[kind] = (module, run)
    return out


def _latents(dim_z, truncation, n=2, seed=0):
    """The modules' own sampling: z = truncation * truncnorm(-2, 2), one-hot y."""
    z = truncation * scipy.stats.truncnorm.rvs(-2, 2, size=(n, dim_z), random_state=seed)
    y = np.zeros((n, 1000), np.float32)
    y[np.arange(n), [3, 997][:n]] = 1.0
    return z.astype(np.float32), y


@pytest.mark.parametrize("kind", list(KINDS))
def test_imported_generator_equals_the_module_forward(imported, kind):
    """At truncations 0.2, 0.5 and 1.0 (deep: the module's statistics at that truncation, no passes;
    /2: its one set), within float32 round-off of the float64 reference."""
    from tf_biggan.runs import load_run
    from tf_biggan.sampling.standing_stats import apply_standing_stats

    module_dir, run_dir = imported[kind]
    module = read_module(module_dir)
    g = load_run(run_dir).ema_generator
    for truncation in (0.2, 0.5, 1.0):
        if module.family == "biggan_deep":
            apply_standing_stats(g, truncation, num_passes=1, batch_size=2, convention="hub_notebook")
        z, y = _latents(module.dim_z, truncation)
        ours = g((tf.constant(z), tf.constant(y)), training=False).numpy()
        ref = module_forward(module.variables, module.family, z, y, truncation, stacks=module.stacks)
        assert ours.shape == ref.shape == (2, 128, 128, 3)
        assert np.abs(ref).max() > 0.05  # not a blank image
        np.testing.assert_allclose(ours, ref, atol=2e-4, err_msg=f"{kind} at truncation {truncation}")


def test_import_record_and_hparams(imported):
    from tf_biggan.config import load_hparams

    module_dir, run_dir = imported["biggan-deep-128/1"]
    with open(os.path.join(run_dir, "import.json")) as f:
        record = json.load(f)
    assert record["kind"] == "biggan-deep-128/1" and record["ch"] == 4 and record["dim_z"] == 128
    mapped = record["generator_and_ema_generator_from_module"]
    assert mapped["ema_generator/block3/conv1/kernel"] == "Generator/GBlock_3/conv0/w/ema_0.9999"
    assert mapped["ema_generator/out_bn/truncation_var"] == "stack_203"  # n = 4 * 10 blocks: 5n + 3
    hp = load_hparams(os.path.join(run_dir, "hparams.yaml"))
    assert (hp.model.family, hp.model.hub_output_conv, hp.model.truncation_stats, hp.model.sn_settle_iterations,
            hp.eval.latent_convention) == ("biggan_deep", True, 51, 0, "hub_notebook")
    _, run_v2 = imported["biggan-128/2"]
    hp2 = load_hparams(os.path.join(run_v2, "hparams.yaml"))
    assert (hp2.model.dim_z, hp2.model.ch, hp2.model.truncation_stats) == (120, 8, 0)


def test_an_imported_run_measures_fid_against_the_validation_shards_alone(imported, tmp_path):
    """A module comes without training images (data.pattern empty): the sweep's FID reference is the
    validation shards the README gives (eval.validation_pattern), read without any training data.
    Flat-coloured JPEGs through a pixel-mean extractor: the reference mean is the colours' mean."""
    import io

    from PIL import Image

    from test_data_tfrecord import hand_example, write_raw
    from tf_biggan.config import load_hparams
    from tf_biggan.evaluation.scoring import Evaluator
    from tf_biggan.evaluation.extractor import FeatureExtractor

    colours = np.array([[200, 40, 90], [10, 250, 130], [120, 120, 30], [60, 0, 255]])
    records = []
    for k, colour in enumerate(colours):
        buf = io.BytesIO()
        Image.fromarray(np.full((20, 20, 3), colour, np.uint8)).save(buf, format="JPEG", quality=95)
        records.append(hand_example(buf.getvalue(), 500 + k))  # 1-based ImageNet labels
    write_raw(tmp_path / "validation-00000-of-00001", records)

    class PixelMeans(FeatureExtractor):
        name = "pixel_means"

        def _forward(self, images):
            return tf.reduce_mean(images, axis=[1, 2]), None

    _, run = imported["biggan-deep-128/1"]
    hp = load_hparams(os.path.join(run, "hparams.yaml"), f"eval.validation_pattern={tmp_path}/validation-*,"
                      f"eval.stats_cache_dir={tmp_path}/cache,eval.batch_size=2,eval.num_samples=10,eval.is_splits=2")
    assert (hp.data.pattern, hp.eval.fid_reference) == ("", "validation")
    evaluator = Evaluator.for_run(hp, run, extractor=PixelMeans())
    assert evaluator.real_summary()["fid_reference"] == "validation"
    assert int(evaluator.reference["num_examples"][0]) == 4
    np.testing.assert_allclose(evaluator.reference["mu"], colours.mean(axis=0) / 127.5 - 1, atol=3 / 127.5)


def test_deep_statistics_interpolate_linearly_between_rows(imported):
    """Between grid points the statistics are (1 - w) row_k + w row_k+1, w = 50 t - k (numpy)."""
    from tf_biggan.layers.batch_norm import batch_norm_layers
    from tf_biggan.runs import load_run
    from tf_biggan.sampling.standing_stats import apply_standing_stats

    module_dir, run_dir = imported["biggan-deep-128/1"]
    module = read_module(module_dir)
    g = load_run(run_dir).ema_generator
    apply_standing_stats(g, 0.31, num_passes=1, batch_size=2, convention="hub_notebook")
    layer = next(b for b in batch_norm_layers(g) if "/block0/bn1/" in b.moving_mean.path)  # stack_1 / stack_3
    table = module.stacks["stack_1"].astype(np.float64)
    w = 0.31 * 50 - 15
    np.testing.assert_allclose(layer.moving_mean.numpy(), (1 - w) * table[15] + w * table[16], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("damage,match", [
    (dict(drop=("Generator/GBlock_1/conv1/w/ema_b999900",)),
     r"m/variables/variables: variable Generator/GBlock_1/conv1/w/ema_b999900 is missing"),
    (dict(reshape={"Generator/GBlock_2/HyperBN/gamma/w/ema_b999900": (148, 17)}),
     r"m/variables/variables: Generator/GBlock_2/HyperBN/gamma/w/ema_b999900 has shape \[148, 17\]"),
])
def test_a_missing_or_misshaped_variable_is_refused_by_name(tmp_path, damage, match):
    module = str(tmp_path / "m")
    write_official_module("biggan-128/2", module, ch=8, **damage)
    with pytest.raises(UserError, match=match):
        import_hub(module, str(tmp_path / "run"), log=lambda *_: None)
    assert not os.path.exists(tmp_path / "run" / "hparams.yaml")


def test_unknown_variables_are_left_out_listed_and_named_in_one_warning_through_the_cli(tmp_path):
    """Variables the importer does not know (say, state a re-released module added) do not block the
    import: import.json lists them, one warning line names them, the generator is the module's."""
    module, run = str(tmp_path / "m"), str(tmp_path / "run")
    unknown = {"Generator/GBlock_1/conv9/w/ema_b999900": (3, 3, 8, 8), "Generator/truncation_state/counter": ()}
    info = write_official_module("biggan-128/2", module, ch=8, extra=unknown)
    out = _cli("--mode=import_hub", f"--module={module}", f"--model_dir={run}")
    warnings = [line for line in out.stderr.splitlines() if line.startswith("tf-biggan: warning:")]
    assert len(warnings) == 1, out.stderr[-2000:]
    assert all(name in warnings[0] for name in unknown) and "left out 2 variable(s)" in warnings[0]
    with open(os.path.join(run, "import.json")) as f:
        record = json.load(f)
    assert record["unmapped_variables"] == sorted(unknown)
    assert not set(unknown) & set(record["generator_and_ema_generator_from_module"].values())
    reader = tf.train.load_checkpoint(os.path.join(run, "pretrained", "ckpt-0"))
    kernel = reader.get_tensor("ema_generator/block1..conv1..kernel/.ATTRIBUTES/VARIABLE_VALUE")  # '.' escaped
    np.testing.assert_array_equal(kernel, info["values"]["Generator/GBlock_1/conv0/w/ema_b999900"])


@pytest.fixture(scope="module")
def deep_stats_from_variables(tmp_path_factory):
    """A deep module whose statistics tables are read from checkpoint variables: their Packs do not
    run without the checkpoint restored."""
    path = str(tmp_path_factory.mktemp("hub_vars") / "m")
    return path, write_official_module("biggan-deep-128/1", path, ch=4, seed=3, stats_from_variables=True)


def test_statistics_that_need_the_checkpoint_are_read_from_the_loaded_saved_model(deep_stats_from_variables):
    module_dir, info = deep_stats_from_variables
    lines = []
    module = read_module(module_dir, log=lines.append)
    assert any("does not run on its own" in line and "loading the SavedModel in a TF1 session" in line for line in lines)
    assert sorted(module.stacks) == sorted(info["stacks"])
    for name, table in info["stacks"].items():
        np.testing.assert_array_equal(module.stacks[name], table)


def test_statistics_that_cannot_be_evaluated_are_a_user_error_naming_the_file(deep_stats_from_variables, tmp_path):
    """The subgraph needs the checkpoint and the SavedModel has no meta graph of tags []: both fail."""
    import shutil

    from tensorflow.core.protobuf import saved_model_pb2

    module_dir = str(tmp_path / "m")
    shutil.copytree(deep_stats_from_variables[0], module_dir)
    path = os.path.join(module_dir, "saved_model.pb")
    saved = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        saved.ParseFromString(f.read())
    saved.meta_graphs[0].meta_info_def.tags[:] = ["serve"]
    with open(path, "wb") as f:
        f.write(saved.SerializeToString())
    with pytest.raises(UserError, match=r"m/saved_model.pb: the BN statistics tensors \(stack_1, ...\) cannot be "
                                        r"evaluated, neither alone \(Could not find variable statistics/stack_\d+\) "
                                        r"nor with the SavedModel loaded") as error:
        read_module(module_dir)
    assert "\n" not in str(error.value)


class _FreshTrainer:
    """What `pretrained_start` reads of a trainer: hp, freshly initialised G and EMA-G (a copy)."""

    def __init__(self, hp):
        from tf_biggan.models import Generator

        self.hp = hp
        self.g = Generator(hp.model, hp.data.num_classes, name="generator")
        self.ema_g = Generator(hp.model, hp.data.num_classes, name="ema_generator")
        for net in (self.g, self.ema_g):
            net.build_for_input(1)
        for mine, copy in zip(self.g.weights, self.ema_g.weights):
            copy.assign(mine)

    def weights_ready(self):
        pass


def test_fine_tuning_start_maps_classes_to_the_modules_rows(imported, tmp_path):
    """data.class_map on 4 classes (prepare_data's labels.txt): mapped rows are the module file's rows of
    their ImageNet classes; the others (all four without a map) the fresh draw's directions at the mean
    norm of the module's 1000 rows; every other weight is the module's."""
    from tf_biggan.hub.importer import fine_tune_hparams
    from tf_biggan.training.warm_start import pretrained_start

    module_dir, run = imported["biggan-deep-128/1"]
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "labels.txt").write_text("beagle\nlorry\nrose\ntabby\n")
    (tmp_path / "map.txt").write_text("beagle 162\ntabby 281\nlorry 867\n")
    data = f"data.kind=tfrecord,data.pattern={tmp_path / 'shards'}/train-*,data.num_classes=4"
    module = tf.train.load_checkpoint(os.path.join(module_dir, "variables", "variables"))
    module_rows = module.get_tensor("linear/w/ema_0.9999").astype(np.float64)
    mean_norm = np.mean(np.linalg.norm(module_rows, axis=1))
    trainer = None
    for mapped in ({0: 162, 3: 281, 1: 867}, {}):
        hp = fine_tune_hparams(run, None, data + (f",data.class_map={tmp_path / 'map.txt'}" if mapped else ""))
        if trainer is None:
            trainer = _FreshTrainer(hp)
            fresh = trainer.g.shared.kernel.numpy()
        trainer.hp = hp
        for net in (trainer.g, trainer.ema_g):
            net.shared.kernel.assign(fresh)
        lines = []
        pretrained_start(trainer, run, log=lines.append)
        for net in (trainer.g, trainer.ema_g):
            rows = net.shared.kernel.numpy().astype(np.float64)
            for k in range(4):
                if k in mapped:
                    np.testing.assert_array_equal(rows[k], module_rows[mapped[k]])
                else:
                    assert np.linalg.norm(rows[k]) == pytest.approx(mean_norm, rel=1e-6)
                    cosine = rows[k] @ fresh[k] / np.linalg.norm(rows[k]) / np.linalg.norm(fresh[k])
                    assert cosine == pytest.approx(1, abs=1e-6)
            np.testing.assert_array_equal(net.linear.kernel.numpy(), module.get_tensor("Generator/GenZ/G_linear/w/ema_0.9999"))
        assert ("class embedding: 3 of 4 rows from the module's ImageNet rows (data.class_map), 1 at" if mapped
                else "class embedding re-initialised (1000 -> 4 classes) at the module rows' mean norm") in lines[-1]


def test_a_class_map_on_a_run_that_was_not_imported_is_refused(tmp_path):
    from types import SimpleNamespace

    from tf_biggan.training.warm_start import pretrained_start

    trainer = SimpleNamespace(hp=SimpleNamespace(data=SimpleNamespace(class_map="map.txt"),
                                                 train=SimpleNamespace(init_from="")))
    with pytest.raises(UserError, match=r"data.class_map=map.txt: .* holds no import: leave data.class_map out"):
        pretrained_start(trainer, str(tmp_path))


def test_not_a_module_is_a_one_line_cli_error(tmp_path):
    (tmp_path / "m" / "variables").mkdir(parents=True)
    out = subprocess.run([sys.executable, "-m", "tf_biggan.main", "--mode=import_hub", f"--module={tmp_path / 'm'}",
                          f"--model_dir={tmp_path / 'run'}"], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "variables.index is missing" in out.stderr


TINY_EVAL = ("data.kind=digits,eval.num_samples=20,eval.batch_size=10,eval.standing_stats_passes=1,"
             "eval.standing_stats_batch=4,eval.is_splits=2,eval.real_max_examples=100,eval.classifier_epochs=1,"
             "eval.classifier_max_examples=200,eval.truncations=[0.5,1.0],eval.export_truncations=[0.5,1.0]")


def _cli(*args, check=True):
    out = subprocess.run([sys.executable, "-m", "tf_biggan.main", *args], capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


@pytest.mark.slow
def test_import_then_sweep_export_synthesize_and_fine_tune_through_the_cli(tmp_path):
    """The acceptance chain on a reduced-width biggan-deep-128/1 module: import_hub, sweep, export,
    synthesize at a truncation, then a few training steps on other data (10 digit classes: the class
    embedding is re-initialised, G starts from the module, D from scratch)."""
    module, run = str(tmp_path / "module"), str(tmp_path / "run")
    write_official_module("biggan-deep-128/1", module, ch=4, seed=2)
    _cli("--mode=import_hub", f"--module={module}", f"--model_dir={run}", f"--hparams_overrides={TINY_EVAL}")
    _cli("--mode=sweep", f"--model_dir={run}")
    with open(os.path.join(run, "sweep_report.json")) as f:
        sweep = json.load(f)
    assert [round(p["truncation"], 2) for p in sweep["points"]] == [0.5, 1.0]
    assert all(np.isfinite(p["fid"]) for p in sweep["points"])
    _cli("--mode=export", f"--model_dir={run}")
    with open(os.path.join(run, "export", "assets", "metadata.json")) as f:
        assert json.load(f)["latent_convention"] == "hub_notebook"
    out = str(tmp_path / "synthetic")
    _cli("--mode=synthesize", f"--model_dir={run}", f"--output_dir={out}", "--truncation=0.5",
         "--images_per_class=1", "--num_shards=2")
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["latent_convention"] == "hub_notebook" and manifest["num_images"] == 1000
    fine = _cli("--mode=train", f"--model_dir={run}", "--train_steps=2",
                "--hparams_overrides=data.num_classes=10,train.batch_size=4,train.save_every=2,train.log_every=1,"
                "train.sv_every=2,train.sample_every=100,train.sample_stats_passes=1,train.sample_stats_batch=4")
    assert "class embedding re-initialised (1000 -> 10 classes)" in fine.stderr + fine.stdout
    assert os.path.exists(os.path.join(run, "ckpt-2.index"))


def test_fine_tuning_recipe_applies_on_the_imported_configuration(imported, tmp_path):
    from tf_biggan.config import HParamsError
    from tf_biggan.hub.importer import fine_tune_hparams

    _, run = imported["biggan-deep-128/1"]
    hp = fine_tune_hparams(run, "finetune_biggan_deep_128", "data.pattern=/d/train-*,data.num_classes=10")
    assert (hp.model.family, hp.model.ch, hp.model.truncation_stats) == ("biggan_deep", 4, 51)  # the module's
    assert (hp.train.g_lr, hp.augment.kind, hp.data.num_classes) == (2.5e-5, "ada", 10)  # the recipe's, the user's
    assert hp.eval.fid_reference == "train"  # the recipe's: the import's is validation (it has no training images)
    bad = tmp_path / "recipe.yaml"
    bad.write_text("model:\n  ch: 8\n")
    with pytest.raises(HParamsError, match="no model section"):
        fine_tune_hparams(run, str(bad), "")


def test_fine_tuning_recipe_with_a_model_section_is_a_one_line_cli_error(imported, tmp_path):
    _, run = imported["biggan-deep-128/1"]
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  ch: 8\ntrain:\n  g_lr: 1.0e-5\n")
    out = _cli("--mode=train", f"--model_dir={run}", f"--hparams={recipe}", check=False)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "has no model section" in out.stderr
