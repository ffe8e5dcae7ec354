"""Preemption: SIGTERM or SIGINT ends a loop at a step boundary, after the checkpoint of that step.

Spot and preemptible VMs (Cloud TPU VMs, GPU VMs) are stopped with a notice: Compute Engine sends
the guest an ACPI soft-off about 30 s before it takes the VM, and the guest's shutdown sends SIGTERM
to every process (cloud.google.com/compute/docs/instances/spot, "Preemption process"). A person at a
terminal presses Ctrl-C (SIGINT). Without this module both end the process at once and a rerun
resumes from the last periodic checkpoint (`train.save_every`, `cas.save_every` steps back).

What a signal does (the loops of training/loop.py, the GAN's and the CAS classifier's, and the
shard loop of synthesis/synthesize.py run inside `graceful()`; main.py runs every mode inside
`watching()`):

  inside a loop    the signal is recorded; after the graph call in progress the loop stops, the
                   checkpoint action runs for that step (unless it just ran) and `Preempted` ends the
                   process. A graph call runs up to `train.steps_per_loop` (`cas.steps_per_loop`)
                   steps and cannot be cut short, so the stop comes at most one call plus one save
                   after the signal; the checkpoint holds the step the call ended at, the step the
                   loop was at. Synthesis abandons the shard in hand between two generator batches
                   (its temporary file is removed; finished shards are complete files).
  outside a loop   (start-up, sweep, export, CAS's evaluation, ...) `Preempted` is raised at once,
                   as Ctrl-C raises KeyboardInterrupt: every file is written atomically, so nothing
                   half-written is left, and the rerun redoes the stage's unsaved work.
  a second signal  stops at once, without waiting for the step boundary.

main.py prints one line (what stopped where, the checkpoint, the command to rerun) and exits with
128 + the signal's number, what a shell reports for a process the signal killed: 143 after SIGTERM,
130 after SIGINT. A worker that stops because another worker of its job was preempted exits 143
too. 143 is also the exit code TensorFlow's handler uses on Compute Engine GPU VMs
(tensorflow/python/distribute/failure_handling/failure_handling_util.py, `_RESTARTABLE_EXIT_CODE`),
so tpu_scripts/all.sh's retry loop and a scheduler can tell "rerun me" from a failure.

Every worker saves the same step:
  * One process drives all devices (the default strategy, OneDeviceStrategy, MirroredStrategy over
    local GPUs or `--cpu_replicas`, and TPUStrategy, whose one client process drives a TPU host or a
    pod slice): the recorded signal is read at each graph-call boundary (`StepBoundary`).
  * MultiWorkerMirroredStrategy: `tf.distribute.experimental.PreemptionCheckpointHandler`, TensorFlow's
    own mechanism, agrees through the coordination service on the graph call after which every worker
    saves (the signalled worker's next one, so the stop comes one call later than with one process),
    then calls our save (its `save_fn`: the loop's checkpoint action, ckpt-STEP as always) and our exit
    (its `exit_fn`: the loop returns and `Preempted` ends the process). Its watcher polls our recorded
    signal (`termination_watcher_fn`) so that SIGINT counts too. One handler serves the whole process
    (the GAN's loop, then CAS's under --mode=all): its agreement keys can be set once per job.
  * Where that handler does nothing: TensorFlow makes it inert on Compute Engine CPU and TPU VMs
    (failure_handling.py: "PreemptionCheckpointHandler does not support usage with TPU or CPU device
    on GCP"; its TPU support is for Google's internal TPUs), and it is documented for
    MultiWorkerMirroredStrategy and TPUStrategy only. TPUStrategy and one-process strategies use the
    recorded signal as above; a multi-worker job on Compute Engine CPU VMs agrees by an all-reduce
    (a sum) of every worker's "signalled" flag after each graph call (`_AllReduceAgreement`): every
    worker sees the same answer after the same call.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable, Optional

SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A worker stopped because another worker of its job was preempted (the job was sent SIGTERM).
PEER_EXIT_CODE = 128 + signal.SIGTERM
PEER = "the preemption of another worker"


def exit_code(signum: int) -> int:
    """128 + the signal's number: what a shell reports for a process the signal killed."""
    return 128 + int(signum)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Preempted(BaseException):
    """Ends the process after a preemption signal; main.py prints `message` and exits `exit_code`.

    A BaseException, as KeyboardInterrupt is, so that no `except Exception` on the way swallows it."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.message, self.exit_code = message, exit_code


class _State:
    """The process's signal state (one per process: the signal handler reaches it as a module global);
    it changes only through its methods."""

    def __init__(self):
        self.signum: Optional[int] = None  # the last signal received while watching
        self.acted_on = False  # a loop stopped for it (StepBoundary): its caller raises Preempted
        self.depth = 0  # how many graceful sections are open
        self.installed = False

    def watch(self, installed: bool) -> None:
        """Our handlers are installed (or removed): no signal received, none acted on."""
        self.installed, self.signum, self.acted_on = installed, None, False

    def receive(self, signum: int) -> None:
        self.signum = signum

    def enter(self, by: int) -> None:
        """A graceful section opens (by = 1) or closes (by = -1)."""
        self.depth += by

    def act(self, reason: Optional[str]) -> None:
        """A loop's boundary decided: `reason` not None means it stopped for the signal."""
        self.acted_on = self.acted_on or reason is not None


