"""Preemption (tf_biggan/training/preemption.py): SIGTERM / SIGINT end a loop at a step boundary after
the checkpoint of that step, and the process with 128 + the signal's number.

Fast, in-process: the loop's stop (the step the graph call ended at, the save run once), the signal
outside a loop and a second signal, the multi-worker all-reduce agreement on two replicas, synthesis
abandoning the shard in hand. Slow, through the real CLI in subprocesses: `kill -TERM` / `kill -INT`
during training on 2 CPU replicas and a rerun that ends with the uninterrupted run's report and logs
each step once; a two-process multi-worker run (TensorFlow's PreemptionCheckpointHandler: both save
the same step); CAS (the final weights of an uninterrupted run); `--mode=all` (the same report.json);
tpu_scripts' retry on the preemption exit code.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tf_biggan.training import loop, preemption

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------------------------ in-process


def _loop(target, steps_per_loop, signal_at_call, signum=signal.SIGTERM, save_every=0):
    """run_loop over fake steps; `signal_at_call`: the graph call during which the process signals itself."""
    calls, saves = [], []

    def train_steps(n):
        calls.append(n)
        if len(calls) == signal_at_call:
            os.kill(os.getpid(), signum)  # arrives while "the graph call" runs
        return {"loss": 1.0}

    state = loop.LoopState(0, target, 0, {}, 0.0, None, 0.0)
    actions = [loop.Action("save", save_every, lambda s: saves.append(s.step), at_stop=True),
               loop.Action("log", 50, lambda s: None)]
    with preemption.graceful("the test loop"):
        loop.run_loop(state, train_steps, actions, steps_per_loop, 8, None, stop=preemption.StepBoundary())
    return state, calls, saves


def test_a_signal_stops_the_loop_after_the_call_in_progress_and_saves_that_step():
    state, calls, saves = _loop(target=100, steps_per_loop=1, signal_at_call=5)
    assert state.step == 5 and calls == [1] * 5 and saves == [5] and state.stopped_by == "SIGTERM"
    # steps_per_loop > 1: the call in progress runs to its end (7 steps), the checkpoint is of step 14.
    state, calls, saves = _loop(target=100, steps_per_loop=7, signal_at_call=2, signum=signal.SIGINT)
    assert state.step == 14 and calls == [7, 7] and saves == [14] and state.stopped_by == "SIGINT"
    # On a step the save action was due anyway, it runs once, not twice.
    state, calls, saves = _loop(target=100, steps_per_loop=1, signal_at_call=4, save_every=2)
    assert state.step == 4 and saves == [2, 4]
    assert preemption.stop_exit_code("SIGTERM") == 143 and preemption.stop_exit_code("SIGINT") == 130
    assert preemption.stop_exit_code(preemption.PEER) == 143


def test_without_a_signal_the_loop_runs_to_its_target_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    state, calls, saves = _loop(target=6, steps_per_loop=4, signal_at_call=0)
    assert state.step == 6 and calls == [4, 2] and saves == [] and state.stopped_by is None
    assert signal.getsignal(signal.SIGTERM) is before and preemption.requested() is None


def test_outside_a_loop_a_signal_stops_at_once_as_does_a_second_one():
    with pytest.raises(preemption.Preempted) as info:
        with preemption.watching():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # interrupted by the handler's exception
    assert info.value.exit_code == 143 and "SIGTERM" in info.value.message
    with pytest.raises(preemption.Preempted) as info:
        with preemption.graceful():
            os.kill(os.getpid(), signal.SIGINT)
            assert preemption.requested() == signal.SIGINT  # the first one is only recorded
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert info.value.exit_code == 130 and "second signal" in info.value.message
    # A signal recorded while a section finishes its last work stops the process when it ends.
    with pytest.raises(preemption.Preempted, match="after the test section finished"):
        with preemption.graceful("the test section"):
            os.kill(os.getpid(), signal.SIGTERM)
    assert preemption.requested() is None


def test_all_reduce_agreement_gives_every_replica_the_same_answer():
    """The multi-worker agreement where TensorFlow's handler is inert: the sum of the signalled flags."""
    from conftest import mirrored_strategy

    agreement = preemption._AllReduceAgreement(mirrored_strategy(2))
    saved = []
    assert agreement(lambda: saved.append(1)) is None and saved == []
    with preemption.graceful():
        os.kill(os.getpid(), signal.SIGTERM)
        assert agreement(lambda: saved.append(1)) == "SIGTERM" and saved == [1]
        preemption._STATE.acted_on = True  # (the loop would raise Preempted)


class _FakeSource:
    """A deterministic stand-in generator: images are a fixed function of z and the label."""

    dim_z, num_classes, resolution, batch_size = 4, 3, 8, 5
    description = {"kind": "fake"}
    standing_stats = None

    def __init__(self, signal_at_batch=None):
        self.batches, self.signal_at_batch = 0, signal_at_batch

    def prepare(self):
        pass

    def generate(self, z, labels):
        self.batches += 1
        if self.batches == self.signal_at_batch:
            os.kill(os.getpid(), signal.SIGTERM)
        z = np.asarray(z, np.float32)
        base = np.tanh(z[:, :3, None, None] + np.asarray(labels, np.float32)[:, None, None, None])
        return np.broadcast_to(np.transpose(base, (0, 2, 3, 1)), (len(z), 8, 8, 3)).copy()


def test_synthesis_abandons_the_shard_in_hand_and_the_rerun_is_byte_identical(tmp_path):
    from tf_biggan.export.synthesize import synthesize

    kwargs = dict(num_shards=3, truncation=0.5, seed=1, jpeg_quality=90)
    straight, stopped = str(tmp_path / "straight"), str(tmp_path / "stopped")
    synthesize(_FakeSource(), straight, [10, 10, 10], log=lambda m: None, **kwargs)
    # 10 images a shard in batches of 5: the signal comes while batch 3 (shard 1's first) is made, so
    # shard 1 is dropped before its second batch. (One during batch 4, its last, would let it finish.)
    with pytest.raises(preemption.Preempted) as info:
        with preemption.watching():
            synthesize(_FakeSource(signal_at_batch=3), stopped, [10, 10, 10], log=lambda m: None, **kwargs)
    assert info.value.exit_code == 143 and "abandoned train-00001-of-00003" in info.value.message
    # Shard 0 complete with its marker; shard 1 neither there nor half-written; no manifest yet.
    names = sorted(os.listdir(stopped))
    assert "train-00000-of-00003" in names and ".train-00000-of-00003.done" in names
    assert not any(n.startswith(("train-00001", ".train-00001", "manifest")) for n in names), names
    synthesize(_FakeSource(), stopped, [10, 10, 10], log=lambda m: None, **kwargs)
    for i in range(3):
        name = f"train-0000{i}-of-00003"
        with open(os.path.join(straight, name), "rb") as a, open(os.path.join(stopped, name), "rb") as b:
            assert a.read() == b.read(), name
    assert os.path.exists(os.path.join(stopped, "manifest.json"))
