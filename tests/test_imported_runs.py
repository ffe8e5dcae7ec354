"""What a user does with an imported TF-Hub generator after `--mode=import_hub`: which BN statistics
sweep, eval, export and synthesis sample with, and what truncation 0 means.

References: the module's own statistics as written by `official_hub_layout` (the deep modules' 51 rows,
interpolated here in numpy; the /2 modules' stored set), and for a fine-tuned run the standing statistics
of ITS generator (`accumulate_standing_stats` over latents drawn in hub_notebook). Passes are counted by
wrapping `accumulate_standing_stats`, the one function that runs them. Scoring is replaced by a recorder
of the statistics in use (`_Recorder`): what is tested is which statistics the modes set, not FID.
Reduced widths (deep ch 4, /2 ch 8) keep each test to seconds.
"""

import json
import os
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf

from evaluation_run import request
from evaluation_run import run as run_mode
from official_hub_layout import write_official_module
from tf_biggan.errors import UserError
from tf_biggan.evaluation.scoring import Evaluator
from tf_biggan.hub.importer import import_hub, read_module
from tf_biggan.sampling import standing_stats
from tf_biggan.sampling.standing_stats import get_bn_stats

pytestmark = pytest.mark.xdist_group("imported_runs")

SMALL = ("data.kind=digits,eval.num_samples=20,eval.batch_size=10,eval.standing_stats_passes=2,"
         "eval.standing_stats_batch=4,eval.is_splits=2,eval.real_max_examples=100,eval.classifier_epochs=1,"
         "eval.classifier_max_examples=200,eval.truncations=[0.5,1.0],eval.export_truncations=[0.5,1.0]")
KINDS = {"deep": ("biggan-deep-128/1", 4), "v2": ("biggan-128/2", 8)}


class _Passes:
    """Counts `accumulate_standing_stats` calls and their forward passes."""

    def __init__(self, monkeypatch):
        self.calls, self.passes = 0, 0
        original = standing_stats.accumulate_standing_stats

        def counted(generator, num_passes=100, *args, **kwargs):
            self.calls += 1
            self.passes += num_passes
            return original(generator, num_passes, *args, **kwargs)
        monkeypatch.setattr(standing_stats, "accumulate_standing_stats", counted)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """{"deep" / "v2": (module dir, run dir, passes the import ran)}."""
    root = tmp_path_factory.mktemp("imported_runs")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        for key, (kind, ch) in KINDS.items():
            counter = _Passes(mp)
            module, run = str(root / f"module_{key}"), str(root / f"run_{key}")
            write_official_module(kind, module, ch=ch, seed=3)
            import_hub(module, run, SMALL, log=lambda *_: None)
            out[key] = (module, run, counter.passes)
    return out


class _Recorder(Evaluator):
    """An Evaluator whose scoring records the BN statistics in use (per truncation) instead of sampling."""

    def __init__(self, hp, seed=0, log=print):
        super().__init__(hp, types.SimpleNamespace(name="recorder"), {}, None, seed, None, log)
        self.stats = {}

    def score(self, generator, truncation):
        self.stats[float(truncation)] = get_bn_stats(generator)
        return {"truncation": float(truncation), "fid": 1.0 + truncation, "is": 1.0, "is_std": 0.0, "kid": 0.0,
                "kid_std": 0.0, "class_accuracy": 0.0, "num_samples": self.num_samples, "seconds": 0.0}

    def real_summary(self):
        return {}


def _record(monkeypatch):
    """Evaluator.for_run (what --mode=eval / sweep build) returns a _Recorder; the list collects them."""
    made = []

    def for_run(cls, hp, model_dir, inception_path=None, seed=0, num_samples=None, extractor=None, log=print):
        made.append(_Recorder(hp, seed, log))
        return made[-1]
    monkeypatch.setattr(Evaluator, "for_run", classmethod(for_run))
    return made


