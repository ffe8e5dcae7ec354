"""Interventions before collapse (paper Appendix G.1) and keeping the checkpoints a collapse would lose.

Appendix G.1 takes "checkpoints of a collapsed model ten or twenty thousand iterations before
collapse, changed some aspect of the training setup, then observed whether collapse occurred":
learning rates up or down, G or D frozen, Adam's β1 changed or its moment vectors reset.

    tf-biggan --mode=train --model_dir=RUN --checkpoint=RUN/pre_collapse/ckpt-4000 \\
        --intervene=g_lr=2.5e-5,freeze=none,reset_adam=g

resumes RUN from the chosen checkpoint (default: the latest) with those changes and everything
else as the run had it:
  * `g_lr`, `d_lr`, `disc_steps`, `d_beta1`, `freeze` (none | g | d) change the run's hparams
    (train.g_lr, train.d_lr, train.disc_steps, stability.d_beta1, stability.freeze); the new values
    are written to RUN/hparams.yaml, so a later plain resume keeps them;
  * `reset_adam` (g | d | both) zeroes that optimiser's moment vectors and its step count (so
    Adam's bias correction starts again), once, at the resume.
Checkpoints of RUN newer than the chosen one (the branch being abandoned) are moved to
RUN/abandoned/<n>/, never deleted. Every intervention is appended to RUN/interventions.json
(step, checkpoint, old and new values, actions, moved checkpoints), which is what makes the run
reproducible: a plain resume replays the recorded changes on top of --hparams before comparing
with RUN/hparams.yaml.

On a detected collapse (training/collapse.py) the trainer copies the last checkpoints from before
it to RUN/pre_collapse/ (`keep_checkpoints_before`), out of the CheckpointManager's rotation.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from typing import Dict, List, Optional, Tuple

import tensorflow as tf

from tf_biggan import atomic
from tf_biggan.config import hparams_from_dict
from tf_biggan.errors import UserError

HISTORY = "interventions.json"
PRE_COLLAPSE = "pre_collapse"
ABANDONED = "abandoned"
# --intervene key -> (hparams key, python type)
SETTINGS = {"g_lr": ("train.g_lr", float), "d_lr": ("train.d_lr", float),
            "disc_steps": ("train.disc_steps", int), "d_beta1": ("stability.d_beta1", float),
            "freeze": ("stability.freeze", str)}
FREEZE = ("none", "g", "d")
ACTIONS = {"reset_adam": ("g", "d", "both")}


def parse(text: str) -> Tuple[Dict[str, object], Dict[str, str]]:
    """`--intervene=k=v,...` -> ({hparams key: value}, {action: value}); UserError naming the fix."""
    settings, actions = {}, {}
    for pair in (p.strip() for p in (text or "").split(",")):
        if not pair:
            continue
        if "=" not in pair:
            raise UserError(f"--intervene: '{pair}' is not key=value (e.g. --intervene=g_lr=2.5e-5,reset_adam=g)")
        key, value = (s.strip() for s in pair.split("=", 1))
        if key in SETTINGS:
            name, kind = SETTINGS[key]
            try:
                settings[name] = kind(float(value)) if kind is int else kind(value)
            except ValueError:
                raise UserError(f"--intervene: {key} must be a {kind.__name__}, got {value!r}") from None
            if key == "freeze" and value not in FREEZE:
                raise UserError(f"--intervene: freeze must be one of {', '.join(FREEZE)}, got {value!r}")
        elif key in ACTIONS:
            if value not in ACTIONS[key]:
                raise UserError(f"--intervene: {key} must be one of {', '.join(ACTIONS[key])}, got {value!r}")
            actions[key] = value
        else:
            known = ", ".join(list(SETTINGS) + list(ACTIONS))
            raise UserError(f"--intervene: unknown key '{key}'. Known: {known}")
    if not settings and not actions:
        raise UserError("--intervene is empty: give key=value pairs, e.g. --intervene=g_lr=2.5e-5")
    return settings, actions


def _nested(flat: Dict[str, object]) -> dict:
    out: dict = {}
    for dotted, value in flat.items():
        section, key = dotted.split(".", 1)
        out.setdefault(section, {})[key] = value
    return out


def with_settings(hp, settings: Dict[str, object], where: str = "--intervene"):
    """hp with the hparams keys in `settings` replaced (validated)."""
    if not settings:
        return hp
    # The source stays the run's hparams file (the settings are recorded in the history).
    return dataclasses.replace(hparams_from_dict(_nested(settings), where, base=hp).validate(), source=hp.source)


def history(model_dir: str) -> List[dict]:
    path = os.path.join(model_dir, HISTORY)
    if not tf.io.gfile.exists(path):  # gfile: MODEL_DIR may be gs://
        return []
    import json

    with tf.io.gfile.GFile(path) as f:
        return json.loads(f.read())["interventions"]


def replay(hp, model_dir: str):
    """hp (from --hparams) with every recorded intervention of the run applied in order."""
    for entry in history(model_dir):
        hp = with_settings(hp, {k: v[1] for k, v in entry["changes"].items()}, os.path.join(model_dir, HISTORY))
    return hp


def checkpoint_step(path: str) -> int:
    match = re.search(r"ckpt-(\d+)$", path)
    if not match:
        raise UserError(f"--checkpoint={path}: not a tf-biggan checkpoint (expected .../ckpt-<step>)")
    return int(match.group(1))


def _checkpoint_files(path: str) -> List[str]:
    return tf.io.gfile.glob(path + ".*")


def _listed(directory: str) -> List[str]:
    state = tf.train.get_checkpoint_state(directory)
    return list(state.all_model_checkpoint_paths) if state else []


def _write_state(directory: str, paths: List[str]) -> None:
    if paths:
        tf.compat.v1.train.update_checkpoint_state(directory, paths[-1], all_model_checkpoint_paths=paths)
    elif tf.io.gfile.exists(os.path.join(directory, "checkpoint")):
        tf.io.gfile.remove(os.path.join(directory, "checkpoint"))


def keep_checkpoints_before(model_dir: str, step: int, count: int) -> List[str]:
    """Copies the last `count` checkpoints of model_dir saved BEFORE `step` to model_dir/pre_collapse/
    (outside the CheckpointManager's rotation; already kept ones stay). Returns the kept paths."""
    dest = os.path.join(model_dir, PRE_COLLAPSE)
    before = [p for p in _listed(model_dir) if checkpoint_step(p) < step][-count:]
    tf.io.gfile.makedirs(dest)
    kept = []
    for path in before:
        for src in _checkpoint_files(path):
            target = os.path.join(dest, os.path.basename(src))
            if not tf.io.gfile.exists(target):
                tmp = atomic.temporary_path(target)
                tf.io.gfile.copy(src, tmp, overwrite=True)
                tf.io.gfile.rename(tmp, target, overwrite=True)
        kept.append(os.path.join(dest, os.path.basename(path)))
    existing = [p for p in _listed(dest) if p not in kept]
    _write_state(dest, sorted(set(existing + kept), key=checkpoint_step))
    return kept


def begin(hp, model_dir: str, text: str, checkpoint: Optional[str], chief: bool = True):
    """Starts an intervention: (new hp, checkpoint to restore, actions). The chief moves the abandoned
    branch, records the intervention and writes the new hparams.yaml (other workers of a multi-worker
    run only compute the same new hp; the chosen checkpoint itself is never moved).
    `hp` is the run's current hparams."""
    from tf_biggan.config import save_hparams

    settings, actions = parse(text)
    latest = tf.train.latest_checkpoint(model_dir)
    if latest is None:
        raise UserError(f"--intervene: --model_dir={model_dir} has no checkpoint to resume from; train it first")
    chosen = checkpoint or latest
    if not tf.io.gfile.glob(chosen + ".index"):
        raise UserError(f"--checkpoint={chosen} does not exist; pick one of {_listed(model_dir)} "
                        f"or of {os.path.join(model_dir, PRE_COLLAPSE)}")
    step = checkpoint_step(chosen)
    new_hp = with_settings(hp, settings)
    old, new = hp.to_dict(), new_hp.to_dict()
    changes = {}
    for dotted in settings:
        section, key = dotted.split(".", 1)
        changes[dotted] = [old[section][key], new[section][key]]
    if not chief:
        return new_hp, chosen, actions
    # The abandoned branch: every checkpoint of model_dir newer than the chosen one.
    listed = _listed(model_dir)
    later = [p for p in listed if checkpoint_step(p) > step]
    moved = []
    if later:
        dest = os.path.join(model_dir, ABANDONED, str(len(history(model_dir))))
        tf.io.gfile.makedirs(dest)
        for path in later:
            for src in _checkpoint_files(path):
                tf.io.gfile.rename(src, os.path.join(dest, os.path.basename(src)), overwrite=True)
            moved.append(os.path.join(dest, os.path.basename(path)))
        _write_state(model_dir, [p for p in listed if p not in later])
    entry = {"step": step, "checkpoint": chosen, "changes": changes, "actions": actions, "moved": moved,
             "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    atomic.write_json(os.path.join(model_dir, HISTORY), {"interventions": history(model_dir) + [entry]})
    save_hparams(new_hp, os.path.join(model_dir, "hparams.yaml"))
    return new_hp, chosen, actions


def reset_adam(optimizer) -> None:
    """Zeroes Adam's first and second moment vectors and its step count (Appendix G.1)."""
    for variable in list(optimizer._momentums) + list(optimizer._velocities):
        variable.assign(tf.zeros_like(variable))
    optimizer.iterations.assign(0)
