"""A training run on disk: its hparams.yaml and its checkpoints (save / restore / chief).

A run directory holds the resolved `hparams.yaml` (written on the first start; resuming with
different hparams is a UserError listing the differences) and tf.train.CheckpointManager
checkpoints `ckpt-STEP` (atomic) of these objects, by name:

    generator, discriminator, ema_generator   every variable by its path in the model
    g_optimizer, d_optimizer                  both Adam optimisers (moments, iterations)
    step                                      the global step: RNG state and input position

`RunCheckpoint` saves and restores them; under MultiWorkerMirroredStrategy every worker takes part
in saving and only the chief's copy is kept. Reading a run back (evaluation, export, synthesis) is
`tf_biggan.runs.load_run`; what a run directory holds and whether it was imported is `tf_biggan.runs`.
"""

from __future__ import annotations

import os
from typing import Optional

import tensorflow as tf

from tf_biggan import paths, rerun
from tf_biggan.config import hparams_from_dict, save_hparams
from tf_biggan.errors import UserError
from tf_biggan.models.variables_checkpoint import variables_checkpoint
from tf_biggan.runs import HPARAMS_FILE, imported_and_untrained


# Object names inside every checkpoint: part of the on-disk format (runs resume by these names).
CHECKPOINT_OBJECTS = ("generator", "discriminator", "ema_generator", "g_optimizer", "d_optimizer", "step")

# hparams that may change when a run is resumed: how long to train and how often to log / save /
# sample. (eval.* may change too: evaluation does not change the trajectory.)
RESUMABLE_KEYS = {"train.train_steps", "train.steps_per_loop", "train.save_every", "train.log_every",
                  "train.sv_every", "train.sample_every", "train.keep_checkpoints", "train.sample_columns",
                  "train.replay_input", "train.sample_stats_passes", "train.sample_stats_batch",
                  # collapse detection only watches the run (training/collapse.py)
                  "stability.detect_collapse", "stability.on_collapse", "stability.collapse_window",
                  "stability.collapse_sigma_jump", "stability.collapse_d_loss_floor", "stability.collapse_g_loss_jump",
                  "stability.collapse_d_loss_jump", "stability.collapse_patience", "stability.keep_before_collapse",
                  "train.jit_compile"}


def worker_temp_dir(model_dir: str, worker_id: int) -> str:
    """Where a non-chief worker of MultiWorkerMirroredStrategy writes its share of a distributed save."""
    return os.path.join(model_dir, f".worker{worker_id}_tmp")


class WorkerCheckpointManager:
    """tf.train.CheckpointManager in `directory` on the chief; on another worker of a multi-worker
    run, in `worker_temp_dir(temp_root)`, deleted after each save (every worker must take part in a
    distributed save; only the chief's copy is kept). Used by training runs and CAS."""

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, max_to_keep: int, chief: bool = True,
                 worker_id: int = 0, temp_root: Optional[str] = None):
        self.temp_dir = None if chief else worker_temp_dir(temp_root or directory, worker_id)
        self.manager = tf.train.CheckpointManager(checkpoint, self.temp_dir or directory, max_to_keep=max_to_keep)

    def save(self, step: int) -> Optional[str]:
        """Saves `ckpt-STEP`; the path on the chief, None elsewhere."""
        path = self.manager.save(checkpoint_number=int(step))
        if self.temp_dir:
            if tf.io.gfile.exists(self.temp_dir):  # gfile: MODEL_DIR may be gs://
                tf.io.gfile.rmtree(self.temp_dir)
            return None
        return path


class RunCheckpoint:
    """Save / restore of a run's G, D, EMA-G, optimisers and step (CHECKPOINT_OBJECTS).

    `model_dir=None` keeps nothing on disk (tests, benchmarks). A non-chief worker of
    MultiWorkerMirroredStrategy saves into a temporary directory (WorkerCheckpointManager).
    """

    def __init__(self, g, d, ema_g, g_opt, d_opt, step: tf.Variable, model_dir: Optional[str] = None,
                 max_to_keep: int = 5, chief: bool = True, worker_id: int = 0, extra: Optional[dict] = None):
        objects = dict(generator=variables_checkpoint(g), discriminator=variables_checkpoint(d),
                       ema_generator=variables_checkpoint(ema_g), g_optimizer=g_opt, d_optimizer=d_opt, step=step)
        assert tuple(objects) == CHECKPOINT_OBJECTS
        # Optional state of enabled features, by their own names (augment_p, ... with augment.kind
        # != none: AugmentState.checkpoint_objects).
        objects.update(extra or {})
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.model_dir, self.step = model_dir, step
        self.manager = (WorkerCheckpointManager(self.checkpoint, model_dir, max_to_keep, chief, worker_id)
                        if model_dir else None)

    def latest(self) -> Optional[str]:
        return tf.train.latest_checkpoint(self.model_dir) if self.model_dir else None

    def restore(self, path: Optional[str] = None) -> Optional[str]:
        """Restores `path` (default: the run's latest checkpoint, if any); returns the path restored."""
        path = path or self.latest()
        if path:
            self.checkpoint.restore(path).assert_consumed()
        return path

    def save(self) -> Optional[str]:
        """Saves `ckpt-STEP`; the path on the chief, None elsewhere (and without a model_dir)."""
        return self.manager.save(int(self.step.numpy())) if self.manager is not None else None


def check_resume_hparams(hp, path: str) -> None:
    """UserError if `path` (a run's hparams.yaml) differs from `hp` beyond RESUMABLE_KEYS and eval.*."""
    import yaml

    saved = hparams_from_dict(yaml.safe_load(paths.read_text(path)), path)
    diffs = rerun.differences(saved.to_dict(), hp.to_dict(),
                              may_change=lambda k: k in RESUMABLE_KEYS or k.startswith("eval."))
    if diffs:
        raise UserError(f"--model_dir holds a run with different hparams ({path}): " + rerun.describe(diffs, "in the run")
                        + ". Resume with the same --hparams/--hparams_overrides, or give a new --model_dir")


def check_imported_hparams(hp, path: str) -> None:
    """UserError if `hp` changes the architecture of an imported run (model.*, fixed by its module's
    weights); data.*, train.*, eval.*, augment.* and stability.* may change before its first step."""
    import yaml

    saved = hparams_from_dict(yaml.safe_load(paths.read_text(path)), path)
    diffs = rerun.differences({"model": saved.to_dict()["model"]}, {"model": hp.to_dict()["model"]})
    if diffs:
        raise UserError(f"--model_dir holds an imported TF-Hub generator ({path}) whose architecture the weights fix: "
                        + rerun.describe(diffs, "in the module") + ". Fine-tune with data.*, train.*, eval.*, augment.* overrides only")


def prepare_model_dir(hp, model_dir: str, chief: bool = True) -> None:
    """A fresh model_dir gets hparams.yaml; an existing run must have the same hparams (UserError)."""
    path = os.path.join(model_dir, HPARAMS_FILE)  # (a FILE at model_dir: refused by main.py's DIRECTORY_FLAGS)
    if tf.io.gfile.exists(path):  # gfile: MODEL_DIR may be gs://
        if imported_and_untrained(model_dir):
            check_imported_hparams(hp, path)  # fine-tuning sets data, train and eval freely
        else:
            check_resume_hparams(hp, path)
    if chief:
        tf.io.gfile.makedirs(model_dir)
        save_hparams(hp, path)  # rewrites resumable keys (e.g. a longer train_steps)
