"""The one tiny trained run the evaluation, qualitative, export and synthesis tests share
(conftest.py's session fixture `tiny_run`): trained once per pytest process, the first time a test
asks, through the train mode exactly as `tf-biggan --mode=train` dispatches it.

Settings: the embedded digits at 16 px, ch = 4, batch 16, STEPS steps with a checkpoint every
STEPS / 2 (so a test can pick an EARLIER checkpoint with --checkpoint). No test relies on what so
short a run learned: the tests check mechanisms (latents, standing statistics, selection rules,
files) that hold for any weights. Evaluation is cut down to match: 300 samples, 4 standing-
statistics passes of 50, a classifier trained for 6 epochs, 3 thresholds.
"""

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


def request(name: str, model_dir=None, **values):
    """`--mode=NAME`'s request as main.py builds it from a command line that gives `model_dir` (when
    not None) and `values` (flag name -> value): every other field at its flag's default."""
    from tf_biggan import main
    from tf_biggan.requests import from_values

    given = dict(values, **({} if model_dir is None else {"model_dir": model_dir}))
    return from_values(main.REQUESTS[name], given)


def mode(name: str):
    """The function `tf-biggan --mode=NAME` runs (tf_biggan/modes.py, main.py's dispatch table)."""
    from tf_biggan.modes import mode_function

    return mode_function(name)


def run(name: str, hp, model_dir=None, **values):
    """`--mode=NAME` in this process, as the CLI runs it with these flags."""
    return mode(name)(hp, request(name, model_dir, **values))


def train(model_dir: str, extra: str = "") -> str:
    """Trains the tiny run into `model_dir` through the train mode; returns model_dir."""
    run("train", tiny_hp(extra), model_dir)
    return model_dir
