"""The training loop: run the step, then the periodic actions that are due.

    while step < target:
        run n steps in one graph, n = up to the next stop (the target, steps_per_loop, or the next
            multiple of any action's cadence), so no action ever waits for a loop to finish
        stop on a non-finite loss (naming the step and the last good checkpoint)
        for action in actions: if is_time(step, action.every, target): action(state)
        on a signal (SIGTERM, SIGINT: training/preemption.py): the checkpoint action runs for this
            step (unless it just ran) and the loop returns with `state.stopped_by` set

ONE predicate, `is_time`, decides every periodic action: a multiple of its cadence, or the final
step (so a run always ends with a log line, σ values, a checkpoint, a sample grid and, when asked,
an FID). The actions (`standard_actions`), in order: log (losses, D outputs, lr, images/s), the
stability knobs' scalars, augmentation's p, σ0-σ2 (paper Section 4 / Appendix F), collapse
detection (collapse.py), save, best-FID keeping (the paper stops before collapse, Section 4.2),
sample grid. Each action gets what it needs when it is made; between graph calls it sees only the
LoopState. (big_vision's train.py and tensorflow/models orbit's actions follow the
same idea: the loop knows cadences, an action knows what to do.) `run_loop` is the loop itself,
shared by the GAN (`fit`) and the CAS classifier (tf_biggan/cas/train.py).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Callable, Dict, List, Optional

import tensorflow as tf

from tf_biggan.host import malloc
from tf_biggan.atomic import write_bytes, write_json
from tf_biggan.errors import UserError
from tf_biggan.progress import Progress
from tf_biggan.training.collapse import CollapseStop, CollapseWatch
from tf_biggan.training.monitor import sigma_scalars
from tf_biggan.training.summaries import Summaries


class NonFiniteLossError(UserError):
    """A loss became NaN/inf: the run stops; the message names the step and the last good checkpoint."""


def is_time(step: int, every: int, final_step: int) -> bool:
    """True when an action of cadence `every` (0 = never) runs after `step`: on its multiples and on
    the final step."""
    return every > 0 and (step % every == 0 or step == final_step)


def next_stop(step: int, target: int, steps_per_loop: int, cadences) -> int:
    """The step the next graph call runs to: the nearest of the target, step + steps_per_loop and
    the next multiple of every cadence."""
    stops = [target, step + steps_per_loop] + [(step // every + 1) * every for every in cadences if every > 0]
    return min(stops)


@dataclasses.dataclass
class LoopState:
    """What actions see after a graph call; it changes only through its methods (the loop advances
    it, the save action records checkpoints, a signal stops it)."""

    step: int
    target: int
    start_step: int
    metrics: Dict[str, float]
    images_per_sec: float
    last_checkpoint: Optional[str]
    wall_start: float
    stopped_by: Optional[str] = None  # the signal (or a peer's preemption) that ended the loop early

    def advance(self, steps: int, metrics: Dict[str, float], images_per_sec: float) -> None:
        """After a graph call of `steps` steps: its last step's metrics and the images/s so far."""
        self.step += steps
        self.metrics, self.images_per_sec = metrics, images_per_sec

    def saved(self, checkpoint: Optional[str]) -> None:
        """A save wrote `checkpoint` (None: this worker's save names none; the last one stays)."""
        self.last_checkpoint = checkpoint or self.last_checkpoint

    def stop_for(self, reason: Optional[str]) -> None:
        """Why the loop stops at this step (None: it goes on)."""
        self.stopped_by = reason


@dataclasses.dataclass
class Action:
    """`at_stop`: also runs when a signal stops the loop (the checkpoint action), unless it just ran."""
    name: str
    every: int
    fn: Callable[[LoopState], None]
    at_stop: bool = False


# ---------------------------------------------------------------------------------------------
# The standard actions.

def log_action(trainer, summaries: Summaries, progress: Progress) -> Action:
    cfg = trainer.hp.train

    def log(state: LoopState) -> None:
        m = state.metrics
        # Losses and penalty terms under losses/, D's mean outputs under d_output/.
        scalars = {(f"d_output/{k}" if k in ("d_real", "d_fake") else f"losses/{k}"): v for k, v in m.items()}
        scalars.update({"lr/g": cfg.g_lr, "lr/d": cfg.d_lr, "perf/images_per_sec": state.images_per_sec})
        summaries.scalars(state.step, scalars)
        progress.update(state.step, state.images_per_sec,
                        f"d_loss {m['d_loss']:.4f} (real {m['d_loss_real']:.3f} fake {m['d_loss_fake']:.3f})  "
                        f"g_loss {m['g_loss']:.4f}  D(x) {m['d_real']:+.3f}  D(G(z)) {m['d_fake']:+.3f}")
    return Action("log", cfg.log_every, log)


