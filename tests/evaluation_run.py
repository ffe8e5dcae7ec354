"""The one tiny trained run the evaluation, qualitative, export and synthesis tests share
(conftest.py's session fixture `tiny_run`): trained once per pytest process, the first time a test
asks, through the train mode exactly as `tf-biggan --mode=train` dispatches it.

Settings: the embedded digits at 16 px, ch = 4, batch 16, STEPS steps with a checkpoint every
STEPS / 2 (so a test can pick an EARLIER checkpoint with --checkpoint). No test relies on what so
short a run learned: the tests check mechanisms (latents, standing statistics, selection rules,
files) that hold for any weights. Evaluation is cut down to match: 300 samples, 4 standing-
statistics passes of 50, a classifier trained for 6 epochs, 3 thresholds.
"""

import types

from tf_biggan.config import load_hparams

STEPS = 60
OVERRIDES = ("model.ch=4,train.batch_size=16,train.g_lr=1.0e-3,train.d_lr=2.0e-3,train.ema_decay=0.9,"
             f"train.steps_per_loop=10,train.seed=0,train.train_steps={STEPS},train.save_every={STEPS // 2},"
             f"train.sample_every={STEPS},train.sv_every={STEPS},train.log_every={STEPS},"
             "eval.standing_stats_passes=4,eval.standing_stats_batch=50,eval.num_samples=300,eval.batch_size=100,"
             "eval.classifier_epochs=6,eval.truncations=[0.2,1.0,0],eval.qualitative_rows=3,"
             "eval.interpolation_steps=4,eval.neighbors_k=3,eval.export_truncations=[0.5,1.0]")


def tiny_hp(extra: str = ""):
    return load_hparams(None, ",".join(x for x in (OVERRIDES, extra) if x))


def flags(model_dir=None, **values):
    """The absl flags of tf_biggan.main at their defaults (what a mode sees when the user passes only
    what is given here), as a namespace a mode's run_* function takes."""
    from tf_biggan import main

    namespace = {name: main.FLAGS[name].default for name in main.FLAGS}
    namespace.update(model_dir=model_dir, **values)
    return types.SimpleNamespace(**namespace)


def mode(name: str):
    """The function `tf-biggan --mode=NAME` runs (main.py's dispatch table)."""
    import importlib

    from tf_biggan import main

    module_name, function_name = main._MODE_TABLE[name]
    return getattr(importlib.import_module(module_name), function_name)


def train(model_dir: str, extra: str = "") -> str:
    """Trains the tiny run into `model_dir` through the train mode; returns model_dir."""
    mode("train")(tiny_hp(extra), flags(model_dir, mode="train"))
    return model_dir