def _module_rows(module_dir, run_dir):
    """{our moving_mean / moving_var path: the module's [51, C] rows}, by import.json's record."""
    stacks = read_module(module_dir).stacks
    with open(os.path.join(run_dir, "import.json")) as f:
        record = json.load(f)["generator_and_ema_generator_from_module"]
    out = {}
    for ours, theirs in record.items():
        if ours.startswith("ema_generator/") and "/truncation_" in ours:
            out[ours.replace("/truncation_mean", "/moving_mean").replace("/truncation_var", "/moving_var")] = \
                stacks[theirs].astype(np.float64)
    return out


def _at(rows, t):
    """Linear interpolation of the 51 rows at truncation t (row k = truncation k / 50), numpy."""
    k = min(int(np.floor(t * 50)), 49)
    w = t * 50 - k
    return (1 - w) * rows[k] + w * rows[k + 1]


def _own_statistics(run_dir, truncations, hp):
    """{t: standing statistics of the run's generator at t}, computed here: passes over hub_notebook latents."""
    from tf_biggan.runs import load_run

    g = load_run(run_dir, hp=hp).ema_generator
    out = {}
    for t in truncations:
        latents = standing_stats.standing_stats_latents(g.dim_z, g.num_classes, hp.eval.standing_stats_batch, t,
                                                        0, "hub_notebook")
        standing_stats.accumulate_standing_stats(g, hp.eval.standing_stats_passes, hp.eval.standing_stats_batch,
                                                 latents)
        out[t] = get_bn_stats(g)
    return out


def _capture_export(monkeypatch):
    """tf.saved_model.save replaced by a recorder of what the export holds: its statistics tables
    ({moving_mean / moving_var path: [rows, C]}) and metadata.json. Serialising a 128 px generator takes
    a minute on 2 cores; the module's functions are called in memory here, its serialisation is tested in
    tests/test_export.py."""
    saved = {}

    def save(module, path, signatures=None):
        saved["module"] = module
        with open(module.metadata.asset_path.numpy().decode()) as f:
            saved["metadata"] = json.load(f)
        saved["tables"] = {}
        for path_, key in module._stats_keys:
            saved["tables"][path_] = module.stats_means[key].numpy()
            saved["tables"][path_.replace("/moving_mean", "/moving_var")] = module.stats_vars[key].numpy()
        os.makedirs(path, exist_ok=True)
    monkeypatch.setattr(tf.saved_model, "save", save)
    return saved


def _tiny_deep_generator():
    """A 16 px biggan-deep G with 51 random truncation-indexed statistic rows (an imported module's shape)."""
    from tf_biggan.config import load_hparams
    from tf_biggan.layers.batch_norm import batch_norm_layers
    from tf_biggan.models import Generator

    hp = load_hparams("biggan_deep_128", "model.ch=4,model.resolution=16,model.truncation_stats=51,"
                      "model.hub_output_conv=true,data.num_classes=5")
    g = Generator(hp.model, 5, name="ema_generator")
    g.build_for_input(1)
    rng = np.random.default_rng(0)
    for layer in batch_norm_layers(g):
        c = layer.moving_mean.shape[0]
        layer.truncation_mean.assign(rng.normal(size=(51, c)).astype(np.float32))
        layer.truncation_var.assign(rng.uniform(0.5, 2.0, size=(51, c)).astype(np.float32))
    return g


def _images(module, t, n=3):
    """An export's images at truncation t (its `default` function), and the (z, y) they were drawn for."""
    z = 0.5 * np.random.default_rng(1).standard_normal((n, 128)).astype(np.float32)
    y = tf.one_hot(np.arange(n) % 5, 5)
    return module.default(tf.constant(z), y, tf.constant(float(t)))["default"].numpy(), (z, y)


