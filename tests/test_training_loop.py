"""The training loop's one "is it time" rule, its actions and the progress lines (no model:
a fake trainer counts the steps)."""

import io
import math
import types

import pytest

from tf_biggan.progress import Progress, format_seconds
from tf_biggan.training import loop
from tf_biggan.training.summaries import Summaries


def test_is_time_fires_on_multiples_and_on_the_final_step():
    fired = [s for s in range(1, 11) if loop.is_time(s, 3, 10)]
    assert fired == [3, 6, 9, 10]
    assert [s for s in range(1, 7) if loop.is_time(s, 3, 6)] == [3, 6]  # the final step is not doubled
    assert not any(loop.is_time(s, 0, 10) for s in range(1, 11))  # cadence 0 = never
    assert loop.next_stop(0, 10, 4, [3, 5]) == 3
    assert loop.next_stop(3, 10, 4, [3, 5]) == 5
    assert loop.next_stop(9, 10, 4, [3, 5]) == 10


class FakeTrainer:
    """Counts steps; metrics are the step number (NaN from `nan_at` on)."""

    def __init__(self, steps_per_loop, start=0, nan_at=None):
        self.hp = types.SimpleNamespace(train=types.SimpleNamespace(steps_per_loop=steps_per_loop, disc_steps=1))
        self.global_batch, self.num_replicas, self.strategy = 4, 1, object()
        self.model_dir, self.chief, self.calls, self.nan_at = None, True, [], nan_at
        self.augment = types.SimpleNamespace(enabled=False)
        self._step = start
        self.step = types.SimpleNamespace(numpy=lambda: self._step)

    def latest_checkpoint(self):
        return None

    def train_steps(self, n):
        self.calls.append(n)
        self._step += n
        bad = self.nan_at is not None and self._step >= self.nan_at
        return {"d_loss": math.nan if bad else float(self._step)}


def run_fit(trainer, target, cadences):
    seen = {name: [] for name in cadences}
    actions = [loop.Action(name, every, lambda state, name=name: seen[name].append(state.step))
               for name, every in cadences.items()]
    report = loop.fit(trainer, target, actions, Progress("train", enabled=False), Summaries(None))
    return seen, report


def test_actions_run_on_their_cadence_and_at_the_end_of_a_resumed_run():
    trainer = FakeTrainer(steps_per_loop=4, start=2)
    seen, report = run_fit(trainer, 13, {"log": 5, "save": 3, "never": 0})
    assert seen == {"log": [5, 10, 13], "save": [3, 6, 9, 12, 13], "never": []}
    # Graph calls stop exactly at every cadence multiple, never run past the target, and at most
    # steps_per_loop long: 2->3->5->6->9->10->12->13.
    assert trainer.calls == [1, 2, 1, 3, 1, 2, 1] and sum(trainer.calls) == 11
    assert report["step"] == 13 and report["metrics"] == {"d_loss": 13.0}


def test_non_finite_loss_stops_before_the_actions_of_that_step():
    trainer = FakeTrainer(steps_per_loop=2, nan_at=4)
    with pytest.raises(loop.NonFiniteLossError, match=r"step 4 \(d_loss=nan\).*last good checkpoint: none"):
        run_fit(trainer, 10, {"save": 2})


def test_progress_lines_and_eta():
    out, now = io.StringIO(), [100.0]
    progress = Progress("train", total=110, start=10, stream=out, clock=lambda: now[0])
    now[0] = 120.0  # 20 steps in 20 s -> 80 left at 1 s each
    progress.update(30, rate=12.5, extra="d_loss 1.0")
    progress.log("done")
    assert out.getvalue().splitlines() == ["[train] 30/110 ( 27.3%)      12.5 img/s  d_loss 1.0  ETA 1m20s",
                                           "[train] done"]
    assert (format_seconds(4), format_seconds(3725), format_seconds(-1)) == ("0m04s", "1h02m05s", "0m00s")
    Progress("x", enabled=False, stream=out).log("hidden")
    assert "hidden" not in out.getvalue()


def test_run_loop_is_the_loop_of_any_model_cas_included():
    """run_loop (what fit and the CAS classifier run) without a trainer: the same stops as fit, the
    images/s of the timed calls only (the first traces), and the error `non_finite` makes raised."""
    calls, seen, step = [], [], [7]

    def train_steps(n):
        calls.append(n)
        step[0] += n
        return {"loss": math.inf if step[0] >= 19 else 0.5}

    state = loop.LoopState(7, 30, 7, {}, 0.0, "ckpt-7", 0.0)
    actions = [loop.Action("log", 4, lambda s: seen.append(s.step)), loop.Action("save", 10, lambda s: None)]
    with pytest.raises(ValueError, match="step 20 .*inf"):
        loop.run_loop(state, train_steps, actions, 5, 16,
                      lambda s, bad: ValueError(f"step {s.step} {bad}"))
    assert calls == [1, 2, 2, 4, 4] and seen == [8, 12, 16]  # 7->8->10->12->16->20, no action at 20
    assert state.step == 20 and state.images_per_sec > 0
    state = loop.LoopState(0, 3, 0, {}, 0.0, None, 0.0)
    flushed = []
    loop.run_loop(state, lambda n: {"loss": 1.0}, [], 2, 8, None, after_call=lambda: flushed.append(1))
    assert state.step == 3 and len(flushed) == 2 and state.metrics == {"loss": 1.0}