def stability_action(trainer, summaries: Summaries) -> Action:
    """stability/... scalars of the knobs that are on (stability.StabilityKnobs.scalars), at the log's cadence."""
    def scalars(state: LoopState) -> None:
        summaries.scalars(state.step, trainer.stability.scalars(state.step))
    return Action("stability", trainer.hp.train.log_every, scalars)


def singular_values_action(trainer, summaries: Summaries) -> Action:
    def sigma(state: LoopState) -> None:
        summaries.scalars(state.step, sigma_scalars(trainer.singular_values()))
    return Action("singular_values", trainer.hp.train.sv_every, sigma)


def collapse_action(trainer, summaries: Summaries) -> Action:
    """Collapse detection (collapse.CollapseWatch) on the σ action's cadence."""
    return Action("collapse", trainer.hp.train.sv_every, CollapseWatch(trainer, summaries))


def save_action(trainer) -> Action:
    """Every worker takes part (a distributed save); the chief's path becomes the last checkpoint."""
    def save(state: LoopState) -> None:
        state.saved(trainer.save())
    return Action("save", trainer.hp.train.save_every, save, at_stop=True)


def best_fid_action(trainer, keeper, summaries: Summaries) -> Action:
    """Adapter of tf_biggan.evaluation's BestFidKeeper: FID of EMA-G now, best checkpoint kept apart."""
    def best_fid(state: LoopState) -> None:
        summaries.scalars(state.step, {"eval/fid": float(keeper(trainer))})
    return Action("best_fid", trainer.hp.eval.best_fid_every, best_fid)


def sample_grid_action(trainer, summaries: Summaries) -> Action:
    """Runs on every worker (the grid is computed under the strategy); the chief writes it."""
    def sample(state: LoopState) -> None:
        grid = trainer.sample_grid()
        if trainer.chief:
            write_bytes(os.path.join(trainer.model_dir, "samples", f"step_{state.step:08d}.png"),
                        tf.io.encode_png(grid).numpy())
            summaries.image(state.step, "ema_samples", grid)
    return Action("sample_grid", trainer.hp.train.sample_every, sample)


def augment_action(trainer, summaries: Summaries, progress: Progress) -> Action:
    """augment/p (and ADA's r_t / r_v) to TensorBoard, and a warning each time ADA's p reaches augment.p_max."""
    state = trainer.augment
    warned = False  # at the cap at the last call: warn once per arrival

    def log_p(loop_state: LoopState) -> None:
        nonlocal warned
        summaries.scalars(loop_state.step, state.scalars())
        at_cap = state.at_cap()
        if at_cap and not warned:
            progress.log(f"WARNING: augment/p reached its cap augment.p_max={trainer.hp.augment.p_max} at step "
                         f"{loop_state.step}: D still overfits with the strongest safe augmentation. More data, "
                         "early stopping (eval.best_fid_every) or a smaller D help; p near 1 would let "
                         "augmentations leak into the samples (seed 003, Appendix C.5.1)")
        warned = at_cap
    return Action("augment", trainer.hp.train.log_every, log_p)


def standard_actions(trainer, summaries: Summaries, progress: Progress, best_fid_keeper=None) -> List[Action]:
    """log, stability scalars, augment p (when augmenting), σ (chief), collapse detection (chief, with
    stability.detect_collapse), save, best FID (if a keeper is given), sample grid (with a model_dir)."""
    actions = [log_action(trainer, summaries, progress), stability_action(trainer, summaries)]
    if trainer.augment.enabled:
        actions.append(augment_action(trainer, summaries, progress))
    if trainer.chief:
        actions.append(singular_values_action(trainer, summaries))
        if trainer.hp.stability.detect_collapse:
            actions.append(collapse_action(trainer, summaries))
    actions.append(save_action(trainer))
    if best_fid_keeper is not None:
        actions.append(best_fid_action(trainer, best_fid_keeper, summaries))
    if trainer.model_dir:
        actions.append(sample_grid_action(trainer, summaries))
    return actions


# ---------------------------------------------------------------------------------------------
# The loop.

def write_report(trainer, state: LoopState, error: Optional[str] = None) -> dict:
    """train_report.json (chief, with a model_dir): step, images/s, losses, checkpoint, strategy
    (and `stopped_by` when a signal ended the loop before its target)."""
    m = state.metrics
    report = {"step": int(state.step), "images_per_sec": float(state.images_per_sec), "g_loss": m.get("g_loss"),
              "d_loss": m.get("d_loss"), "checkpoint": state.last_checkpoint,
              "seconds": time.time() - state.wall_start, "replicas": trainer.num_replicas,
              "strategy": type(trainer.strategy).__name__, "malloc": malloc.active(), "metrics": m}
    if trainer.augment.enabled:
        report.update(trainer.augment.report())
    if error:
        report["error"] = error
    if state.stopped_by:
        report["stopped_by"] = state.stopped_by
    if trainer.model_dir and trainer.chief:
        write_json(os.path.join(trainer.model_dir, "train_report.json"), report)
    return report


