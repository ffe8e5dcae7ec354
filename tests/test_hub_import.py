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
from tf_biggan.export.hub_import import import_hub, read_module

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
    from tf_biggan.sampling.run import load_run
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


def test_deep_statistics_interpolate_linearly_between_rows(imported):
    """Between grid points the statistics are (1 - w) row_k + w row_k+1, w = 50 t - k (numpy)."""
    from tf_biggan.layers.batch_norm import batch_norm_layers
    from tf_biggan.sampling.run import load_run
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
    (dict(drop=("Generator/GBlock_1/conv1/w/ema_b999900",)), "Generator/GBlock_1/conv1/w/ema_b999900 is missing"),
    (dict(extra={"Generator/GBlock_1/conv9/w/ema_b999900": (3, 3, 8, 8)}), "unexpected variable Generator/GBlock_1/conv9"),
    (dict(reshape={"Generator/GBlock_2/HyperBN/gamma/w/ema_b999900": (148, 17)}),
     "Generator/GBlock_2/HyperBN/gamma/w/ema_b999900 has shape"),
])
def test_a_damaged_module_is_refused_with_the_variable_named(tmp_path, damage, match):
    module = str(tmp_path / "m")
    write_official_module("biggan-128/2", module, ch=8, **damage)
    with pytest.raises(UserError, match=match):
        import_hub(module, str(tmp_path / "run"), log=lambda *_: None)
    assert not os.path.exists(tmp_path / "run" / "hparams.yaml")


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
    from tf_biggan.export.hub_import import fine_tune_hparams

    _, run = imported["biggan-deep-128/1"]
    hp = fine_tune_hparams(run, "finetune_biggan_deep_128", "data.pattern=/d/train-*,data.num_classes=10")
    assert (hp.model.family, hp.model.ch, hp.model.truncation_stats) == ("biggan_deep", 4, 51)  # the module's
    assert (hp.train.g_lr, hp.augment.kind, hp.data.num_classes) == (2.5e-5, "ada", 10)  # the recipe's, the user's
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
