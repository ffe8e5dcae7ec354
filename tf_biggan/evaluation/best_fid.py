"""The best-FID checkpoint during training (Section 4.2: the paper stops before collapse).

BigGAN-PyTorch keeps `best` checkpoints by FID; here `BestFidKeeper` scores the EMA generator every
`eval.best_fid_every` steps and keeps the best full training checkpoint in MODEL_DIR/best_fid, which
any mode that reads a run takes as `--checkpoint` (`best_checkpoint(MODEL_DIR)`).
"""

from __future__ import annotations

import json
import math
import os
from typing import Callable, Optional

import tensorflow as tf

from tf_biggan import atomic
from tf_biggan.evaluation.scoring import Evaluator
from tf_biggan.sampling.latents import check_truncation
from tf_biggan.sampling.standing_stats import get_bn_stats, set_bn_stats

BEST_FID_DIR = "best_fid"
BEST_FID_REPORT = "best_fid.json"


class BestFidKeeper:
    """Periodic FID of the EMA generator during training, keeping the best checkpoint apart.

    The paper trains "until collapse" and reports the model before it (Section 4.2; BigGAN-PyTorch
    keeps `best` checkpoints by FID): the latest checkpoint of a collapsed run is its worst. Every
    call scores the trainer's CURRENT EMA-G (standing statistics of that generator at `truncation`,
    default the run's eval.truncation: 0 = untruncated, an imported TF-Hub run's 1.0, never 0 under
    hub_notebook; `eval.best_fid_samples` samples, 0 = eval.num_samples) and, when FID improves,
    saves the trainer's full checkpoint (G, D, EMA-G, optimisers, step) as
    `MODEL_DIR/best_fid/ckpt-STEP` (only the best is kept) and `best_fid.json`. Evaluate or export
    it by passing that path (best_fid.json's "checkpoint", or `best_checkpoint(MODEL_DIR)`) as
    --checkpoint.

    The training loop calls it every eval.best_fid_every steps (chief only): `keeper(trainer)` ->
    FID (float); the checkpoint is kept if it is the best so far.

    The EMA-G's BN statistics are restored after scoring, so training is not affected. A restarted
    run reads best_fid.json and only replaces the kept checkpoint when it beats it.
    """

    def __init__(self, hp, model_dir: str, inception_path: Optional[str] = None, truncation: Optional[float] = None,
                 num_samples: Optional[int] = None, seed: int = 0, extractor=None,
                 log: Callable[[str], None] = print):
        self.hp = hp
        self.model_dir = model_dir
        # checked before training starts: hub_notebook has no t = 0 (z would be all zeros)
        self.truncation = check_truncation(hp.eval.truncation if truncation is None else truncation,
                                           hp.eval.latent_convention, "eval.truncation" if truncation is None
                                           else "BestFidKeeper truncation")
        self.directory = os.path.join(model_dir, BEST_FID_DIR)
        self.log = log
        num_samples = num_samples or hp.eval.best_fid_samples or hp.eval.num_samples
        self.evaluator = Evaluator.for_run(hp, model_dir, inception_path, seed, num_samples, extractor,
                                           log=lambda m: log(f"[best_fid] {m}"))
        self.best: Optional[dict] = None
        report = os.path.join(self.directory, BEST_FID_REPORT)
        if tf.io.gfile.exists(report):  # gfile: MODEL_DIR may be gs://
            with tf.io.gfile.GFile(report) as f:
                self.best = json.loads(f.read())
        self._manager = None
        self._manager_for = None

    @property
    def best_fid(self) -> float:
        return float(self.best["fid"]) if self.best else math.inf

    def __call__(self, trainer) -> float:
        """Scores `trainer.ema_g` at `trainer.step` and keeps `trainer.checkpoint` if best: the FID."""
        return self.update(trainer.ema_g, int(trainer.step.numpy()), trainer.checkpoint)

    def update(self, ema_generator, step: int, checkpoint: Optional[tf.train.Checkpoint] = None) -> float:
        """FID of `ema_generator` now; if it is the lowest so far, `checkpoint` (any
        tf.train.Checkpoint holding `ema_generator`) is saved in MODEL_DIR/best_fid."""
        from tf_biggan.layers.spectral_norm import settle_spectral_norm

        settle_spectral_norm(ema_generator, ema_generator.cfg.sn_settle_iterations)  # sigma of its own kernels
        saved = get_bn_stats(ema_generator)
        try:
            point = self.evaluator.evaluate(ema_generator, self.truncation)
        finally:
            set_bn_stats(ema_generator, saved)
        fid = point["fid"]
        improved = math.isfinite(fid) and fid < self.best_fid
        self.log(f"[best_fid] step {step}: FID {fid:.3f}  IS {point['is']:.3f}"
                 + ("  (new best)" if improved else f"  (best {self.best_fid:.3f})"))
        if improved:
            path = None
            if checkpoint is not None:
                if self._manager is None or self._manager_for is not checkpoint:
                    # max_to_keep=1: the manager deletes the previous best only after the new one is
                    # complete and its state file has been rewritten (TF writes that file atomically).
                    self._manager = tf.train.CheckpointManager(checkpoint, self.directory, max_to_keep=1)
                    self._manager_for = checkpoint
                path = self._manager.save(checkpoint_number=step)
            self.best = dict(point, step=int(step), checkpoint=path, extractor=self.evaluator.extractor.name)
            atomic.write_json(os.path.join(self.directory, BEST_FID_REPORT), self.best)
        return fid


def best_checkpoint(model_dir: str) -> Optional[str]:
    """The best-FID checkpoint BestFidKeeper kept for a run, or None."""
    return tf.train.latest_checkpoint(os.path.join(model_dir, BEST_FID_DIR))
