"""A training run: G, D, EMA-G, optimisers, the step, the input and the checkpoint under one strategy,
and `--mode=train` (paper Section 3, Appendix C).

The parts live in their own modules: the per-replica step in step.py (the paper's procedure and
its extension points), the loop and its periodic actions in loop.py, checkpoints in
checkpoints.py, σ monitoring and sample grids in monitor.py, TensorBoard in summaries.py. This
module builds them and hands each what it needs through its constructor.

Input. Real data comes through `distribute_datasets_from_function` (per-host file sharding). The
step is both the RNG state (stateless latents) and the input position: the seeded input stream is
fast-forwarded by step x disc_steps x d_accumulations batches per replica on resume (train.replay_input;
a DistributedIterator cannot itself be checkpointed), so a killed run resumes on the same trajectory.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from tf_biggan.training import augmentation as augment_hooks
from tf_biggan.augment.controller import AugmentState
from tf_biggan.errors import UserError
from tf_biggan.layers.orthogonal_init import DeferredKernels, deferred_kernels, placeholder_kernels
from tf_biggan.models import Discriminator, Generator
from tf_biggan.progress import Progress
from tf_biggan.requests import TrainRequest
from tf_biggan.training import intervene, stability
from tf_biggan.training import loop as loop_lib
from tf_biggan.training import strategy as strategy_lib
from tf_biggan.training.adam import Adam
from tf_biggan.training.checkpoints import RunCheckpoint, check_resume_hparams, prepare_model_dir
from tf_biggan.training.ema import EMA
from tf_biggan.training.loop import NonFiniteLossError
from tf_biggan.training.monitor import SampleGrid, SingularValues
from tf_biggan.training.step import StepParts, TrainStep
from tf_biggan.training.summaries import Summaries


def default_dataset_fn(hp, seed: Optional[int] = None) -> Callable:
    """input_context -> per-replica batches of (images [-1, 1], int32 labels) of hp.data."""
    from tf_biggan.data.pipeline import make_dataset

    def dataset_fn(input_context):
        return make_dataset(hp.data, hp.model.resolution, hp.train.batch_size, input_context=input_context,
                            training=True, seed=seed)
    return dataset_fn


class GANTrainer:
    """G, D, EMA-G, optimisers, step, input and checkpoints of one run under one strategy.

    `dataset_fn(input_context)` must yield per-replica batches (images float [b, R, R, 3] in [-1, 1],
    int labels [b]); default: `hp.data` through tf_biggan.data.pipeline. `model_dir=None` keeps
    everything in memory (tests, benchmarks). Extend the step with `parts` (step.StepParts: d_inputs,
    d_penalties, g_penalties, latents, post_step, d_extra, ...), joined after augmentation's and the
    stability knobs' parts.

    `defer_init=True` (the train mode, benchmarks): G's and D's orthogonal draws run in a background
    thread while the first step is traced and optimised (layers/orthogonal_init.py); the weights are final once
    `restore`, the first training step, `save`, `sample_grid` or `singular_values` has run (or after
    `weights_ready()`). A restored checkpoint replaces the draws.
    """

    def __init__(self, hp, strategy: Optional[tf.distribute.Strategy] = None, model_dir: Optional[str] = None,
                 dataset_fn: Optional[Callable] = None, verbose: bool = True, defer_init: bool = False,
                 parts: Optional[StepParts] = None):
        self.hp = hp
        self.cfg = cfg = hp.train
        self.strategy = strategy or tf.distribute.get_strategy()
        self.model_dir = model_dir
        self.num_replicas = self.strategy.num_replicas_in_sync
        self.global_batch = cfg.batch_size
        # Images of one step for images/s: G's effective batch, micro-batch x train.g_accumulations.
        self.images_per_step = cfg.batch_size * cfg.g_accumulations
        if self.global_batch % self.num_replicas:
            raise UserError(f"train.batch_size={self.global_batch} is not divisible by the {self.num_replicas} "
                            f"replicas; use a multiple of {self.num_replicas}")
        self.chief = strategy_lib.is_chief(self.strategy)
        self.progress = Progress("train", enabled=verbose and self.chief)

        # Same initial weights on every worker and in every re-run with the same train.seed.
        keras.utils.set_random_seed(cfg.seed)
        # Several workers keep the draw at creation: its values are broadcast from the chief.
        self._deferred = (DeferredKernels() if defer_init and not strategy_lib.is_multi_worker(self.strategy)
                          else None)
        with self.strategy.scope():
            self.g = Generator(hp.model, hp.data.num_classes, name="generator")
            self.d = Discriminator(hp.model, hp.data.num_classes, dropout=hp.stability.d_dropout, name="discriminator")
            self.ema_g = Generator(hp.model, hp.data.num_classes, name="ema_generator")
            with deferred_kernels(self._deferred) if self._deferred is not None else contextlib.nullcontext():
                self.g.build_for_input()
                self.d.build_for_input()
            with placeholder_kernels():  # EMA-G is a copy of G (ema.copy() below): no orthogonal draws
                self.ema_g.build_for_input()
            adam = dict(beta_2=cfg.beta2, epsilon=cfg.adam_epsilon)
            self.g_opt = Adam(learning_rate=cfg.g_lr, beta_1=cfg.beta1, name="g_adam", **adam)
            d_beta1 = cfg.beta1 if hp.stability.d_beta1 is None else hp.stability.d_beta1  # Appendix I knob
            self.d_opt = Adam(learning_rate=cfg.d_lr, beta_1=d_beta1, name="d_adam", **adam)
            # Keras 3 creates slot variables lazily on the first apply_gradients, which would be inside
            # the replica function of strategy.run; building them here keeps them mirrored.
            self.g_opt.build(self.g.trainable_variables)
            self.d_opt.build(self.d.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            self.ema = EMA(self.g, self.ema_g, cfg.ema_decay, cfg.ema_start_step)
            if self._deferred is not None:
                self._deferred.start()  # the EMA copy follows the draws (weights_ready)
            else:
                self.ema.copy()
            # ADA / DiffAugment (tf_biggan.augment): p is one value for all replicas, checkpointed.
            self.augment = AugmentState(hp.augment, cfg.seed, self.global_batch)
        # The step's parts, in one list: augmentation's, then the Section 4 knobs that are on (all off
        # by default), then the caller's.
        augment_parts = augment_hooks.step_parts(self.augment, hp, self.strategy)
        self.stability = stability.StabilityKnobs(hp, self.g, self.d, self.g_opt, self.d_opt, self.strategy)
        step_parts = augment_parts.then(self.stability.parts).then(parts or StepParts())
        # With deferred draws, the weights are final after the trace and before the first step runs.
        self.train_step = TrainStep(hp, self.strategy, self.g, self.d, self.g_opt, self.d_opt, self.ema, self.step,
                                    step_parts, jit_compile=cfg.jit_compile,
                                    before_first_run=self.weights_ready if self._deferred is not None else None)

        # The iterator is made on first use, after `restore`, so it can start at the restored step.
        self._dataset_fn = dataset_fn
        self._iterator = None
        self.run_checkpoint = RunCheckpoint(self.g, self.d, self.ema_g, self.g_opt, self.d_opt, self.step,
                                            model_dir, cfg.keep_checkpoints, self.chief,
                                            strategy_lib.worker_id(self.strategy),
                                            extra=self.augment.checkpoint_objects() if self.augment.enabled else None)
        self.checkpoint = self.run_checkpoint.checkpoint  # what BestFidKeeper saves
        self._singular_values = None
        self._spectra = None  # (step, σ values) of the last `singular_values` call
        self._sample_grid = None

    def weights_ready(self) -> None:
        """Waits for deferred orthogonal draws, assigns them and copies G into EMA-G (no-op after)."""
        if self._deferred is not None:
            with self.strategy.scope():
                self._deferred.finish()
                self.ema.copy()
            self._deferred = None

    # ------------------------------------------------------------------ steps
    @property
    def iterator(self):
        """The distributed input iterator, positioned at the current step (train.replay_input)."""
        if self._iterator is None:
            step = int(self.step.numpy())
            # Every D micro-batch reads its own batch (gradient accumulation): k per D step.
            skip = step * self.cfg.disc_steps * self.cfg.d_accumulations if self.cfg.replay_input else 0
            if self._dataset_fn is not None:
                base_fn = self._dataset_fn
            elif self.cfg.replay_input or step == 0:
                base_fn = default_dataset_fn(self.hp)
            else:  # no replay: a fresh, differently seeded stream instead of repeating the first batches
                base_fn = default_dataset_fn(self.hp, seed=self.hp.data.seed + step)
            # One input pipeline feeds num_replicas / num_input_pipelines replicas a batch each per step.
            fn = ((lambda ctx: base_fn(ctx).skip(skip * ctx.num_replicas_in_sync // ctx.num_input_pipelines))
                  if skip else base_fn)
            self._iterator = iter(self.strategy.distribute_datasets_from_function(fn))
        return self._iterator

    def train_steps(self, num_steps: int) -> Dict[str, float]:
        """Runs `num_steps` steps (one tf.function call) and returns the last step's metrics."""
        self._spectra = None
        return self.train_step.run(self.iterator, num_steps)

    # ------------------------------------------------------------------ monitoring
    def singular_values(self) -> Dict[str, np.ndarray]:
        """σ0..σ2 of the raw kernel of every spectrally normalised G and D layer (Appendix F), computed
        once per step (the σ action and collapse detection both read them)."""
        self.weights_ready()
        self._singular_values = self._singular_values or SingularValues(self.g, self.d)
        step = int(self.step.numpy())
        if self._spectra is None or self._spectra[0] != step:
            self._spectra = (step, self._singular_values())
        return self._spectra[1]

    def sample_grid(self) -> np.ndarray:
        """uint8 grid of EMA-G samples under the strategy (monitor.SampleGrid)."""
        self.weights_ready()
        self._sample_grid = self._sample_grid or SampleGrid(self.ema_g, self.hp, self.strategy)
        return self._sample_grid()

    # ------------------------------------------------------------------ checkpoints
    def restore(self, path: Optional[str] = None) -> Optional[str]:
        """Restores `path` or the latest checkpoint of model_dir, if any; returns its path. The
        learning rates are the hparams', not the checkpoint's (an intervention may change them)."""
        if self._iterator is not None:
            raise RuntimeError("restore() must come before the first training step")
        if self._deferred is not None and (path or self.run_checkpoint.latest()):
            # The checkpoint sets every weight (RunCheckpoint.restore asserts that): no draws needed.
            self._deferred.cancel()
            self._deferred = None
        restored = self.run_checkpoint.restore(path)
        self._spectra = None
        if restored:
            self.g_opt.learning_rate.assign(self.cfg.g_lr)
            self.d_opt.learning_rate.assign(self.cfg.d_lr)
        return restored

    def save(self) -> Optional[str]:
        self.weights_ready()
        return self.run_checkpoint.save()

    def latest_checkpoint(self) -> Optional[str]:
        return self.run_checkpoint.latest()

    # ------------------------------------------------------------------ the loop
    def fit(self, train_steps: Optional[int] = None, best_fid_keeper=None) -> dict:
        """Trains up to global step `train_steps` (default train.train_steps) with the standard
        periodic actions (loop.py); returns the report."""
        target = self.cfg.train_steps if train_steps is None else train_steps
        summaries = Summaries(f"{self.model_dir}/train" if self.model_dir and self.chief else None)
        self.progress = Progress("train", total=target, start=int(self.step.numpy()), enabled=self.progress.enabled)
        actions = loop_lib.standard_actions(self, summaries, self.progress, best_fid_keeper)
        report = loop_lib.fit(self, target, actions, self.progress, summaries)
        self.weights_ready()  # (a run already at its target ran no step)
        return report


