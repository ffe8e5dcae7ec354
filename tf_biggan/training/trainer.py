"""The GAN trainer and `--mode=train` (paper Section 3, Appendix C; monitoring of Section 4, Appendix F).

One training step (Section 3: "we halve the learning rates and take two D steps per G step"):

    repeat train.disc_steps times, each on its own FRESH real batch:
        x_fake = G(z, y_fake)                    (G in training mode: batch statistics)
        D update on hinge L_D over [x_real; x_fake] in ONE D call, so D's spectral-norm power
        iteration runs once per D step (compare_gan also concatenated real and fake)
    G update on hinge L_G + beta * ortho_reg(G)   (Eq. 3, beta = model.ortho_reg)
    EMA of G's weights (ema.py)

Distribution. Everything runs under a tf.distribute strategy (strategy.py). Each replica's loss is
its examples' sum divided by the GLOBAL batch (losses.py) and the ortho penalty is divided by the
number of replicas, so the all-reduced gradient of N replicas equals one device's gradient for the
same global batch; G's BatchNorm moments are cross-replica (Appendix C). Latents are drawn with
stateless RNG for the whole global batch from a key (train.seed, step, sub-step) and each replica
takes its slice: the trajectory does not depend on the number of replicas, and the step counter IS
the RNG state (compare_gan used stateless per-step RNG on TPU for the same reason: TPUs ignore op
seeds). Real data comes through `distribute_datasets_from_function` (per-host file sharding);
`train.steps_per_loop` steps run inside one tf.function call, so a TPU host is not the bottleneck.

Checkpoints (tf.train.CheckpointManager, atomic): G, D, EMA-G, both Adam optimisers and the step,
which is both the RNG state (stateless latents) and the input position (the seeded input stream is
fast-forwarded by step x disc_steps batches on resume, train.replay_input; a DistributedIterator
cannot itself be checkpointed), so a killed run resumes on the same trajectory. A fresh model_dir gets the resolved `hparams.yaml`; resuming with different hparams is a
UserError listing the differences.

Monitoring (TensorBoard `model_dir/train`): losses, D's mean output on real and fake, learning rates,
images/s every log_every steps; sigma_0..sigma_2 of every G and D weight every sv_every steps
(Section 4: "the top three singular values of each weight matrix [are] the most informative"); a PNG
grid of EMA-G samples (fixed z and classes, standing statistics first, Appendix C.1) every
sample_every steps. A non-finite loss stops the run naming the step and the last good checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from tf_biggan.training import strategy as strategy_lib
from tf_biggan.config import dump_hparams, hparams_from_dict, save_hparams
from tf_biggan.training.ema import EMA
from tf_biggan.training.checkpoints import variables_checkpoint
from tf_biggan.errors import UserError
from tf_biggan.images import tile
from tf_biggan.layers.ortho_reg import ortho_reg
from tf_biggan.layers.spectral_norm import spectral_norm_layers
from tf_biggan.training.losses import D_LOSSES, G_LOSSES
from tf_biggan.models import Discriminator, Generator

# hparams that may change when a run is resumed: how long to train and how often to log / save.
RESUMABLE_KEYS = {"train.train_steps", "train.steps_per_loop", "train.save_every", "train.log_every",
                  "train.sv_every", "train.sample_every", "train.keep_checkpoints", "train.sample_columns",
                  "train.replay_input", "train.jit_compile"}
METRICS = ("d_loss", "d_loss_real", "d_loss_fake", "g_loss", "ortho_reg", "d_real", "d_fake")


class NonFiniteLossError(UserError):
    """A loss became NaN/inf: the run stops; the message names the step and the last good checkpoint."""


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def check_resume_hparams(hp, path: str) -> None:
    """UserError if `path` (a run's hparams.yaml) differs from `hp` beyond RESUMABLE_KEYS."""
    import yaml

    with open(path) as f:
        saved = hparams_from_dict(yaml.safe_load(f), path)
    old, new = _flatten(saved.to_dict()), _flatten(hp.to_dict())
    diffs = [f"{k}: {old.get(k)!r} in the run, {new.get(k)!r} now" for k in sorted(set(old) | set(new))
             if k not in RESUMABLE_KEYS and not k.startswith("eval.") and old.get(k) != new.get(k)]
    if diffs:
        raise UserError(f"--model_dir holds a run with different hparams ({path}): " + "; ".join(diffs)
                        + ". Resume with the same --hparams/--hparams_overrides, or pass a new --model_dir")


def _write_json_atomic(path: str, payload: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".report-", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _format_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def default_dataset_fn(hp, seed: Optional[int] = None) -> Callable:
    """input_context -> per-replica batches of (images [-1, 1], int32 labels) of hp.data."""
    from tf_biggan.data.pipeline import make_dataset

    def dataset_fn(input_context):
        return make_dataset(hp.data, hp.model.resolution, hp.train.batch_size, input_context=input_context,
                            training=True, seed=seed)
    return dataset_fn


class Summaries:
    """Scalars to TensorBoard (if installed) and always to `scalars.jsonl`, images to TensorBoard.

    TensorBoard is not a dependency of tf_biggan: without it the event files are skipped (one
    notice) and `model_dir/train/scalars.jsonl` (one {"step", "tag", "value"} object a line) still
    holds every scalar, for scripts and plots.
    """

    def __init__(self, logdir: Optional[str], log: Callable[[str], None]):
        self.logdir = logdir
        self.writer = None
        self._jsonl = None
        if not logdir:
            return
        os.makedirs(logdir, exist_ok=True)
        self._jsonl = open(os.path.join(logdir, "scalars.jsonl"), "a")
        try:
            import tensorboard  # noqa: F401
            self.writer = tf.summary.create_file_writer(logdir)
        except ImportError:
            log("TensorBoard is not installed: scalars go to train/scalars.jsonl only "
                "(pip install tensorboard for event files)")

    def scalars(self, step: int, values: Dict[str, float]) -> None:
        if self._jsonl is None:
            return
        for tag, value in values.items():
            self._jsonl.write(json.dumps({"step": int(step), "tag": tag, "value": float(value)}) + "\n")
        if self.writer is not None:
            with self.writer.as_default(step=step):
                for tag, value in values.items():
                    tf.summary.scalar(tag, value)

    def image(self, step: int, tag: str, image: np.ndarray) -> None:
        if self.writer is not None:
            with self.writer.as_default(step=step):
                tf.summary.image(tag, image[None])

    def flush(self) -> None:
        if self._jsonl is not None:
            self._jsonl.flush()
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        self.flush()
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


class GANTrainer:
    """G, D, EMA-G, optimisers, input and checkpoints of one run under one strategy.

    `dataset_fn(input_context)` must yield per-replica batches (images float [b, R, R, 3] in [-1, 1],
    int labels [b]); default: `hp.data` through tf_biggan.data.pipeline. `model_dir=None` keeps
    everything in memory (tests, benchmarks).
    """

    def __init__(self, hp, strategy: Optional[tf.distribute.Strategy] = None, model_dir: Optional[str] = None,
                 dataset_fn: Optional[Callable] = None, verbose: bool = True):
        self.hp = hp
        self.cfg = cfg = hp.train
        self.strategy = strategy or tf.distribute.get_strategy()
        self.model_dir = model_dir
        self.verbose = verbose
        self.num_replicas = self.strategy.num_replicas_in_sync
        self.global_batch = cfg.batch_size
        if self.global_batch % self.num_replicas:
            raise UserError(f"train.batch_size={self.global_batch} is not divisible by the {self.num_replicas} "
                            f"replicas; use a multiple of {self.num_replicas}")
        self.local_batch = self.global_batch // self.num_replicas
        self.chief = strategy_lib.is_chief(self.strategy)

        # Same initial weights on every worker and in every re-run with the same train.seed.
        keras.utils.set_random_seed(cfg.seed)
        with self.strategy.scope():
            self.g = Generator(hp.model, hp.data.num_classes, name="generator")
            self.d = Discriminator(hp.model, hp.data.num_classes, name="discriminator")
            self.ema_g = Generator(hp.model, hp.data.num_classes, name="ema_generator")
            for model in (self.g, self.d, self.ema_g):
                model.build_for_input(2)
            adam = dict(beta_1=cfg.beta1, beta_2=cfg.beta2, epsilon=cfg.adam_epsilon)
            self.g_opt = keras.optimizers.Adam(learning_rate=cfg.g_lr, name="g_adam", **adam)
            self.d_opt = keras.optimizers.Adam(learning_rate=cfg.d_lr, name="d_adam", **adam)
            # Keras 3 creates slot variables lazily on the first apply_gradients, which would be inside
            # the replica function of strategy.run; building them here keeps them mirrored.
            self.g_opt.build(self.g.trainable_variables)
            self.d_opt.build(self.d.trainable_variables)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
            self.ema = EMA(self.g, self.ema_g, cfg.ema_decay, cfg.ema_start_step)
            self.ema.copy()
        self._d_loss_fn = D_LOSSES[cfg.loss]
        self._g_loss_fn = G_LOSSES[cfg.loss]
        self._ortho_kernels = self.g.ortho_reg_kernels()

        # The iterator is made on first use, after `restore`, so it can start at the restored step.
        self._dataset_fn = dataset_fn
        self._iterator = None

        objects = dict(generator=variables_checkpoint(self.g), discriminator=variables_checkpoint(self.d),
                       ema_generator=variables_checkpoint(self.ema_g),
                       g_optimizer=self.g_opt, d_optimizer=self.d_opt, step=self.step)
        self.checkpoint = tf.train.Checkpoint(**objects)
        self.manager = None
        self._temp_dir = None
        if model_dir:
            ckpt_dir = model_dir
            if not self.chief:
                # MultiWorkerMirroredStrategy: every worker must take part in saving; only the
                # chief's copy is kept.
                self._temp_dir = os.path.join(model_dir, f".worker{strategy_lib.worker_id(self.strategy)}_tmp")
                ckpt_dir = self._temp_dir
            self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir, max_to_keep=cfg.keep_checkpoints)
        # train.jit_compile: XLA compiles the replica step (the loop around it reads the input
        # iterator, which XLA cannot compile).
        self._replica_fn = (tf.function(self._replica_update, jit_compile=True) if cfg.jit_compile
                            else self._replica_update)
        self._loop_fn = tf.function(self._loop)
        # tf_biggan.evaluate.BestFidKeeper, set by train_from_flags when eval.best_fid_every > 0.
        self.best_fid_keeper = None
        self._sv_fn = None
        self._sample_fn = None

    # ------------------------------------------------------------------ the step
    def _latents(self, step, substep: int):
        """(z, y) for this replica: its slice of a global batch drawn from (seed, step, substep)."""
        counter = tf.cast(step, tf.int64) * (self.cfg.disc_steps + 1) + substep
        key_z = tf.stack([tf.constant(2 * self.cfg.seed, tf.int64), counter])
        key_y = tf.stack([tf.constant(2 * self.cfg.seed + 1, tf.int64), counter])
        z = tf.random.stateless_normal((self.global_batch, self.hp.model.dim_z), seed=key_z)
        y = tf.random.stateless_uniform((self.global_batch,), seed=key_y, maxval=self.hp.data.num_classes,
                                        dtype=tf.int32)
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        start = tf.cast(replica, tf.int32) * self.local_batch
        return z[start:start + self.local_batch], y[start:start + self.local_batch]

    def _replica_step(self, real_batches, step):
        """One G step and `disc_steps` D steps on this replica (Section 3); returns its metric shares."""
        # The latents are drawn outside the (optionally XLA-compiled) update: XLA's stateless normal
        # sampler gives other numbers than TF's for the same key, which would change the trajectory.
        latents = [self._latents(step, k) for k in range(self.cfg.disc_steps + 1)]
        return self._replica_fn(real_batches, latents)

    def _replica_update(self, real_batches, latents):
        """The updates of `_replica_step` given this replica's latents (train.jit_compile: XLA)."""
        gb = self.global_batch
        for k, (x_real, y_real) in enumerate(real_batches):
            z, y_fake = latents[k]
            x_fake = self.g((z, y_fake), training=True)
            x_real = tf.cast(x_real, x_fake.dtype)
            y_real = tf.cast(y_real, tf.int32)
            with tf.GradientTape() as tape:
                logits = self.d((tf.concat([x_real, x_fake], 0), tf.concat([y_real, y_fake], 0)), training=True)
                real_logits, fake_logits = logits[:self.local_batch], logits[self.local_batch:]
                d_loss, d_real_part, d_fake_part = self._d_loss_fn(real_logits, fake_logits, gb)
            grads = tape.gradient(d_loss, self.d.trainable_variables)
            self.d_opt.apply_gradients(zip(grads, self.d.trainable_variables))
        z, y = latents[self.cfg.disc_steps]
        with tf.GradientTape() as tape:
            fake_logits_g = self.d((self.g((z, y), training=True), y), training=True)
            g_loss = self._g_loss_fn(fake_logits_g, gb)
            # Divided by the replica count: the all-reduce sums N copies of this gradient.
            reg = ortho_reg(self._ortho_kernels, self.hp.model.ortho_reg)
            total = g_loss + reg / self.num_replicas
        grads = tape.gradient(total, self.g.trainable_variables)
        self.g_opt.apply_gradients(zip(grads, self.g.trainable_variables))
        share = lambda v: tf.reduce_sum(tf.cast(v, tf.float32)) / gb  # noqa: E731
        return {"d_loss": d_loss, "d_loss_real": d_real_part, "d_loss_fake": d_fake_part, "g_loss": g_loss,
                "ortho_reg": reg / self.num_replicas, "d_real": share(real_logits), "d_fake": share(fake_logits)}

    def _loop(self, iterator, num_steps):
        """`num_steps` training steps in one graph (train.steps_per_loop); the last step's metrics."""
        metrics = {k: tf.constant(0.0) for k in METRICS}
        for _ in tf.range(num_steps):
            batches = [next(iterator) for _ in range(self.cfg.disc_steps)]
            step = tf.convert_to_tensor(self.step)
            per_replica = self.strategy.run(self._replica_step, args=(batches, step))
            metrics = {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[k], axis=None)
                       for k in METRICS}
            self.step.assign_add(1)
            self.ema.update(self.step)
        return metrics

    @property
    def iterator(self):
        """The distributed input iterator, positioned at the current step (train.replay_input).

        Each step consumes `disc_steps` batches of every input pipeline; the stream is seeded and
        deterministic, so skipping step * disc_steps batches reproduces where the killed run was.
        """
        if self._iterator is None:
            step = int(self.step.numpy())
            skip = step * self.cfg.disc_steps if self.cfg.replay_input else 0
            if self._dataset_fn is not None:
                base_fn = self._dataset_fn
            elif self.cfg.replay_input or step == 0:
                base_fn = default_dataset_fn(self.hp)
            else:  # no replay: a fresh, differently seeded pass instead of repeating the first batches
                base_fn = default_dataset_fn(self.hp, seed=self.hp.data.seed + step)
            fn = (lambda ctx: base_fn(ctx).skip(skip)) if skip else base_fn
            self._iterator = iter(self.strategy.distribute_datasets_from_function(fn))
        return self._iterator

    def train_steps(self, num_steps: int) -> Dict[str, float]:
        """Runs `num_steps` steps (one tf.function call) and returns the last step's metrics."""
        metrics = self._loop_fn(self.iterator, tf.constant(num_steps, tf.int64))
        return {k: float(v.numpy()) for k, v in metrics.items()}

    # ------------------------------------------------------------------ monitoring
    def singular_values(self) -> Dict[str, np.ndarray]:
        """sigma_0..sigma_2 of the raw kernel of every spectrally normalised G and D layer (Appendix F)."""
        layers = [("G", l) for l in spectral_norm_layers(self.g)] + [("D", l) for l in spectral_norm_layers(self.d)]
        if self._sv_fn is None:
            def all_singular_values():
                return [layer.singular_values(3) for _, layer in layers]
            # No AutoGraph: plain Python loops over layers, and conversion of the bound methods
            # failed under MultiWorkerMirroredStrategy.
            self._sv_fn = tf.function(all_singular_values, autograph=False)
        values = self._sv_fn()
        return {f"{net}/{l.kernel.path}": v.numpy() for (net, l), v in zip(layers, values)}

    def sample_grid(self) -> np.ndarray:
        """uint8 grid of EMA-G samples (image_grid.tile): rows = classes, fixed z (standing stats first)."""
        from tf_biggan.sampling.standing_stats import accumulate_standing_stats

        ev = self.hp.eval
        accumulate_standing_stats(self.ema_g, num_passes=ev.standing_stats_passes,
                                  batch_size=ev.standing_stats_batch, seed=self.cfg.seed)
        rows = min(self.hp.data.num_classes, 10)
        cols = self.cfg.sample_columns
        classes = np.repeat(np.linspace(0, self.hp.data.num_classes - 1, rows).round().astype(np.int32), cols)
        z = tf.random.stateless_normal((rows * cols, self.hp.model.dim_z), seed=(self.cfg.seed, 7919))
        images = self.ema_g((z, tf.constant(classes)), training=False).numpy()
        return tile(images.reshape((rows, cols) + images.shape[1:]))

    # ------------------------------------------------------------------ checkpoints
    def restore(self) -> Optional[str]:
        """Restores the latest checkpoint of model_dir, if any; returns its path."""
        if self.manager is None:
            return None
        latest = tf.train.latest_checkpoint(self.model_dir)
        if latest:
            if self._iterator is not None:
                raise RuntimeError("restore() must come before the first training step")
            self.checkpoint.restore(latest).assert_consumed()
        return latest

    def save(self) -> Optional[str]:
        if self.manager is None:
            return None
        path = self.manager.save(checkpoint_number=int(self.step.numpy()))
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            return None
        return path

    def latest_checkpoint(self) -> Optional[str]:
        return tf.train.latest_checkpoint(self.model_dir) if self.model_dir else None

    # ------------------------------------------------------------------ the loop
    def fit(self, train_steps: Optional[int] = None) -> dict:
        """Trains up to global step `train_steps` (default train.train_steps) with monitoring; the report."""
        cfg = self.cfg
        target = cfg.train_steps if train_steps is None else train_steps
        summaries = Summaries(os.path.join(self.model_dir, "train") if self.model_dir and self.chief else None,
                              self._log)
        step = int(self.step.numpy())
        start_step = step
        metrics: Dict[str, float] = {}
        timed_images, timed_seconds = 0, 0.0
        ips = 0.0
        first_loop = True
        last_saved = self.latest_checkpoint()
        wall_start = time.time()
        self._log(f"training from step {step} to {target}: global batch {self.global_batch} on "
                  f"{self.num_replicas} replica(s) ({type(self.strategy).__name__}), "
                  f"{cfg.disc_steps} D step(s) per G step")
        while step < target:
            boundaries = [target, step + cfg.steps_per_loop]
            cadences = [cfg.log_every, cfg.save_every, cfg.sv_every, cfg.sample_every]
            if self.best_fid_keeper is not None:
                cadences.append(self.hp.eval.best_fid_every)
            boundaries += [(step // every + 1) * every for every in cadences]
            n = min(boundaries) - step
            t0 = time.time()
            metrics = self.train_steps(n)
            dt = time.time() - t0
            step += n
            if not first_loop:  # the first call includes tracing and compilation
                timed_images += n * self.global_batch
                timed_seconds += dt
                ips = timed_images / max(timed_seconds, 1e-9)
            else:
                ips = n * self.global_batch / max(dt, 1e-9)
            first_loop = False
            if not all(math.isfinite(v) for v in metrics.values()):
                summaries.close()
                bad = ", ".join(f"{k}={v}" for k, v in metrics.items() if not math.isfinite(v))
                where = last_saved or "none (no checkpoint was written)"
                self._write_report(step, ips, metrics, last_saved, wall_start, error=f"non-finite loss: {bad}")
                raise NonFiniteLossError(
                    f"non-finite loss at step {step} ({bad}); last good checkpoint: {where}. Resume from it "
                    f"(rerun with the same --model_dir) with lower train.g_lr/train.d_lr, or start a new --model_dir")
            if step % cfg.log_every == 0 or step == target:
                scalars = {(f"losses/{k}" if "loss" in k or k == "ortho_reg" else f"d_output/{k}"): v
                           for k, v in metrics.items()}
                scalars.update({"lr/g": cfg.g_lr, "lr/d": cfg.d_lr, "perf/images_per_sec": ips})
                summaries.scalars(step, scalars)
                rate = (step - start_step) / max(time.time() - wall_start, 1e-9)
                eta = (target - step) / max(rate, 1e-9)
                self._log(f"step {step:>7d}/{target} ({100.0 * step / target:5.1f}%)  {ips:8.1f} img/s  "
                          f"d_loss {metrics['d_loss']:.4f} (real {metrics['d_loss_real']:.3f} fake "
                          f"{metrics['d_loss_fake']:.3f})  g_loss {metrics['g_loss']:.4f}  "
                          f"D(x) {metrics['d_real']:+.3f}  D(G(z)) {metrics['d_fake']:+.3f}  "
                          f"ETA {_format_seconds(eta)}")
            if self.chief and (step % cfg.sv_every == 0 or step == target):
                summaries.scalars(step, {f"sv/{name}/sigma{i}": float(value)
                                         for name, sv in self.singular_values().items()
                                         for i, value in enumerate(sv)})
            if step % cfg.save_every == 0 or step == target:
                saved = self.save()
                last_saved = saved or last_saved
            if self.best_fid_keeper is not None and step % self.hp.eval.best_fid_every == 0:
                # Periodic FID of EMA-G; the best checkpoint is kept apart (the paper stops early,
                # before collapse, Section 4).
                fid = self.best_fid_keeper(self)
                summaries.scalars(step, {"eval/fid": float(fid)})
            if self.chief and self.model_dir and (step % cfg.sample_every == 0 or step == target):
                grid = self.sample_grid()
                tf.io.write_file(os.path.join(self.model_dir, "samples", f"step_{step:08d}.png"),
                                 tf.io.encode_png(grid))
                summaries.image(step, "ema_samples", grid)
            summaries.flush()
        summaries.close()
        report = self._write_report(step, ips, metrics, last_saved, wall_start)
        self._log(f"done at step {step}: {ips:.1f} img/s, checkpoint {last_saved}")
        return report

    def _write_report(self, step, ips, metrics, checkpoint, wall_start, error=None) -> dict:
        report = {"step": int(step), "images_per_sec": float(ips), "g_loss": metrics.get("g_loss"),
                  "d_loss": metrics.get("d_loss"), "checkpoint": checkpoint,
                  "seconds": time.time() - wall_start, "replicas": self.num_replicas,
                  "strategy": type(self.strategy).__name__, "metrics": metrics}
        if error:
            report["error"] = error
        if self.model_dir and self.chief:
            _write_json_atomic(os.path.join(self.model_dir, "train_report.json"), report)
        return report

    def _log(self, message: str) -> None:
        if self.verbose and self.chief:
            print(f"[train] {message}", flush=True)


def prepare_model_dir(hp, model_dir: str, chief: bool = True) -> None:
    """A fresh model_dir gets hparams.yaml; an existing run must have the same hparams (UserError)."""
    path = os.path.join(model_dir, "hparams.yaml")
    if os.path.exists(path):
        check_resume_hparams(hp, path)
    if chief:
        os.makedirs(model_dir, exist_ok=True)
        save_hparams(hp, path)  # rewrites resumable keys (e.g. a longer train_steps)


def run_train(hp, flags) -> dict:
    """`--mode=train`: strategy from flags, resume if model_dir has a checkpoint, train, report."""
    return train_from_flags(hp, flags)[1]


def train_from_flags(hp, flags):
    """(trainer, report) of `--mode=train` (run_train without dropping the trainer)."""
    model_dir = getattr(flags, "model_dir", None)
    if not model_dir:
        raise UserError("--model_dir is required for --mode=train (checkpoints, logs and train_report.json go there)")
    strategy = strategy_lib.strategy_from_flags(flags)
    chief = strategy_lib.is_chief(strategy)
    prepare_model_dir(hp, model_dir, chief)
    trainer = GANTrainer(hp, strategy, model_dir)
    restored = trainer.restore()
    if restored:
        trainer._log(f"resumed from {restored} at step {int(trainer.step.numpy())}")
    if hp.eval.best_fid_every:
        if strategy_lib.is_multi_worker(strategy):
            raise UserError("eval.best_fid_every > 0 is not supported with several workers yet: set it to 0 "
                            "and run --mode=sweep on the saved checkpoints")
        from tf_biggan.evaluation.evaluate import BestFidKeeper

        trainer.best_fid_keeper = BestFidKeeper(hp, model_dir, inception_path=getattr(flags, "inception_path", None),
                                                log=trainer._log)
    from tf_biggan.data.pipeline import data_errors

    with data_errors():
        return trainer, trainer.fit()


__all__ = ["GANTrainer", "run_train", "train_from_flags", "Summaries", "NonFiniteLossError", "check_resume_hparams", "prepare_model_dir",
           "dump_hparams"]