def run_loop(state: LoopState, train_steps: Callable[[int], Dict[str, float]], actions: List[Action],
             steps_per_loop: int, images_per_step: int,
             non_finite: Callable[[LoopState, Dict[str, float]], Exception],
             after_call: Optional[Callable[[], None]] = None,
             stop: Optional[Callable[[Callable[[], None]], Optional[str]]] = None) -> LoopState:
    """The loop of the module docstring, for any model: `train_steps(n)` runs n steps in one graph
    call and returns the last step's metrics (floats); `non_finite(state, bad)` makes the error
    raised when a metric is NaN/inf (it may write a report first). `stop(save)`, asked after every
    graph call (preemption.StepBoundary), returns None to go on, or why the loop stops at this step
    after calling `save` (the `at_stop` actions that did not just run); the loop then returns with
    `state.stopped_by` set. Used by the GAN (`fit`) and the CAS classifier (tf_biggan/cas/train.py),
    so both stop, time and act alike."""
    timed_images, timed_seconds, first = 0, 0.0, True
    cadences = [a.every for a in actions]
    while state.step < state.target:
        n = next_stop(state.step, state.target, steps_per_loop, cadences) - state.step
        t0 = time.time()
        metrics = train_steps(n)
        dt = time.time() - t0
        if first:  # the first call includes tracing: it only stands in until a timed call exists
            state.advance(n, metrics, n * images_per_step / max(dt, 1e-9))
            first = False
        else:
            timed_images, timed_seconds = timed_images + n * images_per_step, timed_seconds + dt
            state.advance(n, metrics, timed_images / max(timed_seconds, 1e-9))
        bad = {k: v for k, v in state.metrics.items() if not math.isfinite(v)}
        if bad:
            raise non_finite(state, bad)
        due = [action for action in actions if is_time(state.step, action.every, state.target)]
        for action in due:
            action.fn(state)
        if after_call is not None:
            after_call()
        if stop is not None:
            state.stop_for(stop(lambda: [a.fn(state) for a in actions if a.at_stop and a not in due]))
            if state.stopped_by:
                break
    return state


def fit(trainer, target: int, actions: List[Action], progress: Progress, summaries: Summaries) -> dict:
    """Trains `trainer` to global step `target`, running `actions` when due; the report. A signal
    stops it at a step boundary with that step's checkpoint (preemption.py) and raises `Preempted`."""
    from tf_biggan.training import preemption

    step = int(trainer.step.numpy())
    state = LoopState(step, target, step, {}, 0.0, trainer.latest_checkpoint(), time.time())
    cfg = trainer.hp.train
    kd, kg = getattr(cfg, "d_accumulations", 1), getattr(cfg, "g_accumulations", 1)
    accumulation = f" x {kd} (D) / {kg} (G) accumulated micro-batches" if max(kd, kg) > 1 else ""
    progress.log(f"training from step {step} to {target}: global batch {trainer.global_batch}{accumulation} on "
                 f"{trainer.num_replicas} replica(s) ({type(trainer.strategy).__name__}), "
                 f"{cfg.disc_steps} D step(s) per G step")

    def non_finite(state: LoopState, bad: Dict[str, float]) -> Exception:
        text = ", ".join(f"{k}={v}" for k, v in bad.items())
        write_report(trainer, state, error=f"non-finite loss: {text}")
        where = state.last_checkpoint or "none (no checkpoint was written)"
        return NonFiniteLossError(
            f"non-finite loss at step {state.step} ({text}); last good checkpoint: {where}. Resume from it "
            f"(rerun with the same --model_dir) with lower train.g_lr/train.d_lr, or start a new --model_dir")

    # Every micro-batch counts (gradient accumulation): a step's images are G's effective batch.
    images_per_step = getattr(trainer, "images_per_step", trainer.global_batch)
    try:
        with preemption.graceful("training"):
            try:
                run_loop(state, trainer.train_steps, actions, cfg.steps_per_loop, images_per_step, non_finite,
                         after_call=summaries.flush, stop=preemption.StepBoundary(trainer.strategy))
            except CollapseStop as collapsed:
                write_report(trainer, state, error=f"collapse detected at step {collapsed.step}")
                raise
            if state.stopped_by:
                write_report(trainer, state)
                raise preemption.Preempted(stopped_message("training", state, trainer.latest_checkpoint()),
                                           preemption.stop_exit_code(state.stopped_by))
    finally:
        summaries.close()
    report = write_report(trainer, state)
    progress.log(f"done at step {state.step}: {state.images_per_sec:.1f} img/s, checkpoint {state.last_checkpoint}")
    return report


def stopped_message(what: str, state: LoopState, checkpoint: Optional[str]) -> str:
    """The one line of a loop stopped by a signal: why, where, and the checkpoint it resumes from."""
    return (f"stopped by {state.stopped_by}: {what} saved step {state.step} of {state.target} "
            f"(checkpoint {checkpoint or state.last_checkpoint}) and stopped")
