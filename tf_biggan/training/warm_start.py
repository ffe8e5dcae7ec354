"""Starting a run from trained weights instead of a fresh initialisation (fine-tuning).

A run imported by `--mode=import_hub` starts its first step from the module's G and EMA-G (the
import's checkpoint, `tf_biggan.runs.imported_checkpoint`) with D as initialised; the class
embedding follows `data.class_map` (`tf_biggan.data.class_map`). Optimisers start fresh.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from tf_biggan.data.class_map import read_class_map, start_rows
from tf_biggan.errors import UserError
from tf_biggan.models.variables_checkpoint import variables_checkpoint
from tf_biggan.runs import IMPORT_FILE, imported_checkpoint


def _start_class_embedding(trainer, path: str, classes: int, mapping: Dict[int, int]) -> float:
    """Sets G's and EMA-G's class embedding to `class_map.start_rows` of the module's rows (read from
    the imported checkpoint) and the trainer's fresh draw; returns the module rows' mean norm."""
    fresh = trainer.g.shared.kernel.numpy()
    table = tf.Variable(tf.zeros((classes, fresh.shape[1])), trainable=False)
    embedding = tf.train.Checkpoint(**{"shared_embedding.kernel": table})  # variables_checkpoint's name
    tf.train.Checkpoint(ema_generator=embedding).read(path).expect_partial().assert_existing_objects_matched()
    module_rows = table.numpy()
    rows = start_rows(module_rows, fresh, mapping)
    for net in (trainer.g, trainer.ema_g):
        net.shared.kernel.assign(rows)
    return float(np.mean(np.linalg.norm(module_rows.astype(np.float64), axis=1)))


def pretrained_start(trainer, model_dir: str, log=None) -> Optional[str]:
    """Fine-tuning: G and EMA-G of a fresh trainer from the run's imported checkpoint, D as initialised
    (no module holds D). The class embedding is the module's when the class count is the module's and
    there is no data.class_map; otherwise class k's row is the module's row of its mapped ImageNet class
    and every other row the fresh draw's direction at the module rows' mean norm (data/class_map.py).
    Returns the checkpoint read, or None for a run that was not imported."""
    path = imported_checkpoint(model_dir)
    data = trainer.hp.data
    if path is None:
        if data.class_map:
            raise UserError(f"data.class_map={data.class_map}: a class map starts the fine-tuning of a module imported "
                            f"by --mode=import_hub, and {model_dir} holds no import: leave data.class_map out")
        return None
    trainer.weights_ready()
    with tf.io.gfile.GFile(os.path.join(model_dir, IMPORT_FILE)) as f:
        classes = json.load(f)["num_classes"]
    mapping = read_class_map(data, classes)
    keep_embedding = classes == data.num_classes and not mapping
    keep = None if keep_embedding else (lambda name: not name.startswith("shared_embedding."))
    parts = {name: variables_checkpoint(net, keep) for name, net in (("generator", trainer.g),
                                                                       ("ema_generator", trainer.ema_g))}
    tf.train.Checkpoint(**parts).restore(path).expect_partial().assert_existing_objects_matched()
    note = ""
    if not keep_embedding:
        norm = _start_class_embedding(trainer, path, classes, mapping)
        note = (f", class embedding: {len(mapping)} of {data.num_classes} rows from the module's ImageNet rows "
                f"(data.class_map), {data.num_classes - len(mapping)} at the module rows' mean norm {norm:.4g}"
                if mapping else f", class embedding re-initialised ({classes} -> {data.num_classes} classes) "
                f"at the module rows' mean norm {norm:.4g}")
    if log:
        log(f"fine-tuning from {path}: G and EMA-G from the module{note}, D from scratch")
    return path
