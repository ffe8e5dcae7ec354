"""A Keras model's variables as one `tf.train.Checkpoint`, each named by its path in the model.

The on-disk format of every checkpoint the project writes (runs, imports, the CAS classifier).
"""

from __future__ import annotations

import tensorflow as tf


def variables_checkpoint(model, keep=None) -> tf.train.Checkpoint:
    """Every variable of a Keras model (trainable, BN statistics, SN `u`) by its path in the model.

    Keras 3 models are not fully tracked by tf.train.Checkpoint (layers kept in nested lists and
    sub-layers built in `build` are missed, so BN statistics and SN vectors were silently not
    restored); naming each variable explicitly checkpoints all of them. `keep(name)`, if given,
    selects the names (e.g. all but the class embedding when fine-tuning to other classes).
    """
    named = {name: v.value if hasattr(v, "value") else v for name, v in named_variables(model).items()}
    if keep is not None:
        named = {name: v for name, v in named.items() if keep(name)}
    return tf.train.Checkpoint(**named)


def named_variables(model) -> dict:
    """{name: variable} of a Keras model, in model order, each named by its path in the model ("/" -> ".")
    as `variables_checkpoint` names it in a checkpoint."""
    prefix = model.name + "/"
    named = {}
    for v in model.variables:
        path = v.path[len(prefix):] if v.path.startswith(prefix) else v.path
        named[path.replace("/", ".")] = v
    if len(named) != len(model.variables):
        raise ValueError(f"{model.name}: variable paths are not unique; cannot checkpoint by name")
    return named


def checkpoint_key(part: str, name: str) -> str:
    """The key of variable `name` of checkpoint object `part` (e.g. "generator") in a checkpoint file, as
    tf.train.list_variables / load_checkpoint show it: tf.train.Checkpoint escapes "." in a local name as ".."
    (and "/" as ".S")."""
    escaped = name.replace(".", "..").replace("/", ".S")
    return f"{part}/{escaped}/.ATTRIBUTES/VARIABLE_VALUE"