def test_hub_notebook_export_of_module_rows_reads_them_as_the_module_does(tmp_path, monkeypatch):
    """A generator holding module rows exports them as its grid (0, 0.02, ..., 1): no pass; the module at
    t equals G with the rows at t (`use_truncation_stats`), t <= 0 reads row 0 and t > 1 row 50."""
    from tf_biggan.hub.export import export_generator
    from tf_biggan.layers.batch_norm import batch_norm_layers

    g = _tiny_deep_generator()
    standing_stats.hold_module_statistics(g)  # what load_run does for the import's checkpoint
    counter, export = _Passes(monkeypatch), _capture_export(monkeypatch)
    export_generator(g, str(tmp_path / "hub"), [0.5, 1.0], 1, 4, {}, convention="hub_notebook")
    assert counter.calls == 0
    module = export["module"]
    assert export["metadata"]["truncation_grid"] == [k / 50 for k in range(51)]
    for t, row_t in ((0.31, 0.31), (0.0, 0.0), (-1.0, 0.0), (1.7, 1.0)):
        got, (z, y) = _images(module, t)
        for layer in batch_norm_layers(g):
            layer.use_truncation_stats(row_t)
        np.testing.assert_allclose(got, g((z, y), training=False).numpy(), atol=1e-5, err_msg=f"t={t}")
    assert np.abs(_images(module, 0.31)[0] - _images(module, 1.0)[0]).max() > 1e-3  # the rows matter


def test_hub_notebook_export_has_no_untruncated_set_and_reads_t_0_as_its_lowest_truncation(tmp_path, monkeypatch):
    """A generator with statistics of its own (not marked): passes per grid point in hub_notebook, no
    untruncated set; t <= 0 is the lowest grid truncation for statistics and sample_latents alike."""
    from tf_biggan import seeds
    from tf_biggan.hub.export import export_generator
    from tf_biggan.sampling.latents import hub_notebook_truncated_z

    g = _tiny_deep_generator()
    counter, export = _Passes(monkeypatch), _capture_export(monkeypatch)
    export_generator(g, str(tmp_path / "hub"), [1.0, 0.5], 1, 4, {}, convention="hub_notebook")
    assert counter.calls == 2
    meta, module = export["metadata"], export["module"]
    assert meta["truncation_grid"] == [0.5, 1.0] and "reads as 0.5" in meta["truncation_zero"]
    assert module.stats_means["bn0"].shape[0] == 2  # one set per grid point, none for untruncated z
    at_half = _images(module, 0.5)[0]
    np.testing.assert_array_equal(_images(module, 0.0)[0], at_half)
    np.testing.assert_array_equal(_images(module, -0.3)[0], at_half)
    assert np.abs(_images(module, 1.0)[0] - at_half).max() > 1e-4
    draw = module.sample_latents
    zero = draw(batch_size=tf.constant(4), seed=tf.constant(3, tf.int64), truncation=tf.constant(0.0))["z"].numpy()
    np.testing.assert_array_equal(zero, hub_notebook_truncated_z([4, 128], 0.5, seeds.key("synthesize", 3, 0)).numpy())


def test_an_imported_deep_run_runs_no_standing_statistics_pass(imported, tmp_path, monkeypatch):
    """Import, sweep, eval and export of an untrained biggan-deep import: 0 passes; the statistics in use
    are the module's rows at t (numpy interpolation); the export holds the 51 rows and says what t <= 0 is."""
    module_dir, run, import_passes = imported["deep"]
    rows = _module_rows(module_dir, run)
    assert import_passes == 0 and len(rows) == 2 * 41
    counter, made = _Passes(monkeypatch), _record(monkeypatch)
    run_mode("sweep", None, run, hparams_overrides="eval.truncations=[0.31,1.0]")
    report = run_mode("eval", None, run)  # no --truncation: the run's eval.truncation, 1.0
    assert counter.calls == 0
    assert report["truncation"] == 1.0 and report["bn_statistics"] == "module"
    for t in (0.31, 1.0):
        for path, table in rows.items():
            np.testing.assert_allclose(made[0].stats[t][path], _at(table, t), rtol=1e-5, atol=1e-6, err_msg=path)
    np.testing.assert_array_equal(made[1].stats[1.0][next(iter(rows))], made[0].stats[1.0][next(iter(rows))])

    export = _capture_export(monkeypatch)
    run_mode("export", None, run, export_dir=str(tmp_path / "hub"))
    assert counter.calls == 0
    meta = export["metadata"]
    assert meta["truncation_grid"] == [k / 50 for k in range(51)] and meta["latent_convention"] == "hub_notebook"
    assert "truncation-0 set" in meta["truncation_zero"] and "no passes" in meta["bn_statistics"]
    assert meta["hparams"]["eval"]["truncation"] == 1.0 and len(export["tables"]) == len(rows)
    for path, table in rows.items():
        np.testing.assert_array_equal(export["tables"][path], table.astype(np.float32), err_msg=path)  # 51 rows

    # synthesis: its plan (pinned for reruns, written to manifest.json) says the module's statistics, and
    # preparing the source runs no pass
    from tf_biggan.synthesis.generators import CheckpointSource

    source = CheckpointSource(run)
    source.configure([1, 1], 0.31, 0, "hub_notebook")
    source.prepare()
    assert counter.calls == 0
    assert source.standing_stats == {"statistics": "module", "truncation": 0.31, "latent_convention": "hub_notebook"}


