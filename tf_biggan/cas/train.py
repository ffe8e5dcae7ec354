"""Train a CAS classifier and score it: `run_cas(hp, model_dir, train_data, eval_data) -> report`.

Classification Accuracy Score (Ravuri & Vinyals 2019, Appendix A): a classifier trained on the
--train_data sources (synthetic only, real only, or a real + synthetic mixture, Azizi et al. 2023
Table A.3), then top-1 / top-5 on the REAL --eval_data with a single central crop.

The step: softmax cross-entropy (label smoothing cas.label_smoothing, 0 in the protocol) summed
over the replica's images / GLOBAL batch, plus cas.weight_decay x sum ||w||^2 / 2 over conv and
dense kernels (tf.nn.l2_loss, as the reference resnet_main.py; not BN, not biases:
models/classifiers.decayed_variables) / replicas, so the all-reduced gradient equals one device's.
SGD with Nesterov momentum on the schedule of schedule.py.

Checkpoints: tf.train.CheckpointManager in MODEL_DIR/checkpoints (model variables by path, the
optimizer with its step) every cas.save_every steps and at the end; a rerun restores the latest
and trains to the same last step on the same batches (the input is replayed from the step: input.py),
so it ends with the weights of an uninterrupted run. The report,
MODEL_DIR/cas_report.json, is written atomically last; a rerun whose report is complete for the
same sources and protocol returns it without training; one with other sources or another protocol
is refused (MODEL_DIR/cas_plan.json records them). TensorBoard scalars (and scalars.jsonl) in
MODEL_DIR/train. Training runs under the GAN's loop (training/loop.py): the same stops, images/s
and non-finite stop, with two actions, log and save; SIGTERM / SIGINT stop it at a step boundary
after saving that step (training/preemption.py), and the rerun goes on from there to the same weights.
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from tf_biggan import atomic, rerun, seeds
from tf_biggan.cas import input as cas_input
from tf_biggan.cas.accuracy import AccuracyCounter
from tf_biggan.cas.schedule import learning_rate_schedule
from tf_biggan.cas.sources import parse_sources, select_mixture
from tf_biggan.config import save_hparams
from tf_biggan.errors import UserError
from tf_biggan.models.classifiers import build_classifier, decayed_variables
from tf_biggan.progress import Progress
from tf_biggan.requests import CasRequest
from tf_biggan.host import grappler
from tf_biggan.training import loop, preemption
from tf_biggan.training import strategy as strategy_lib
from tf_biggan.models.variables_checkpoint import variables_checkpoint
from tf_biggan.training.checkpoints import WorkerCheckpointManager
from tf_biggan.training.summaries import Summaries

REPORT = "cas_report.json"
PLAN = "cas_plan.json"  # the sources and protocol of the run in a model_dir


class CasClassifier:
    """The classifier, its optimizer and the distributed train step (module docstring)."""

    def __init__(self, hp, strategy: tf.distribute.Strategy, steps_per_epoch: int):
        self.cas = cas = hp.cas
        self.num_classes = hp.data.num_classes
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        if cas.batch_size % self.replicas:
            raise UserError(f"cas.batch_size={cas.batch_size} is not divisible by the {self.replicas} replicas")
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(cas.dtype)
        try:
            with strategy.scope():
                self.model = build_classifier(cas, self.num_classes)
                self.schedule = learning_rate_schedule(cas, steps_per_epoch)
                self.optimizer = keras.optimizers.SGD(learning_rate=self.schedule, momentum=cas.momentum,
                                                      nesterov=cas.nesterov)
                self.optimizer.build(self.model.trainable_variables)  # slots mirrored, before strategy.run
        finally:
            keras.config.set_dtype_policy(previous)
        self.decayed = decayed_variables(self.model)
        self.checkpoint = tf.train.Checkpoint(model=variables_checkpoint(self.model), optimizer=self.optimizer)

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def losses(self, images, labels):
        """(cross-entropy share, weight-decay share) of this replica; their sum is what is differentiated."""
        logits = tf.cast(self.model(images, training=True), tf.float32)
        onehot = tf.one_hot(labels, self.num_classes)
        if self.cas.label_smoothing:
            onehot = onehot * (1 - self.cas.label_smoothing) + self.cas.label_smoothing / self.num_classes
        ce = tf.nn.softmax_cross_entropy_with_logits(onehot, logits)
        ce = tf.reduce_sum(ce) / self.cas.batch_size
        wd = self.cas.weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(v, tf.float32)) for v in self.decayed])
        return ce, wd / self.replicas

    def replica_step(self, batch):
        images, labels = batch
        with tf.GradientTape() as tape:
            ce, wd = self.losses(images, labels)
            total = ce + wd
        variables = self.model.trainable_variables
        grads = tape.gradient(total, variables)
        self.optimizer.apply_gradients(zip(grads, variables))
        return {"loss/cross_entropy": ce, "loss/weight_decay": wd}

    @tf.function
    def train_steps(self, iterator, n):
        metrics = {"loss/cross_entropy": 0.0, "loss/weight_decay": 0.0}
        for _ in tf.range(n):
            out = self.strategy.run(self.replica_step, args=(next(iterator),))
            metrics = {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}
        return metrics

    @tf.function
    def predict(self, images):
        return tf.cast(self.model(images, training=False), tf.float32)

    @tf.function
    def _distributed_predict(self, images):
        return self.strategy.run(self.predict.python_function, args=(images,))

    def evaluate(self, dataset) -> Dict:
        """Top-1 / top-5 / per-class over one sweep of `dataset` (batches padded with label -1).

        The batches are split over the replicas (TPU, mirrored); under MultiWorkerMirroredStrategy
        each worker scores the whole set on its host instead (the report is the chief's).
        """
        counter = AccuracyCounter(self.num_classes)
        local = lambda x: np.concatenate([t.numpy() for t in self.strategy.experimental_local_results(x)])  # noqa: E731
        if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            batches = ((self.predict(images).numpy(), labels.numpy()) for images, labels in dataset)
        else:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
            dist = self.strategy.experimental_distribute_dataset(dataset.with_options(options))
            batches = ((local(self._distributed_predict(images)), local(labels)) for images, labels in dist)
        for logits, labels in batches:
            keep = labels >= 0
            counter.update(logits[keep], labels[keep])
        return counter.result()

def _report_key(hp, train_data: str, eval_data: str) -> Dict:
    return {"train_data": train_data, "eval_data": eval_data, "cas": hp.to_dict()["cas"],
            "num_classes": hp.data.num_classes}


def read_report(model_dir: str) -> Optional[Dict]:
    path = os.path.join(model_dir, REPORT)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _check_plan(model_dir: str, key: Dict, chief: bool) -> None:
    """A model_dir holds one CAS run: resuming under other sources or another protocol would mix them."""
    plan_path = os.path.join(model_dir, PLAN)
    rerun.pin(plan_path, key, write=chief, refusal=lambda diffs: UserError(
        f"--model_dir={model_dir} holds a CAS run with other {', '.join(k for k, _, _ in diffs)} (see {plan_path}); "
        f"rerun with the same flags and protocol to resume it, or give a new --model_dir"))


def _checkpoint_manager(clf: CasClassifier, model_dir: str, strategy,
                        chief: bool) -> Tuple[WorkerCheckpointManager, Optional[str]]:
    """MODEL_DIR/checkpoints and its latest checkpoint, restored (on every worker: only the chief's
    copy is kept, WorkerCheckpointManager)."""
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    manager = WorkerCheckpointManager(clf.checkpoint, ckpt_dir, clf.cas.keep_checkpoints, chief,
                                      strategy_lib.worker_id(strategy), temp_root=model_dir)
    latest = tf.train.latest_checkpoint(ckpt_dir)
    if latest:
        clf.checkpoint.restore(latest).assert_existing_objects_matched()
    return manager, latest


def _train(clf: CasClassifier, manager: WorkerCheckpointManager, latest: Optional[str], dataset,
           total_steps: int, steps_per_epoch: int, summaries: Summaries, progress: Progress) -> loop.LoopState:
    """Trains to `total_steps` under the GAN's loop (training/loop.py): the same stops, images/s and
    non-finite stop; actions: log (TensorBoard + a progress line) and save."""
    cas = clf.cas
    start = clf.step
    state = loop.LoopState(start, total_steps, start, {}, 0.0, latest, time.time())
    iterator = iter(dataset)

    def train_steps(n: int) -> Dict[str, float]:
        return {k: float(v) for k, v in clf.train_steps(iterator, tf.constant(n)).items()}

    def log(state: loop.LoopState) -> None:
        m, lr = state.metrics, float(clf.schedule(state.step))
        summaries.scalars(state.step, {**m, "learning_rate": lr, "perf/images_per_sec": state.images_per_sec})
        summaries.flush()
        progress.update(state.step, state.images_per_sec,
                        f"epoch {state.step / steps_per_epoch:6.2f}  loss {m['loss/cross_entropy']:.4f} + wd "
                        f"{m['loss/weight_decay']:.4f}  lr {lr:.4g}")

    def save(state: loop.LoopState) -> None:
        state.saved(manager.save(state.step))

    def non_finite(state: loop.LoopState, bad: Dict[str, float]) -> Exception:
        return loop.NonFiniteLossError(
            f"non-finite loss at step {state.step} ({state.metrics}); lower cas.learning_rate and rerun with a "
            f"new --model_dir (last checkpoint: {state.last_checkpoint})")

    actions = [loop.Action("log", cas.log_every, log), loop.Action("save", cas.save_every, save, at_stop=True)]
    try:
        with preemption.graceful("CAS training"):
            loop.run_loop(state, train_steps, actions, cas.steps_per_loop, cas.batch_size, non_finite,
                          stop=preemption.StepBoundary(clf.strategy))
            if state.stopped_by:  # a signal: this step is saved (training/preemption.py)
                raise preemption.Preempted(loop.stopped_message("CAS training", state, None),
                                           preemption.stop_exit_code(state.stopped_by))
        return state
    except tf.errors.InvalidArgumentError as exc:
        raise UserError(f"--train_data: an image could not be decoded (a damaged JPEG?): "
                        f"{(exc.message or '').splitlines()[0][:300]}") from None


def _evaluate(clf: CasClassifier, eval_sources, eval_data: str, progress: Progress) -> Dict:
    cas = clf.cas
    progress.log(f"evaluating on {eval_data} ({sum(s.count() for s in eval_sources)} images, central crop "
                 f"{cas.eval_crop_fraction:g})")
    try:
        return clf.evaluate(cas_input.eval_dataset(eval_sources, cas, clf.replicas))
    except tf.errors.InvalidArgumentError as exc:
        raise UserError(f"--eval_data: an image could not be decoded: "
                        f"{(exc.message or '').splitlines()[0][:300]}") from None


def run_cas(hp, model_dir: str, train_data: str, eval_data: str,
            strategy: Optional[tf.distribute.Strategy] = None,
            log: Optional[Callable[[str], None]] = None) -> Dict:
    """Trains (or resumes) the classifier of `hp.cas` on `train_data`, scores it on `eval_data`.

    `train_data` / `eval_data`: the flag texts (comma-separated source specs, sources.py). Returns
    the report (also MODEL_DIR/cas_report.json); a complete report for the same sources and
    protocol is returned as it is. `log`: where the progress messages go (default: `[cas]` lines).
    """
    progress = Progress("cas", sink=log)
    key = _report_key(hp, train_data, eval_data)
    existing = read_report(model_dir)
    if existing is not None and existing.get("key") == json.loads(json.dumps(key)):
        progress.log(f"{os.path.join(model_dir, REPORT)} is complete: top-1 {existing['top1']:.4f}, top-5 "
                     f"{existing['top5']:.4f} (delete it to score again)")
        return existing
    grappler.configure()  # the same graph options whether or not a GAN trained first
    strategy = strategy or tf.distribute.get_strategy()
    # tf.data's seeded shuffles combine their seed with the GLOBAL seed, which whatever ran earlier in
    # the process may have set (the main job trains a GAN first): pin it, so a run is the same
    # whether it is the first thing a process does or the last.
    keras.utils.set_random_seed(seeds.int_seed("cas_data", hp.cas.seed))
    chief = strategy_lib.is_chief(strategy)
    cas = hp.cas
    num_classes = hp.data.num_classes
    tf.io.gfile.makedirs(model_dir)
    _check_plan(model_dir, key, chief)
    if chief:
        save_hparams(hp, os.path.join(model_dir, "hparams.yaml"))
    cache = os.path.join(model_dir, "cas_index")
    train_sources = parse_sources(train_data, "--train_data", num_classes, cache)
    eval_sources = parse_sources(eval_data, "--eval_data", num_classes, cache)
    counts = select_mixture(train_sources, cas, num_classes)
    train_images = counts["real_images"] + counts["synthetic_images"]
    if train_images < cas.batch_size:
        raise UserError(f"--train_data: {train_images} training images, fewer than one batch "
                        f"(cas.batch_size={cas.batch_size})")
    steps_per_epoch = train_images // cas.batch_size  # reference: epochs x images // batch
    total_steps = cas.epochs * steps_per_epoch
    clf = CasClassifier(hp, strategy, steps_per_epoch)
    manager, latest = _checkpoint_manager(clf, model_dir, strategy, chief)
    start = clf.step
    progress.log(f"{cas.arch}{'' if cas.arch == 'resnet50' else f'-{cas.depth}'} on {train_images} images "
                 f"({counts['real_images']} real + {counts['synthetic_images']} synthetic), {num_classes} classes, "
                 f"{cas.epochs} epochs x {steps_per_epoch} steps of {cas.batch_size} on {clf.replicas} replica(s); "
                 + (f"resuming at step {start}/{total_steps}" if start else f"{total_steps} steps"))

    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: cas_input.train_dataset(train_sources, cas, cas.batch_size, start, ctx))
    summaries = Summaries(os.path.join(model_dir, "train") if chief else None)
    wall = time.time()
    try:
        state = _train(clf, manager, latest, dataset, total_steps, steps_per_epoch, summaries,
                       Progress("cas", total=total_steps, start=start, sink=log))
        scores = _evaluate(clf, eval_sources, eval_data, progress)
        report = dict(scores, key=key, train_images=train_images, real_images=counts["real_images"],
                      synthetic_images=counts["synthetic_images"], synthetic_fraction=counts["synthetic_fraction"],
                      sources=counts["sources"], epochs=cas.epochs, steps=total_steps,
                      steps_per_epoch=steps_per_epoch, images_per_sec=state.images_per_sec, replicas=clf.replicas,
                      arch=cas.arch, image_size=cas.image_size, seconds_this_run=time.time() - wall,
                      resumed_from_step=start)
        summaries.scalars(total_steps, {"cas/top1": report["top1"], "cas/top5": report["top5"]})
    finally:
        summaries.close()
    if chief:
        atomic.write_json(os.path.join(model_dir, REPORT), report)
    progress.log(f"top-1 {report['top1']:.4f}  top-5 {report['top5']:.4f} on {report['eval_images']} real images; "
                 f"wrote {os.path.join(model_dir, REPORT)}")
    return report


def run_cas_mode(hp, request: CasRequest) -> Dict:
    """`--mode=cas`: --train_data, --eval_data, --model_dir (required: main.py's REQUIRED table
    checks them) and --tpu / --cpu_replicas."""
    return run_cas(hp, request.model_dir, request.train_data, request.eval_data,
                   strategy_lib.launch_strategy(request.launch))
