"""Starting a run from trained weights instead of a fresh initialisation (warm start, fine-tuning).

Seed 003 (ADA) makes transfer its headline limited-data setting: a network trained on one dataset
(its G and D) starts the training on another. One mechanism, two kinds of source:

    train.init_from=RUN | RUN/ckpt-N   another run's G, EMA-G and D (its latest checkpoint, or the one named:
                                       best_fid/ckpt-N, pre_collapse/ckpt-N work too)
    a run made by --mode=import_hub    its module's G and EMA-G (RUN/pretrained/ckpt-0), D fresh: no module
                                       holds D; the same for train.init_from naming such a run untrained

What is copied: every variable of G, EMA-G and D, by its name in the checkpoint
(models/variables_checkpoint.py), SN vectors included (a power iteration's state belongs to the kernel it
iterated on: a fresh `u` would misjudge σ of the copied kernels for the first steps). The source must be
the same architecture: a variable of another shape, or on one side only, is a one-line UserError naming
it. The class tables, G's shared embedding (Section 3) and D's projection embedding, are copied when the
class counts match and there is no data.class_map; otherwise `class_map.start_rows` builds them: a
mapped class starts from its source class's row, every other row from the fresh draw's direction at the
source rows' mean norm (the scale the trained layers that read the table saw).

What is not copied, and why:
- BN statistics (moving averages, standing-statistics accumulators, an import's truncation rows): they
  are recomputed. The training step normalises with each batch's own moments; G's moving averages
  follow the new data (model.bn_moving_decay), EMA-G copies G's at every update (training/ema.py), and
  every score takes standing statistics first (Appendix C.1): the source's, measured on other classes,
  would be read by nothing.
- optimiser moments, the step and augmentation's p start fresh: Adam's moments describe the source's
  loss surface, and the step is the new run's input position and RNG state.

A run resumes from its own checkpoints: `trainer.train_from_request` restores first and reads the source
only when --model_dir has no checkpoint, so the source may move or go once the run has saved. The
run's hparams.yaml records train.init_from as given; MODEL_DIR/warm_start.json the checkpoint it
resolved to.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from tf_biggan.atomic import write_json
from tf_biggan.data.class_map import read_class_map, start_rows
from tf_biggan.errors import UserError
from tf_biggan.models.variables_checkpoint import checkpoint_key, named_variables
from tf_biggan.runs import imported_checkpoint

WARM_START_FILE = "warm_start.json"  # the checkpoint a warm-started run started from
# (checkpoint object, trainer attribute): the networks a warm start copies, in this order.
NETWORKS = (("generator", "g"), ("ema_generator", "ema_g"), ("discriminator", "d"))
# The class tables of each network (rows = classes): G's shared embedding, D's projection embedding.
CLASS_TABLES = {"generator": "shared_embedding.kernel", "ema_generator": "shared_embedding.kernel",
                "discriminator": "embed.kernel"}
# BN statistics (layers/batch_norm.py, CrossReplicaBatchNorm._build_stats): recomputed, not copied.
BN_STATISTICS = ("moving_mean", "moving_var", "accum_mean", "accum_var", "accum_count", "truncation_mean",
                 "truncation_var")


@dataclasses.dataclass
class Source:
    """A warm start's checkpoint: its path, who named it, its variables' shapes by checkpoint key."""

    path: str
    where: str  # "train.init_from=..." or "the import of RUN": named in errors and the log
    shapes: Dict[str, tuple]
    step: Optional[int] = None
    module: bool = False  # the checkpoint --mode=import_hub wrote (a TF-Hub module's weights)

    @property
    def has_discriminator(self) -> bool:
        """Whether D is copied: the source holds a trained one (an import's D is a fresh draw)."""
        return not self.module and any(key.startswith("discriminator/") for key in self.shapes)

    def classes(self) -> Optional[int]:
        """The source's class count: rows of its class tables (None for a model without any)."""
        for part, name in CLASS_TABLES.items():
            shape = self.shapes.get(checkpoint_key(part, name))
            if shape:
                return int(shape[0])
        return None


def _is_statistic(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in BN_STATISTICS


def resolve_source(init_from: str, model_dir: Optional[str]) -> Optional[Source]:
    """The checkpoint a run with no checkpoint of its own starts from: train.init_from's, else the
    run's own import (--mode=import_hub), else None (fresh weights)."""
    imported = imported_checkpoint(model_dir) if model_dir else None
    if init_from and imported:
        raise UserError(f"train.init_from={init_from}: --model_dir={model_dir} is a run made by --mode=import_hub, "
                        "which starts from its module; leave train.init_from out, or warm-start a new --model_dir")
    if imported:
        path, where = imported, f"the import of {model_dir}"
    elif not init_from:
        return None
    elif tf.io.gfile.exists(init_from + ".index"):
        path, where = init_from, f"train.init_from={init_from}"
    elif tf.io.gfile.isdir(init_from):
        path = tf.train.latest_checkpoint(init_from) or imported_checkpoint(init_from)
        where = f"train.init_from={init_from}"
        if not path:
            raise UserError(f"{where} has no checkpoint: train it first (--mode=train --model_dir={init_from}), "
                            "or name a checkpoint prefix RUN/ckpt-N")
    else:
        raise UserError(f"train.init_from={init_from} is neither a run directory nor a checkpoint prefix (no "
                        f"{init_from}.index): pass a training run's --model_dir or one of its ckpt-N prefixes")
    shapes = {key: tuple(shape) for key, shape in tf.train.list_variables(path)}
    step_key = "step/.ATTRIBUTES/VARIABLE_VALUE"
    step = int(tf.train.load_variable(path, step_key)) if step_key in shapes else None
    module = bool(imported) or path == imported_checkpoint(os.path.dirname(os.path.dirname(path)))
    return Source(path, where, shapes, step, module)


def check_architecture(nets: Dict[str, object], source: Source) -> None:
    """One-line UserError naming the first variable (network order) whose shape differs from the
    source's or that one side lacks; class tables may differ in rows (classes) only."""
    def fail(part, name, mine, theirs):
        here = "missing here" if mine is None else f"{mine} here"
        there = "missing in the source" if theirs is None else f"{theirs} in {source.path}"
        raise UserError(f"{source.where}: another architecture: {part} variable {name} is {here} and {there}; "
                        "start from a run of the same model.* (the source's hparams.yaml), or train from scratch")

    for part, net in nets.items():
        expected = set()
        for name, variable in named_variables(net).items():
            if _is_statistic(name):
                continue
            key = checkpoint_key(part, name)
            expected.add(key)
            mine, theirs = tuple(variable.shape), source.shapes.get(key)
            rows = name == CLASS_TABLES[part] and theirs is not None
            if theirs is None or (mine[1:] != theirs[1:] if rows else mine != theirs):
                fail(part, name, mine, theirs)
        for key, theirs in source.shapes.items():
            name = key[len(part) + 1:].split("/", 1)[0].replace("..", ".")
            if key.startswith(part + "/") and key not in expected and not _is_statistic(name):
                fail(part, name, None, theirs)


def _copy(nets: Dict[str, object], source: Source, mapping: Optional[Dict[int, int]]) -> Dict[str, float]:
    """Assigns every variable but BN statistics from the source; class tables as `start_rows` builds them
    when `mapping` is not None. Returns each rebuilt table's source mean row norm."""
    reader = tf.train.load_checkpoint(source.path)
    norms = {}
    for part, net in nets.items():
        for name, variable in named_variables(net).items():
            if _is_statistic(name):
                continue
            value = reader.get_tensor(checkpoint_key(part, name))
            if name == CLASS_TABLES[part] and mapping is not None:
                norms[part] = float(np.mean(np.linalg.norm(value.astype(np.float64), axis=1)))
                value = start_rows(value, variable.numpy(), mapping)
            variable.assign(value.astype(variable.dtype))
    return norms


def _class_note(data, source: Source, mapping: Optional[Dict[int, int]], norms: Dict[str, float]) -> str:
    """The log's words for the class tables (G's embedding first, D's projection after)."""
    if mapping is None:
        return "class embedding copied"
    rows, whose = ("the module's ImageNet rows", "the module rows'") if source.module else (
        "the source's rows of their class", "the source rows'")
    norm = " ".join(f"{value:.4g}" if part == "generator" else f"(D's projection alike, {value:.4g})"
                    for part, value in norms.items() if part != "ema_generator")
    if mapping:
        return (f"class embedding: {len(mapping)} of {data.num_classes} rows from {rows} (data.class_map), "
                f"{data.num_classes - len(mapping)} at {whose} mean norm {norm}")
    return (f"class embedding re-initialised ({source.classes()} -> {data.num_classes} classes) at {whose} mean "
            f"norm {norm}")


def pretrained_start(trainer, model_dir: Optional[str], log=None) -> Optional[str]:
    """The warm start of a trainer whose run has no checkpoint of its own (see the module docstring):
    G, EMA-G and, where the source has it, D from `resolve_source`'s checkpoint. Returns the checkpoint
    read, or None when the run starts from fresh weights."""
    hp = trainer.hp
    data, init_from = hp.data, hp.train.init_from
    source = resolve_source(init_from, model_dir)
    if source is None:
        if data.class_map:
            raise UserError(f"data.class_map={data.class_map}: a class map maps the classes of a warm start, "
                            f"train.init_from is empty and {model_dir} holds no import: leave data.class_map out, "
                            "or set train.init_from")
        return None
    trainer.weights_ready()  # the fresh draws (the rows of unmapped classes) are final
    nets = {part: getattr(trainer, attr) for part, attr in NETWORKS
            if part != "discriminator" or source.has_discriminator}
    check_architecture(nets, source)
    source_classes = source.classes()
    mapping = read_class_map(data, source_classes or data.num_classes) if data.class_map else {}
    if mapping and not hp.model.shared_embedding:
        raise UserError(f"data.class_map={data.class_map} maps G's shared class embedding, and model.shared_embedding "
                        "is false: leave data.class_map out (the source's class count must then be this run's)")
    keep_tables = source_classes in (None, data.num_classes) and not mapping
    norms = _copy(nets, source, None if keep_tables else mapping)
    note = _class_note(data, source, None if keep_tables else mapping, norms)
    copied = ", ".join(nets) + ("" if source.has_discriminator else " (discriminator fresh: no module holds D)")
    record = {"init_from": init_from, "checkpoint": source.path, "source_step": source.step, "copied": list(nets),
              "class_tables": note, "not_copied": "BN statistics (recomputed), optimisers, step"}
    if model_dir and getattr(trainer, "chief", False):  # a GANTrainer's chief
        write_json(os.path.join(model_dir, WARM_START_FILE), record)
    if log:
        step = f" (step {source.step})" if source.step is not None else ""
        log(f"warm start from {source.path}{step}: {copied} copied, {note}; BN statistics recomputed, optimisers fresh")
    return source.path
