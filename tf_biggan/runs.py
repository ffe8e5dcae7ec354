"""A run directory: what it holds, whether it was imported, and loading it back (the ONE way every mode
that reads a run gets its networks).

A run directory (`--model_dir`) holds `hparams.yaml` and the trainer's checkpoints: G, D, EMA-G
(each variable named by its path in the model, `models.variables_checkpoint`), both
optimisers and the step. Evaluation, export, synthesis and the qualitative figures sample the EMA
generator (paper Section 3: "moving averages of G's weights"); the memorisation test (Section 4.2)
needs D. `load_run` builds only the networks the caller asks for and restores them from the latest
checkpoint, or from `--checkpoint` (any checkpoint of the run: `MODEL_DIR/ckpt-N`, or the best-FID
one kept in `MODEL_DIR/best_fid`), without building the optimisers.

A run made by `--mode=import_hub` that has not trained reads its import, RUN/pretrained/ckpt-0;
restored from that checkpoint, a generator still holds the module's BN statistics, and `load_run` is
where that is decided (`Run.from_module`; `sampling.standing_stats.hold_module_statistics`). Any other
checkpoint of the run (a fine-tuning step, best_fid/ckpt-N) has statistics of its own.

`run_hparams(model_dir, hp, hparams, hparams_overrides)` is the configuration a mode applies to a run:
the run's own model / data / train sections, the eval section of `--hparams` when one is named, and
`eval.*` keys of `--hparams_overrides` on top (e.g. `eval.num_samples=50000`, `eval.export_truncations=[...]`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

from tf_biggan.errors import UserError

# A run directory's files (the on-disk format every mode reads and writes).
HPARAMS_FILE = "hparams.yaml"  # the resolved hyper-parameters, written on the first start
IMPORT_FILE = "import.json"  # written by --mode=import_hub: the run's generator came from a TF-Hub module
PRETRAINED_DIR = "pretrained"  # RUN/pretrained/ckpt-0: the imported module's weights, untrained


@dataclasses.dataclass
class Run:
    """What `load_run` restored: networks not asked for are None."""

    model_dir: str
    checkpoint: str  # the checkpoint prefix restored
    step: int
    hp: object
    ema_generator: Optional[object] = None
    generator: Optional[object] = None
    discriminator: Optional[object] = None
    from_module: bool = False  # `checkpoint` is the import's: the generators hold the module's statistics


def require_model_dir(model_dir: str) -> str:
    """`--model_dir` (given: main.py's REQUIRED table), checked to be an existing directory; a UserError
    naming the flag otherwise."""
    import tensorflow as tf

    if not tf.io.gfile.isdir(model_dir):
        raise UserError(f"--model_dir={model_dir} does not exist; train first with --mode=train "
                        f"--model_dir={model_dir}")
    return model_dir


def saved_hparams(model_dir: str):
    """The resolved hparams a run was trained with (MODEL_DIR/hparams.yaml)."""
    import tensorflow as tf

    from tf_biggan.config import load_hparams

    path = os.path.join(model_dir, HPARAMS_FILE)
    if not tf.io.gfile.exists(path):
        raise UserError(f"--model_dir={model_dir} has no {HPARAMS_FILE}: is it a tf-biggan training run? "
                        f"Train first with --mode=train --model_dir={model_dir}")
    return load_hparams(path)


def run_hparams(model_dir: str, hp=None, hparams: Optional[str] = None, hparams_overrides: str = ""):
    """The hparams a mode applies to a run: the run's own (model, data, train), with the eval section
    of `hp` when --hparams named a file (`hparams`), and the eval.* keys of --hparams_overrides on top."""
    from tf_biggan.config import hparams_from_dict, parse_overrides

    run = saved_hparams(model_dir)
    if hp is not None and hparams:
        run = dataclasses.replace(run, eval=hp.eval)
    overrides = parse_overrides(hparams_overrides or "")
    if overrides.get("eval"):
        run = hparams_from_dict({"eval": overrides["eval"]}, "--hparams_overrides", base=run)
    return run.validate()


def run_truncation(hp, truncation: Optional[float] = None) -> float:
    """The truncation a mode samples a run at: `truncation` (--truncation), else the run's eval.truncation (0 =
    untruncated; an imported run's is 1.0). A one-line UserError naming the flag or key where it is no
    truncation of eval.latent_convention (`latents.check_truncation`: hub_notebook's t = 0 is z = 0)."""
    from tf_biggan.sampling.latents import check_truncation

    if truncation is None:
        return check_truncation(hp.eval.truncation, hp.eval.latent_convention, "eval.truncation")
    return check_truncation(truncation, hp.eval.latent_convention, "--truncation")


def is_imported(model_dir: str) -> bool:
    """Whether `--mode=import_hub` made this run (it holds IMPORT_FILE)."""
    from tf_biggan import paths

    return paths.exists(os.path.join(model_dir, IMPORT_FILE))


def imported_checkpoint(model_dir: str) -> Optional[str]:
    """RUN/pretrained/ckpt-0 of an imported run, else None."""
    import tensorflow as tf

    if not is_imported(model_dir):
        return None
    return tf.train.latest_checkpoint(os.path.join(model_dir, PRETRAINED_DIR))


def imported_and_untrained(model_dir: str) -> bool:
    """An imported run that has no checkpoint of its own yet (its hparams may still change but for model.*)."""
    import tensorflow as tf

    return is_imported(model_dir) and not tf.train.latest_checkpoint(model_dir)


def resolve_checkpoint(model_dir: str, checkpoint: Optional[str] = None) -> str:
    """The checkpoint prefix to restore: `checkpoint` (checked to exist) or the run's latest."""
    import tensorflow as tf

    if checkpoint:
        if not tf.io.gfile.exists(checkpoint + ".index"):
            raise UserError(f"--checkpoint={checkpoint} does not exist (no {checkpoint}.index): pass a checkpoint "
                            f"prefix such as {os.path.join(model_dir, 'ckpt-3000')} or "
                            f"{os.path.join(model_dir, 'best_fid', 'ckpt-3000')} (see the *.index files), or omit "
                            "--checkpoint to use the latest")
        return checkpoint
    latest = tf.train.latest_checkpoint(model_dir)
    if not latest:  # an imported run that has not trained yet: the module's weights
        latest = imported_checkpoint(model_dir)
    if not latest:
        raise UserError(f"--model_dir={model_dir} has no checkpoint yet; train it first (--mode=train)")
    return latest


def _is_import_checkpoint(model_dir: str, path: str) -> bool:
    """Whether `path` is the checkpoint `--mode=import_hub` wrote (the module's weights, untrained)."""
    from tf_biggan import paths

    imported = imported_checkpoint(model_dir)
    return bool(imported) and os.path.normpath(paths.absolute(path)) == os.path.normpath(paths.absolute(imported))


def load_run(model_dir: str, checkpoint: Optional[str] = None, *, hp=None, ema_generator: bool = True,
             generator: bool = False, discriminator: bool = False) -> Run:
    """The networks asked for, restored from `checkpoint` (default: the latest of `model_dir`).

    `hp` defaults to the run's saved hparams (`run_hparams` gives the one a mode should use). The
    networks are built from hp.model exactly as the trainer builds them and restored by variable
    path; a checkpoint that lacks one of them (e.g. an export, or another model size) is a UserError.
    """
    import tensorflow as tf

    from tf_biggan.host import grappler
    from tf_biggan.layers.spectral_norm import settle_spectral_norm
    from tf_biggan.models import Discriminator, Generator
    from tf_biggan.models.variables_checkpoint import variables_checkpoint

    grappler.configure()  # the trainer's graph options, so the numbers match its process's
    hp = hp or saved_hparams(model_dir)
    path = resolve_checkpoint(model_dir, checkpoint)
    nets = {}
    if ema_generator:
        nets["ema_generator"] = Generator(hp.model, hp.data.num_classes, name="ema_generator")
    if generator:
        nets["generator"] = Generator(hp.model, hp.data.num_classes, name="generator")
    if discriminator:
        nets["discriminator"] = Discriminator(hp.model, hp.data.num_classes, name="discriminator")
    for net in nets.values():
        net.build_for_input(2)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(step=step, **{name: variables_checkpoint(net) for name, net in nets.items()})
    try:
        ckpt.restore(path).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError) as exc:
        raise UserError(f"checkpoint {path} does not hold {', '.join(nets)} matching the run's hparams "
                        f"(model.*): {str(exc)[:300]}. Pass a training checkpoint of --model_dir={model_dir} "
                        "(ckpt-N, or best_fid/ckpt-N)") from None
    if ema_generator:  # sigma from EMA-G's own kernels, once per load (layers/spectral_norm.py)
        settle_spectral_norm(nets["ema_generator"], hp.model.sn_settle_iterations)
    from_module = _is_import_checkpoint(model_dir, path)
    if from_module:
        from tf_biggan.sampling.standing_stats import hold_module_statistics

        for name in ("ema_generator", "generator"):
            if name in nets:
                hold_module_statistics(nets[name])
    return Run(model_dir=model_dir, checkpoint=path, step=int(step.numpy()), hp=hp, from_module=from_module, **nets)