_STATE = _State()


def _on_signal(signum, frame) -> None:
    del frame
    again = _STATE.signum is not None
    _STATE.receive(signum)
    if _STATE.depth == 0 or again:
        raise Preempted(f"stopped by {signal_name(signum)}" + (" (a second signal: at once)" if again else ""),
                        exit_code(signum))


def requested() -> Optional[int]:
    """The signal received while watching (SIGTERM or SIGINT), None if none."""
    return _STATE.signum


@contextlib.contextmanager
def watching():
    """Handlers for SIGTERM and SIGINT for the duration (main thread only; nested uses share them):
    outside a `graceful()` section a signal raises `Preempted` at once."""
    if _STATE.installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _on_signal) for s in SIGNALS}
    _STATE.watch(True)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _STATE.watch(False)


def reinstall() -> None:
    """Our handlers again, while watching: a multi-worker strategy's coordination service replaces the
    process's SIGTERM handler with its own when it starts (xla/tsl/distributed_runtime/preemption/
    preemption_notifier.cc: std::signal), after main.py installed ours."""
    if _STATE.installed and threading.current_thread() is threading.main_thread():
        for s in SIGNALS:
            signal.signal(s, _on_signal)


@contextlib.contextmanager
def graceful(what: str = "the loop"):
    """A section that stops at its own boundaries: a first signal is only recorded (`requested()`).
    One still pending (no loop stopped for it) when the section ends normally raises `Preempted` then."""
    with watching():
        reinstall()
        _STATE.enter(1)
        try:
            yield
        finally:
            _STATE.enter(-1)
        if _STATE.signum is not None and not _STATE.acted_on and _STATE.depth == 0:
            raise Preempted(f"stopped by {signal_name(_STATE.signum)} after {what} finished", exit_code(_STATE.signum))


class StepBoundary:
    """What a loop asks after each graph call (module docstring): `boundary(save)` is None to go on,
    or the reason to stop, after `save()` has run here at the same step as on every other worker."""

    def __init__(self, strategy=None):
        self._agreement = _agreement(strategy) if _is_multi_worker(strategy) else None

    def __call__(self, save: Callable[[], None]) -> Optional[str]:
        if self._agreement is not None:
            reason = self._agreement(save)
        elif _STATE.signum is None:
            reason = None
        else:
            save()
            reason = signal_name(_STATE.signum)
        _STATE.act(reason)
        return reason


def stop_exit_code(reason: str) -> int:
    """The exit code for a loop stopped by `reason` (a signal's name, or PEER)."""
    return PEER_EXIT_CODE if reason == PEER else exit_code(signal.Signals[reason])


def _is_multi_worker(strategy) -> bool:
    if strategy is None:
        return False
    from tf_biggan.training.strategy import is_multi_worker

    return is_multi_worker(strategy)


_AGREEMENTS = {}


def _agreement(strategy):
    """One agreement per process and cluster (module docstring: TensorFlow's handler where it works)."""
    key = id(strategy.cluster_resolver)
    if key not in _AGREEMENTS:
        handler = _TensorFlowHandler(strategy)
        _AGREEMENTS[key] = handler if handler.active else _AllReduceAgreement(strategy)
    return _AGREEMENTS[key]


class _TensorFlowHandler:
    """tf.distribute.experimental.PreemptionCheckpointHandler with our signal, save and exit."""

    def __init__(self, strategy):
        import atexit
        import shutil
        import tempfile

        import tensorflow as tf

        self._save: Callable[[], None] = lambda: None
        self._stopped = False
        config = tf.distribute.experimental.TerminationConfig(
            termination_watcher_fn=lambda: _STATE.signum is not None, exit_fn=self._exit, grace_period=0,
            save_fn=lambda: self._save())
        # Our save_fn writes the run's checkpoints; the handler's own (an empty Checkpoint: it adds its
        # call counter to it) stays in a local temporary directory and is never written.
        directory = tempfile.mkdtemp(prefix="tf_biggan_preemption_")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        self.handler = tf.distribute.experimental.PreemptionCheckpointHandler(
            strategy.cluster_resolver, tf.train.Checkpoint(), directory, config)
        platform = getattr(getattr(self.handler, "_platform_device", None), "name", "")
        self.active = platform not in ("GCE_CPU", "GCE_TPU")  # where TensorFlow makes it inert

    def _exit(self) -> None:
        self._stopped = True

    def __call__(self, save: Callable[[], None]) -> Optional[str]:
        self._save = save
        self.handler.save_checkpoint_if_preempted()
        if not self._stopped:
            return None
        return signal_name(_STATE.signum) if _STATE.signum is not None else PEER


class _AllReduceAgreement:
    """Every worker's "signalled" flag, summed over all replicas after each graph call: all see the same."""

    def __init__(self, strategy):
        import tensorflow as tf

        def any_signalled(flag):
            per_replica = strategy.run(lambda: tf.identity(flag))
            return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

        self._reduce = tf.function(any_signalled)

    def __call__(self, save: Callable[[], None]) -> Optional[str]:
        import tensorflow as tf

        if not int(self._reduce(tf.constant(int(_STATE.signum is not None), tf.int32))):
            return None
        save()
        return signal_name(_STATE.signum) if _STATE.signum is not None else PEER
