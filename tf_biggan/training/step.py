"""One training step of BigGAN on one replica (paper Section 3, Appendix C).

    repeat train.disc_steps times:
        repeat train.d_accumulations times, each micro-batch on its own FRESH real batch and z:
            x_fake = G(z, y_fake)                 (G in training mode: batch statistics)
            D gradients of L_D(D(d_inputs([x_real; x_fake]))) + D penalties, in ONE D call, so
            D's spectral-norm power iteration runs once per micro-batch (compare_gan also
            concatenated them)
        D update on the mean of those gradients
    repeat train.g_accumulations times: G gradients of L_G(D(d_inputs(G(z, y)))) + G penalties
        (ortho_reg, Eq. 3, beta = model.ortho_reg)
    G update on the mean of those gradients
    post-step hooks (cross-replica context), then the EMA of G's weights (ema.py)

Gradient accumulation (not in the paper, whose batch of 2,048 ran on a TPU pod; BigGAN-PyTorch's
--num_D_accumulations / --num_G_accumulations, train_fns.py): an update of effective batch
batch_size x k from k micro-batches of batch_size. Each micro-batch's loss (and penalties) is
divided by k, so the summed gradients are their mean. Each micro-batch starts once the previous
one's gradients are summed (a control-dependency barrier, as between D steps), so one micro-batch's
activations are alive at a time. The optimiser, which all-reduces, runs once per update. BatchNorm
statistics are those of each micro-batch, as in BigGAN-PyTorch (not those of the effective batch).

How a D update runs (`update_ways`, decided once when the step is built; every way computes the
same update: tests/test_training_step.py, tests/test_accumulation.py):

    D update                          | OneDeviceStrategy, the default   | any other: MirroredStrategy (on
                                      | strategy (`runs_in_caller_graph`)| one device or several), MultiWor-
                                      |                                  | kerMirroredStrategy, TPUStrategy
    ----------------------------------+----------------------------------+--------------------------------
    no D part, d_accumulations = 1    | SHARED if disc_steps > 1,        | INLINE
                                      | else INLINE                      |
    no D part, d_accumulations > 1    | CALLS, unless train.jit_compile  | INLINE
                                      | or a G penalty beside ortho_reg  |
                                      | (then INLINE)                    |
    a D part (d_inputs, d_extra,      | INLINE                           | INLINE
    d_penalties, d_dropout_key)       |                                  |

  INLINE  each D step and micro-batch is its own copy of the update in the step's graph.
  SHARED  the D steps call one traced `d_update`; the runtime inlines the calls (fewer ops to trace).
  CALLS   each micro-batch calls one traced gradient function per network, marked `_noinline`: the
          graph holds one micro-batch per network, not k, and each call ends before the next starts.

G's micro-batches are CALLS under the same conditions (g_accumulations > 1), else INLINE. A D part
forces INLINE because parts read the substep or micro-batch as a Python number (their draws are keyed
by it); MirroredStrategy runs each replica in a thread of its own and refuses a merge_call (the
optimiser's all-reduce, cross-replica BatchNorm) from a nested function
(tensorflow/python/distribute/mirrored_run.py, _MirroredReplicaContext._merge_call); TPUStrategy is
not tried with shared traces; under train.jit_compile XLA compiles the whole update as one program.

Extension points (so augmentation, stability and speed plug in without editing `replica_step`),
handed to the step's constructor in ONE `StepParts` list that the trainer assembles (training/trainer.py:
augmentation's parts, then the stability knobs', then the caller's), so the step's parts are visible in
one place:
- `d_inputs(images, step, substep, micro=0)`: a differentiable function applied to EVERY image D
  sees, real and fake, in D and G steps (augmentation). Default: the identity. With accumulation
  (k > 1 for that update) it, `d_extra`, `d_dropout_key` and `latents` are also passed `micro=`
  (0..k-1, a Python int), and penalty contexts carry `micro`: parts that draw random numbers fold it
  into their keys (`micro_key`), so each micro-batch gets its own draws and micro-batch 0 those of k = 1.
- `d_penalties` / `g_penalties`: lists of `PenaltyTerm(name, fn)`; `fn(ctx)` is called inside the
  step's GradientTape with a `DContext` / `GContext` and returns this replica's share of a loss
  (already divided as the all-reduce needs: a per-example mean over the GLOBAL batch, or a global
  quantity divided by the replica count). It is added to the loss and logged as metric `name`.
- `latents`: the sampler of (z, y) for a (step, substep[, micro]); default `LatentSampler` (seeds.py
  streams train_z / train_y). Replace it to draw training latents differently (Appendix E).
- `post_step`: callables `fn(step)` run in cross-replica context after each step, before the EMA
  (e.g. weight clamps).
- `d_extra(step, substep)`: None or (images, labels) that D also scores in that D step's call,
  outside the loss (ADA's held-out reals for r_v); their outputs are `DContext.extra_logits`.
- `d_dropout_key(step, substep)`: the int64 [2] key of D's dropout masks in that D call (Appendix I),
  passed to D's training calls as `dropout_seed`.
- `d_loss_fn`, `g_opt`, `d_opt`: replace the loss of D and the optimisers (stability knobs).
The constructor also takes `jit_compile` (train.jit_compile: each replica's update XLA-compiled, its
latents drawn outside XLA) and `before_first_run`, called once after the first trace and graph
optimisation and before the first step runs (the trainer's deferred orthogonal draws finish there).

Distribution. Each replica's loss is its examples' sum divided by the GLOBAL batch (losses.py) and
global penalties are divided by the replica count, so the all-reduced gradient of N replicas equals
one device's gradient for the same global batch; G's BatchNorm moments are cross-replica. Latents
are drawn for the whole global batch from a stateless key (seed, step, substep) and each replica
takes its slice: the trajectory does not depend on the number of replicas, and the step counter is
the RNG state (compare_gan used stateless per-step RNG on TPU because TPUs ignore op seeds).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional

import tensorflow as tf

from tf_biggan import seeds
from tf_biggan.layers.ortho_reg import ortho_reg
from tf_biggan.host import grappler
from tf_biggan.training.losses import D_LOSSES, G_LOSSES

BASE_METRICS = ("d_loss", "d_loss_real", "d_loss_fake", "g_loss", "d_real", "d_fake")


def micro_key(key, micro: int = 0):
    """The stateless key of micro-batch `micro` (a Python int) of an update keyed `key`: `key` itself for
    micro-batch 0 (so k = 1 draws what a run without accumulation draws), else `key` folded with it."""
    return key if not micro else tf.random.experimental.stateless_fold_in(key, micro)


def _micro(k: int, m: int) -> dict:
    """The micro-batch keyword of a hook call: passed only when accumulating (hooks written for k = 1
    keep working)."""
    return {"micro": m} if k > 1 else {}


def _dense(grad):
    """A gradient as a dense tensor (an embedding's IndexedSlices cannot be summed as they are)."""
    return tf.convert_to_tensor(grad) if isinstance(grad, tf.IndexedSlices) else grad


class LatentSampler:
    """(z, y) of this replica: its slice of a global batch drawn from (seed, step, substep).

    z ~ N(0, I), y uniform over the classes (the paper's training distribution), stateless from the
    named streams train_z / train_y (tf_biggan.seeds) with counter step * (disc_steps + 1) + substep,
    folded with the micro-batch index under accumulation (micro_key).
    """

    def __init__(self, dim_z: int, num_classes: int, global_batch: int, num_replicas: int, disc_steps: int,
                 seed: int):
        self.dim_z, self.num_classes = dim_z, num_classes
        self.global_batch, self.local_batch = global_batch, global_batch // num_replicas
        self.disc_steps, self.seed = disc_steps, seed

    def keys(self, step, substep: int, micro: int = 0):
        """The stateless keys (z's, y's) of one D or G update."""
        counter = tf.cast(step, tf.int64) * (self.disc_steps + 1) + substep
        return (micro_key(seeds.key("train_z", self.seed, counter), micro),
                micro_key(seeds.key("train_y", self.seed, counter), micro))

    def global_latents(self, step, substep: int, micro: int = 0):
        z_key, y_key = self.keys(step, substep, micro)
        z = tf.random.stateless_normal((self.global_batch, self.dim_z), seed=z_key)
        y = tf.random.stateless_uniform((self.global_batch,), seed=y_key, maxval=self.num_classes, dtype=tf.int32)
        return z, y

    def __call__(self, step, substep: int, micro: int = 0):
        z, y = self.global_latents(step, substep, micro)
        ctx = tf.distribute.get_replica_context()
        replica = ctx.replica_id_in_sync_group if ctx is not None else 0
        start = tf.cast(replica, tf.int32) * self.local_batch
        return z[start:start + self.local_batch], y[start:start + self.local_batch]


@dataclasses.dataclass
class DContext:
    """What a D penalty sees (inside the D step's tape): D inputs after `d_inputs`, D's outputs."""

    step: tf.Tensor
    substep: int
    x_real: tf.Tensor
    y_real: tf.Tensor
    x_fake: tf.Tensor
    y_fake: tf.Tensor
    real_logits: tf.Tensor
    fake_logits: tf.Tensor
    global_batch: int
    num_replicas: int
    extra_logits: Optional[tf.Tensor] = None  # D's outputs on d_extra's images, if any
    micro: int = 0  # the micro-batch of the update (gradient accumulation)


@dataclasses.dataclass
class GContext:
    """What a G penalty sees (inside the G step's tape)."""

    step: tf.Tensor
    z: tf.Tensor
    y: tf.Tensor
    x_fake: tf.Tensor
    fake_logits: tf.Tensor
    global_batch: int
    num_replicas: int
    micro: int = 0  # the micro-batch of the update (gradient accumulation)


@dataclasses.dataclass
class PenaltyTerm:
    """A loss term added to D's or G's loss and logged as metric `name` (see module docstring)."""

    name: str
    fn: Callable


def ortho_reg_term(generator, beta: float) -> PenaltyTerm:
    """beta * ||W^T W (1 - I)||_F^2 over G's kernels (Eq. 3), divided by the replica count: every
    replica computes the same global value and the all-reduce sums N copies of its gradient."""
    kernels = generator.ortho_reg_kernels()
    return PenaltyTerm("ortho_reg", lambda ctx: ortho_reg(kernels, beta) / ctx.num_replicas)


def _done(grads) -> list:
    """Tensors that exist once every gradient in `grads` is computed (a control-dependency barrier)."""
    return [g.values if isinstance(g, tf.IndexedSlices) else g for g in grads if g is not None]


def _identity_inputs(images, step, substep: int, micro: int = 0):
    """The default d_inputs: every image D sees, unchanged."""
    del step, substep, micro
    return images


def _chain(functions: List[Callable]) -> Callable:
    """d_inputs applying `functions` in order (each images -> images)."""
    if not functions:
        return _identity_inputs

    def d_inputs(images, step, substep: int, micro: int = 0):
        for fn in functions:
            images = fn(images, step, substep, micro=micro)
        return images
    return d_inputs


@dataclasses.dataclass
class StepParts:
    """What a run adds to the step (module docstring, "Extension points"), in one explicit list.

    `d_inputs` are applied in order to every image batch D sees; penalties and post-step hooks run
    in list order (and are logged in it); `latents`, `d_loss_fn`, `d_extra`, `d_dropout_key` and the
    optimiser wrappers replace the defaults when set. `then` joins the parts of two features."""

    latents: Optional["LatentSampler"] = None
    d_loss_fn: Optional[Callable] = None
    d_inputs: List[Callable] = dataclasses.field(default_factory=list)
    d_extra: Optional[Callable] = None
    d_dropout_key: Optional[Callable] = None
    d_penalties: List["PenaltyTerm"] = dataclasses.field(default_factory=list)
    g_penalties: List["PenaltyTerm"] = dataclasses.field(default_factory=list)
    post_step: List[Callable] = dataclasses.field(default_factory=list)
    g_opt: Optional[object] = None
    d_opt: Optional[object] = None

    def then(self, other: "StepParts") -> "StepParts":
        """These parts followed by `other`'s; a single part set by both is an error."""
        joined = {}
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, list):
                joined[f.name] = mine + theirs
            elif mine is not None and theirs is not None:
                raise ValueError(f"StepParts.{f.name} is set by two features")
            else:
                joined[f.name] = mine if mine is not None else theirs
        return StepParts(**joined)

    def acts_in_d(self) -> bool:
        """Whether a part acts inside D's passes (module docstring's table: the update is then INLINE)."""
        return bool(self.d_inputs or self.d_penalties) or self.d_extra is not None or self.d_dropout_key is not None