def run_train(hp, request: TrainRequest) -> dict:
    """`--mode=train`: the launch's strategy, resume if model_dir has a checkpoint, train, report."""
    return train_from_request(hp, request)[1]


def train_from_request(hp, request: TrainRequest):
    """(trainer, report) of `--mode=train` (run_train without dropping the trainer). main.py has
    checked that --model_dir is given."""
    model_dir = request.model_dir
    strategy = strategy_lib.launch_strategy(request.launch)
    hp = intervene.replay(hp, model_dir)  # the run's recorded interventions (Appendix G.1)
    prepare_model_dir(hp, model_dir, strategy_lib.is_chief(strategy))
    chosen, actions = None, {}
    if request.intervene:  # (a --checkpoint without one: refused by TrainRequest)
        hp, chosen, actions = intervene.begin(hp, model_dir, request.intervene, request.checkpoint,
                                              chief=strategy_lib.is_chief(strategy))
    trainer = GANTrainer(hp, strategy, model_dir, defer_init=True)
    restored = trainer.restore(chosen)
    if restored:
        trainer.progress.log(f"resumed from {restored} at step {int(trainer.step.numpy())}")
    else:  # no checkpoint of its own: train.init_from's run, or an imported run's module (warm_start.py)
        from tf_biggan.training.warm_start import pretrained_start

        pretrained_start(trainer, model_dir, log=trainer.progress.log)
    for net in ("g", "d"):
        if actions.get("reset_adam") in (net, "both"):
            intervene.reset_adam(getattr(trainer, f"{net}_opt"))
    if chosen:
        trainer.progress.log(f"intervention {request.intervene} from {chosen} (recorded in {intervene.HISTORY})")
    keeper = None
    if hp.eval.best_fid_every:
        if strategy_lib.is_multi_worker(strategy):
            raise UserError("eval.best_fid_every > 0 is not supported with several workers yet: set it to 0 "
                            "and run --mode=sweep on the saved checkpoints")
        from tf_biggan.evaluation.best_fid import BestFidKeeper

        keeper = BestFidKeeper(hp, model_dir, inception_path=request.inception_path, log=trainer.progress.log)
    from tf_biggan.data.pipeline import data_errors

    with data_errors():
        return trainer, trainer.fit(best_fid_keeper=keeper)


__all__ = ["GANTrainer", "run_train", "train_from_request", "NonFiniteLossError", "check_resume_hparams",
           "prepare_model_dir", "default_dataset_fn"]
