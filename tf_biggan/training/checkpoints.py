"""Reading a training run back: its resolved hparams and the EMA generator of a checkpoint.

The trainer (train.py) writes `model_dir/hparams.yaml` and checkpoints holding G, D, EMA-G (each
variable named by its path in the model), both optimisers and the step. Evaluation, export and
synthesis only need the EMA generator (paper Section 3: "moving averages of G's weights" are what
is sampled), which is restored here without building D or the optimisers.
"""

from __future__ import annotations

import os
from typing import Optional, Tuple

import tensorflow as tf

from tf_biggan.config import load_hparams
from tf_biggan.errors import UserError
from tf_biggan.models import Generator


def variables_checkpoint(model) -> tf.train.Checkpoint:
    """Every variable of a Keras model (trainable, BN statistics, SN `u`) by its path in the model.

    Keras 3 models are not fully tracked by tf.train.Checkpoint (layers kept in nested lists and
    sub-layers built in `build` are missed, so BN statistics and SN vectors were silently not
    restored); naming each variable explicitly checkpoints all of them.
    """
    prefix = model.name + "/"
    named = {}
    for v in model.variables:
        path = v.path[len(prefix):] if v.path.startswith(prefix) else v.path
        named[path.replace("/", ".")] = v.value if hasattr(v, "value") else v
    if len(named) != len(model.variables):
        raise ValueError(f"{model.name}: variable paths are not unique; cannot checkpoint by name")
    return tf.train.Checkpoint(**named)


def run_hparams(model_dir: str):
    """The resolved hparams a run was trained with (model_dir/hparams.yaml)."""
    path = os.path.join(model_dir, "hparams.yaml")
    if not os.path.exists(path):
        raise UserError(f"--model_dir={model_dir} has no hparams.yaml: is it a tf-biggan training run? "
                        f"Train first with --mode=train --model_dir={model_dir}")
    return load_hparams(path)


def latest_checkpoint(model_dir: str, checkpoint: Optional[str] = None) -> str:
    path = checkpoint or tf.train.latest_checkpoint(model_dir)
    if not path:
        raise UserError(f"--model_dir={model_dir} has no checkpoint yet; train it first (--mode=train)")
    return path


def load_ema_generator(model_dir: str, checkpoint: Optional[str] = None, hp=None) -> Tuple[Generator, object, int]:
    """(EMA generator, hparams, step) from the latest (or the given) checkpoint of a run."""
    hp = hp or run_hparams(model_dir)
    path = latest_checkpoint(model_dir, checkpoint)
    generator = Generator(hp.model, hp.data.num_classes, name="ema_generator")
    generator.build_for_input(2)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(ema_generator=variables_checkpoint(generator), step=step)
    ckpt.restore(path).expect_partial().assert_existing_objects_matched()
    return generator, hp, int(step.numpy())