def _assert_statistics_of_its_own(run, module_dir, monkeypatch, tmp_path, full=False):
    """Eval (the default 1.0) and sweep of `run`, whose latest checkpoint has trained, and with `full` also
    synthesis and export (grid [0.5]; the sweep at 0.5 then): each runs passes and uses the standing
    statistics of THAT generator in hub_notebook (computed here), not the module's rows."""
    from tf_biggan.synthesis.generators import CheckpointSource
    from tf_biggan.runs import saved_hparams

    hp = saved_hparams(run)
    t = 0.5 if full else 1.0
    own = _own_statistics(run, sorted({t, 1.0}), hp)
    rows = _module_rows(module_dir, run)
    counter, made = _Passes(monkeypatch), _record(monkeypatch)
    report = run_mode("eval", None, run)
    assert report["truncation"] == 1.0 and report["bn_statistics"] == "standing"
    run_mode("sweep", None, run, hparams_overrides=f"eval.truncations=[{t}]")
    got = [(1.0, made[0].stats[1.0]), (t, made[1].stats[t])]
    if full:
        source = CheckpointSource(run)
        source.configure([1] * hp.data.num_classes, t, 0, "hub_notebook")
        source.prepare()
        got.append((t, get_bn_stats(source.generator)))
        export = _capture_export(monkeypatch)
        run_mode("export", None, run, export_dir=str(tmp_path / "hub"), hparams_overrides=f"eval.export_truncations=[{t}]")
        meta, tables = export["metadata"], export["tables"]
        assert meta["truncation_grid"] == [t] and f"reads as {t}" in meta["truncation_zero"]
        assert all(table.shape[0] == 1 for table in tables.values())  # no untruncated set under hub_notebook
        got.append((t, {p: table[0] for p, table in tables.items()}))
    assert counter.calls == len(got)  # one set of passes each: eval, sweep (, synthesis, export)
    for path in rows:
        for truncation, stats in got:
            np.testing.assert_allclose(stats[path], own[truncation][path], rtol=1e-5, atol=1e-6, err_msg=path)
    # not the module's: some layer's statistics are far from the rows
    assert max(np.abs(own[t][p] - _at(rows[p], t)).max() for p in rows) > 1e-2