# How an update is traced (module docstring's table).
INLINE, SHARED, CALLS = "inline", "shared", "calls"


@dataclasses.dataclass(frozen=True)
class UpdateWays:
    """How the D and the G update of a step run: INLINE, SHARED (D only) or CALLS."""

    d: str
    g: str


def runs_in_caller_graph(strategy) -> bool:
    """Whether `strategy.run` runs the replica step in the caller's thread and graph, so the
    optimiser's merge_call may sit in a nested traced function: OneDeviceStrategy and the default
    strategy (module docstring's table)."""
    if isinstance(strategy, tf.distribute.OneDeviceStrategy):
        return True
    # The default strategy is the one in force where no other is (has_strategy() is False there).
    return not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy()


def update_ways(cfg, parts: StepParts, caller_graph: bool, jit_compile: bool) -> UpdateWays:
    """The module docstring's table for train config `cfg`, the step's `parts`, whether the strategy
    `runs_in_caller_graph` and train.jit_compile."""
    plain = caller_graph and not parts.acts_in_d()
    kd, kg = cfg.d_accumulations, cfg.g_accumulations
    # Penalties may read the micro-batch as a Python number: only ortho_reg (always there) calls a trace.
    calls = plain and max(kd, kg) > 1 and not jit_compile and not parts.g_penalties
    if kd > 1:
        d = CALLS if calls else INLINE
    else:
        d = SHARED if plain and cfg.disc_steps > 1 else INLINE
    return UpdateWays(d=d, g=CALLS if calls and kg > 1 else INLINE)


