"""The one tiny trained run the evaluation and qualitative tests share (tests/test_evaluate.py,
tests/test_qualitative.py): trained once per pytest process, the first time either module asks.

Settings: the embedded digits at 16 px, ch = 4, batch 16, 600 steps with raised learning rates
(G 1e-3, D 2e-3) and EMA decay 0.9. Probed on 2 CPU cores (~25 s): by then G is class-conditional
(the classifier recognises 65-75% of untruncated samples and 80-90% at threshold 0.2, for training
seeds 0, 1 and 2), which is what makes "IS rises as truncation falls" observable; at 300 steps, or
at the embedded default's learning rates, samples are not yet class-specific and truncation only
removes variety. Evaluation is cut down to match: 300 samples, 4 standing-statistics passes of 50,
a classifier trained for 6 epochs, 3 thresholds.
"""

from tf_biggan.config import load_hparams
from tf_biggan.training.trainer import GANTrainer, prepare_model_dir

STEPS = 600
OVERRIDES = ("model.ch=4,train.batch_size=16,train.g_lr=1.0e-3,train.d_lr=2.0e-3,train.ema_decay=0.9,"
             "train.steps_per_loop=50,train.seed=0,"
             "eval.standing_stats_passes=4,eval.standing_stats_batch=50,eval.num_samples=300,eval.batch_size=100,"
             "eval.classifier_epochs=6,eval.truncations=[0.2,1.0,0],eval.qualitative_rows=3,"
             "eval.interpolation_steps=4,eval.neighbors_k=3")

_RUN = {}


def tiny_hp(extra: str = ""):
    return load_hparams(None, ",".join(x for x in (OVERRIDES, extra) if x))


def trained_run(tmp_path_factory):
    """(model_dir, hp) of the shared run; trains it on first use (GANTrainer, checkpoint at STEPS)."""
    if "model_dir" not in _RUN:
        hp = tiny_hp()
        model_dir = str(tmp_path_factory.mktemp("tiny_eval_run"))
        prepare_model_dir(hp, model_dir)
        trainer = GANTrainer(hp, model_dir=model_dir, verbose=False)
        for _ in range(STEPS // hp.train.steps_per_loop):
            trainer.train_steps(hp.train.steps_per_loop)
        trainer.save()
        _RUN.update(model_dir=model_dir, hp=hp)
    return _RUN["model_dir"], _RUN["hp"]


def flags(model_dir, **kw):
    """A stand-in for absl FLAGS with the evaluation flags of tf_biggan.main."""
    import types

    values = dict(model_dir=model_dir, checkpoint=None, truncation=None, seed=0, inception_path=None,
                  hparams=None, hparams_overrides="", output_dir=None)
    values.update(kw)
    return types.SimpleNamespace(**values)