def test_a_trained_checkpoint_of_an_imported_run_has_statistics_of_its_own(imported, tmp_path, monkeypatch):
    """The import with a checkpoint saved as the trainer saves one (RUN/ckpt-1, by variable path) whose
    EMA-G moved: from then on eval and sweep compute its statistics, never reading the module's rows
    (the full train mode, synthesis and export: test_fine_tuning_an_imported_deep_run_through_the_cli, slow;
    an unmarked generator's hub_notebook export: test_hub_notebook_export_has_no_untruncated_set_*)."""
    from tf_biggan.runs import load_run
    from tf_biggan.models.variables_checkpoint import variables_checkpoint

    module_dir, imported_run, _ = imported["deep"]
    run = str(tmp_path / "run")
    shutil.copytree(imported_run, run)
    loaded = load_run(run)
    assert loaded.from_module and standing_stats.module_statistics(loaded.ema_generator) is not None
    rng = np.random.default_rng(0)
    for v in loaded.ema_generator.trainable_weights:  # a step's worth of change
        v.assign(v * (1.0 + 0.2 * rng.standard_normal(v.shape)).astype(np.float32))
    checkpoint = tf.train.Checkpoint(step=tf.Variable(1, dtype=tf.int64),
                                     ema_generator=variables_checkpoint(loaded.ema_generator))
    tf.train.CheckpointManager(checkpoint, run, max_to_keep=1).save(checkpoint_number=1)
    _assert_statistics_of_its_own(run, module_dir, monkeypatch, tmp_path)  # eval's report: "standing"


def test_a_v2_import_samples_at_truncation_1_with_its_stored_set(imported, tmp_path, monkeypatch):
    """biggan-128/2: at t = 1 (hub_notebook) the module's accumulated_mean / accumulated_var exactly, also
    after another truncation overwrote them; standing statistics elsewhere; the export's t = 1 row too."""
    from tf_biggan.runs import load_run

    module_dir, run, import_passes = imported["v2"]
    assert import_passes == 0
    module = read_module(module_dir)
    with open(os.path.join(run, "import.json")) as f:
        record = json.load(f)["generator_and_ema_generator_from_module"]
    stored = {ours: module.variables[theirs] for ours, theirs in record.items()
              if ours.startswith("ema_generator/") and ours.endswith(("/moving_mean", "/moving_var"))}
    assert len(stored) == 2 * 11
    g = load_run(run).ema_generator
    counter = _Passes(monkeypatch)
    assert standing_stats.apply_standing_stats(g, 0.5, 2, 4, convention="hub_notebook") == "standing"
    assert counter.calls == 1
    at_half = get_bn_stats(g)
    assert max(np.abs(at_half[p] - v).max() for p, v in stored.items()) > 1e-2
    assert standing_stats.apply_standing_stats(g, 1.0, 2, 4, convention="hub_notebook") == "module"
    assert counter.calls == 1
    for path, value in stored.items():
        np.testing.assert_array_equal(get_bn_stats(g)[path], value, err_msg=path)
    # the stored set is the modules' convention's: another convention's t = 1 computes its own
    assert standing_stats.apply_standing_stats(g, 1.0, 2, 4, convention="paper_resample") == "standing"

    export = _capture_export(monkeypatch)
    run_mode("export", None, run, export_dir=str(tmp_path / "hub"))
    assert counter.calls == 3  # and the export's 0.5 only
    meta, tables = export["metadata"], export["tables"]
    assert meta["truncation_grid"] == [0.5, 1.0] and "stored set" in meta["bn_statistics"]
    assert "reads as 0.5" in meta["truncation_zero"]
    for path, value in stored.items():
        assert tables[path].shape[0] == 2
        np.testing.assert_array_equal(tables[path][1], value, err_msg=path)