class TrainStep:
    """The per-replica step of G, D, their optimisers and the EMA (module docstring)."""

    def __init__(self, hp, strategy, g, d, g_opt, d_opt, ema, step_var: tf.Variable,
                 parts: Optional[StepParts] = None, jit_compile: bool = False,
                 before_first_run: Optional[Callable[[], None]] = None):
        cfg = hp.train
        self.hp, self.strategy = hp, strategy
        parts = parts or StepParts()
        self.g, self.d, self.ema = g, d, ema
        self.g_opt, self.d_opt = parts.g_opt or g_opt, parts.d_opt or d_opt
        self.step_var = step_var
        self.disc_steps = cfg.disc_steps
        self.d_accumulations, self.g_accumulations = cfg.d_accumulations, cfg.g_accumulations
        self.num_replicas = strategy.num_replicas_in_sync
        self.global_batch = cfg.batch_size
        self.local_batch = self.global_batch // self.num_replicas
        self.d_loss_fn, self.g_loss_fn = parts.d_loss_fn or D_LOSSES[cfg.loss], G_LOSSES[cfg.loss]
        self.latents = parts.latents or LatentSampler(hp.model.dim_z, hp.data.num_classes, self.global_batch,
                                                      self.num_replicas, cfg.disc_steps, cfg.seed)
        self.d_inputs: Callable = _chain(parts.d_inputs)
        self.d_penalties: List[PenaltyTerm] = list(parts.d_penalties)
        # The ortho metric is logged even at beta = 0 (a constant 0), so every run has the same metrics.
        self.g_penalties: List[PenaltyTerm] = [ortho_reg_term(g, hp.model.ortho_reg)] + list(parts.g_penalties)
        self.post_step: List[Callable] = list(parts.post_step)
        self.d_extra: Optional[Callable] = parts.d_extra
        self.d_dropout_key: Optional[Callable] = parts.d_dropout_key
        self.jit_compile = bool(jit_compile)
        self.ways = update_ways(cfg, parts, runs_in_caller_graph(strategy), self.jit_compile)
        self._before_first_run = before_first_run
        self._shared_d_update = (tf.function(self.d_update, autograph=False) if self.ways.d == SHARED else None)
        self._micro_fns = self._micro_functions() if CALLS in (self.ways.d, self.ways.g) else None
        self.compile()

    @property
    def metric_names(self) -> tuple:
        return BASE_METRICS + tuple(p.name for p in self.d_penalties + self.g_penalties)

    # ------------------------------------------------------------------ the paper's step
    def replica_step(self, real_batches, step) -> Dict[str, tf.Tensor]:
        """`disc_steps` D updates, one G update on this replica; each metric is this replica's share.
        `real_batches`: disc_steps x d_accumulations batches, D update s's micro-batch m at s * k + m."""
        # The latents are drawn outside the update, which train.jit_compile compiles with XLA: XLA's
        # float stateless draws are other numbers than TF's for the same key (tests/test_xla.py),
        # so drawing them here keeps the trajectory of a jit-compiled run the same.
        kd, kg = self.d_accumulations, self.g_accumulations
        latents = [[self.latents(step, s, **_micro(kd, m)) for m in range(kd)] for s in range(self.disc_steps)]
        latents.append([self.latents(step, self.disc_steps, **_micro(kg, m)) for m in range(kg)])
        return self._update_fn(real_batches, step, latents)

    def replica_update(self, real_batches, step, latents) -> Dict[str, tf.Tensor]:
        """The updates of `replica_step` given this replica's latents: for each D update, then the G
        update, a list [(z, y)] of its micro-batches' (one without accumulation)."""
        kd, kg = self.d_accumulations, self.g_accumulations
        # Each computation (a D micro-batch or step, then the G ones) starts once the previous one's
        # backward is done: otherwise the graph orders only G's computations among themselves (they
        # share G's variables), and the executor may hold two computations' activations at once.
        barrier = []
        metrics = {}
        for s in range(self.disc_steps):
            micro_batches = real_batches[s * kd:(s + 1) * kd]
            if kd == 1:
                (x_real, y_real), (z, y_fake) = micro_batches[0], latents[s][0]
                with tf.control_dependencies(barrier):
                    if self.ways.d == SHARED:
                        barrier, metrics = self._shared_d_update(x_real, y_real, z, y_fake, step, tf.constant(s))
                    else:
                        barrier, metrics = self.d_update(x_real, y_real, z, y_fake, step, s)
                continue

            def d_pass(m, s=s, micro_batches=micro_batches):
                (x_real, y_real), (z, y_fake) = micro_batches[m], latents[s][m]
                if self.ways.d == CALLS:
                    return self._micro_fns[0](x_real, y_real, z, y_fake, step, tf.constant(s))
                return self.d_gradients(x_real, y_real, z, y_fake, step, s, micro=m, accumulations=kd)
            grads, metrics = self._accumulate(d_pass, kd, barrier)
            self.d_opt.apply_gradients(zip(grads, self.d.trainable_variables))
            barrier = _done(grads)

        if kg == 1:
            z, y = latents[self.disc_steps][0]
            with tf.control_dependencies(barrier):
                grads, g_metrics = self.g_gradients(z, y, step)
        else:
            def g_pass(m):
                z, y = latents[self.disc_steps][m]
                if self.ways.g == CALLS:
                    return self._micro_fns[1](z, y, step)
                return self.g_gradients(z, y, step, micro=m, accumulations=kg)
            grads, g_metrics = self._accumulate(g_pass, kg, barrier)
        self.g_opt.apply_gradients(zip(grads, self.g.trainable_variables))
        metrics.update(g_metrics)
        return {k: tf.cast(v, tf.float32) for k, v in metrics.items()}

    def _micro_functions(self) -> tuple:
        """D's and G's micro-batch gradients as two traced functions that the runtime runs as calls,
        not inlined (`_noinline`; CALLS in the module docstring's table). A call starts once the
        barrier before it is done and ends with its gradients."""
        def d_micro(x_real, y_real, z, y_fake, step, k):
            return self.d_gradients(x_real, y_real, z, y_fake, step, k, accumulations=self.d_accumulations)

        def g_micro(z, y, step):
            return self.g_gradients(z, y, step, accumulations=self.g_accumulations)

        call = dict(autograph=False, experimental_attributes={"_noinline": True})
        return tf.function(d_micro, **call), tf.function(g_micro, **call)

    @staticmethod
    def _accumulate(pass_fn, k: int, barrier):
        """(sum of the gradients, mean of the metrics) of pass_fn(m) -> (gradients, metrics) over the
        k micro-batches m; each starts once the sum of the previous ones is done."""
        total, sums = None, None
        for m in range(k):
            with tf.control_dependencies(barrier):
                grads, metrics = pass_fn(m)
            grads = [None if g is None else _dense(g) for g in grads]
            total = grads if total is None else [a if g is None else g if a is None else a + g
                                                 for a, g in zip(total, grads)]
            barrier = _done(total)
            metrics = {n: tf.cast(v, tf.float32) for n, v in metrics.items()}
            sums = metrics if sums is None else {n: sums[n] + v for n, v in metrics.items()}
        return total, {n: v / k for n, v in sums.items()}

    def d_update(self, x_real, y_real, z, y_fake, step, k):
        """One D step (substep k) on this replica, without accumulation: (its gradients, as a
        barrier list; D's metrics)."""
        grads, metrics = self.d_gradients(x_real, y_real, z, y_fake, step, k)
        self.d_opt.apply_gradients(zip(grads, self.d.trainable_variables))
        return _done(grads), metrics

    def d_call(self, images, labels, step, substep, hook: dict):
        """D's training call on one batch of a D or G pass; with a `d_dropout_key` part, D's dropout
        masks are drawn from that part's key for (step, substep[, micro])."""
        if self.d_dropout_key is None:
            return self.d((images, labels), training=True)
        return self.d((images, labels), training=True, dropout_seed=self.d_dropout_key(step, substep, **hook))

    def d_gradients(self, x_real, y_real, z, y_fake, step, k, micro: int = 0, accumulations: int = 1):
        """D's gradients of one micro-batch (substep k, micro-batch `micro` of `accumulations`) on this
        replica, the loss divided by `accumulations`; (gradients, D's metrics, undivided)."""
        gb = self.global_batch
        x_fake = self.g((z, y_fake), training=True)
        x_real, y_real = tf.cast(x_real, x_fake.dtype), tf.cast(y_real, tf.int32)
        hook = _micro(accumulations, micro)
        extra = self.d_extra(step, k, **hook) if self.d_extra is not None else None
        with tf.GradientTape() as tape:
            images = self.d_inputs(tf.concat([x_real, x_fake], 0), step, k, **hook)
            d_images, d_labels = images, tf.concat([y_real, y_fake], 0)
            if extra is not None:
                d_images = tf.concat([images, tf.cast(extra[0], images.dtype)], 0)
                d_labels = tf.concat([d_labels, tf.cast(extra[1], tf.int32)], 0)
            logits = self.d_call(d_images, d_labels, step, k, hook)
            lb = self.local_batch
            real_logits, fake_logits = logits[:lb], logits[lb:2 * lb]
            d_loss, d_real_part, d_fake_part = self.d_loss_fn(real_logits, fake_logits, gb)
            ctx = DContext(step, k, images[:lb], y_real, images[lb:], y_fake, real_logits, fake_logits, gb,
                           self.num_replicas, extra_logits=logits[2 * lb:] if extra is not None else None,
                           micro=micro)
            penalties = {p.name: p.fn(ctx) for p in self.d_penalties}
            d_total = d_loss + sum(penalties.values())
            if accumulations > 1:
                d_total = d_total / accumulations
        grads = tape.gradient(d_total, self.d.trainable_variables)
        share = lambda v: tf.reduce_sum(tf.cast(v, tf.float32)) / gb  # noqa: E731
        return grads, dict(d_loss=d_loss, d_loss_real=d_real_part, d_loss_fake=d_fake_part,
                           d_real=share(real_logits), d_fake=share(fake_logits), **penalties)

    def g_gradients(self, z, y, step, micro: int = 0, accumulations: int = 1):
        """G's gradients of one micro-batch (`micro` of `accumulations`) on this replica, the loss
        divided by `accumulations`; (gradients, G's metrics, undivided)."""
        gb = self.global_batch
        hook = _micro(accumulations, micro)
        with tf.GradientTape() as tape:
            x_fake = self.g((z, y), training=True)
            images = self.d_inputs(x_fake, step, self.disc_steps, **hook)
            fake_logits = self.d_call(images, y, step, self.disc_steps, hook)
            g_loss = self.g_loss_fn(fake_logits, gb)
            ctx = GContext(step, z, y, x_fake, fake_logits, gb, self.num_replicas, micro=micro)
            penalties = {p.name: p.fn(ctx) for p in self.g_penalties}
            g_total = g_loss + sum(penalties.values())
            if accumulations > 1:
                g_total = g_total / accumulations
        return tape.gradient(g_total, self.g.trainable_variables), dict(g_loss=g_loss, **penalties)

    # ------------------------------------------------------------------ several steps in one graph
    def _steps(self, iterator, num_steps):
        """`num_steps` steps in one graph (train.steps_per_loop); the last step's metrics, summed
        over replicas (each replica returns its share)."""
        names = self.metric_names

        def body(i, metrics):
            batches = [next(iterator) for _ in range(self.disc_steps * self.d_accumulations)]
            step = tf.convert_to_tensor(self.step_var)
            per_replica = self.strategy.run(self.replica_step, args=(batches, step))
            metrics = {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica[k], axis=None)
                       for k in names}
            self.step_var.assign_add(1)
            for hook in self.post_step:
                hook(self.step_var)
            self.ema.update(self.step_var)
            return i + 1, metrics

        start = (tf.constant(0, num_steps.dtype), {k: tf.constant(0.0) for k in names})
        return tf.while_loop(lambda i, _: i < num_steps, body, start)[1]

    def compile(self) -> Callable:
        """Builds the tf.function running `num_steps` steps (the constructor calls it).

        With jit_compile (train.jit_compile) each replica's update is compiled with XLA; the loop
        around it stays a graph: it reads the input iterator, which XLA cannot compile.
        """
        grappler.configure()  # before the first call instantiates the graph
        # autograph=False: the step is plain graph code (its one loop is an explicit while_loop), and
        # converting the whole call tree (models, losses, parts) would only cost tracing time.
        self._update_fn = (tf.function(self.replica_update, jit_compile=True, autograph=False) if self.jit_compile
                           else self.replica_update)
        self._loop_fn = tf.function(self._steps, autograph=False)
        return self._loop_fn

    def run(self, iterator, num_steps: int) -> Dict[str, float]:
        """Runs `num_steps` steps (one tf.function call); the last step's metrics as floats."""
        if self._loop_fn is None:
            self.compile()
        num_steps = tf.constant(num_steps, tf.int64)
        if self._before_first_run is not None:
            # Trace, then a call of 0 steps: the runtime optimises (Grappler) and instantiates the
            # graph, which reads no variable and no input while the loop runs no iteration; the
            # callback and the real call follow, reusing both.
            self._loop_fn(iterator, tf.constant(0, tf.int64))
            callback, self._before_first_run = self._before_first_run, None
            callback()
        metrics = self._loop_fn(iterator, num_steps)
        return {k: float(v.numpy()) for k, v in metrics.items()}