def test_truncation_zero_under_hub_notebook_is_refused_or_the_runs_default(imported, tmp_path, monkeypatch):
    """Every place that takes a truncation: z = 0 is never drawn under hub_notebook."""
    from tf_biggan.config import HParamsError, hparams_from_dict
    from tf_biggan.evaluation.best_fid import BestFidKeeper
    from tf_biggan.synthesis import synthesize
    from tf_biggan.sampling.latents import convention_z
    from tf_biggan.runs import saved_hparams

    _, run, _ = imported["deep"]
    hp = saved_hparams(run)
    assert (hp.eval.latent_convention, hp.eval.truncation) == ("hub_notebook", 1.0)  # written by import_hub
    with pytest.raises(UserError, match="all zeros"):
        convention_z((2, 4), 0.0, 0, "hub_notebook")
    with pytest.raises(HParamsError, match="eval.truncation"):
        hparams_from_dict({"eval": {"truncation": 0.0}}, "test", base=hp).validate()
    with pytest.raises(HParamsError, match="eval.truncations"):
        hparams_from_dict({"eval": {"truncations": [0.5, 0.0]}}, "test", base=hp).validate()
    for name in ("eval", "interpolate", "neighbors"):
        with pytest.raises(UserError, match="--truncation=0 with eval.latent_convention=hub_notebook"):
            run_mode(name, None, run, truncation=0.0)
    with pytest.raises(UserError, match="truncation=0"):
        standing_stats.apply_standing_stats(None, 0.0, 1, 1, convention="hub_notebook")
    made = _record(monkeypatch)
    assert BestFidKeeper(hp, str(tmp_path)).truncation == 1.0 and made
    with pytest.raises(UserError, match="all zeros"):
        BestFidKeeper(hp, str(tmp_path), truncation=0.0)
    # synthesize: the run's eval.truncation without --truncation; 0 refused before anything is drawn
    seen = {}
    monkeypatch.setattr(synthesize, "synthesize", lambda source, out, counts, **kw: seen.update(kw))
    synthesize.run_synthesize(None, request("synthesize", run, output_dir=str(tmp_path / "s"), images_per_class=1, num_shards=1))
    assert seen["truncation"] == 1.0 and seen["latent_convention"] == "hub_notebook"
    monkeypatch.undo()
    with pytest.raises(UserError, match="--truncation must be > 0"):
        synthesize.run_synthesize(None, request("synthesize", run, output_dir=str(tmp_path / "s"), images_per_class=1,
                                                num_shards=1, truncation=0.0))
    assert not os.path.exists(tmp_path / "s")


def _cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", "tf_biggan.main", *args], capture_output=True, text=True, env=env)


def test_cli_eval_and_fine_tuning_refuse_truncation_zero_in_one_line(imported):
    _, run, _ = imported["deep"]
    for args in (["--mode=eval", f"--model_dir={run}", "--truncation=0"],
                 ["--mode=train", f"--model_dir={run}", "--hparams_overrides=eval.truncation=0,eval.best_fid_every=1"]):
        out = _cli(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
        errors = [line for line in out.stderr.splitlines() if line.startswith("tf-biggan: error:")]
        assert len(errors) == 1 and "hub_notebook" in errors[0] and "truncation" in errors[0], out.stderr[-2000:]
        assert out.stderr.rstrip().endswith(errors[0])  # the message is one line, and the last


@pytest.mark.slow
def test_fine_tuning_an_imported_deep_run_through_the_cli(imported, tmp_path, monkeypatch):
    """Through the CLI with real scoring: --mode=eval without --truncation scores the import at 1.0 with the
    module's statistics; two fine-tuning steps (the real train mode) with eval.best_fid_every=1 score 1.0
    with the fine-tuned generator's own; then sweep, eval, synthesis and export use its own statistics."""
    module_dir, imported_run, _ = imported["deep"]
    run = str(tmp_path / "run")
    shutil.copytree(imported_run, run)
    out = _cli("--mode=eval", f"--model_dir={run}")
    assert out.returncode == 0, out.stderr[-3000:]
    with open(os.path.join(run, "eval_report.json")) as f:
        report = json.load(f)
    assert report["truncation"] == 1.0 and report["bn_statistics"] == "module" and np.isfinite(report["fid"])
    out = _cli("--mode=train", f"--model_dir={run}", "--train_steps=2",
               "--hparams_overrides=data.num_classes=10,train.batch_size=4,train.save_every=2,train.sv_every=100,"
               "train.sample_every=100,eval.best_fid_every=1")
    assert out.returncode == 0, out.stderr[-3000:]
    with open(os.path.join(run, "best_fid", "best_fid.json")) as f:
        best = json.load(f)
    assert best["truncation"] == 1.0 and best["bn_statistics"] == "standing" and np.isfinite(best["fid"])
    _assert_statistics_of_its_own(run, module_dir, monkeypatch, tmp_path, full=True)
