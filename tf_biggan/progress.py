"""The one way tf_biggan prints progress: `[stage] message` lines on stdout, flushed at once.

    progress = Progress("train", total=3000, unit="img")
    progress.log("resumed from ckpt-500")                 # [train] resumed from ckpt-500
    progress.update(done=600, rate=290.1, extra="...")   # [train] 600/3000 (20.0%)  290.1 img/s  ... ETA 8m16s

A stage run inside another (cas_sweep's classifiers, the main job's stages) passes `sink`: its
bare messages go to the outer stage's log, which adds its own prefix.

`update` derives the ETA from the rate of `done` since the Progress was made (or `start`), so
resumed runs do not count the steps of an earlier process. `format_seconds` is the one duration
format. Only the chief of a multi-worker run should print (`enabled=False` elsewhere).
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional


def format_seconds(seconds: float) -> str:
    """0:00-style durations: 4s -> '0m04s', 3725s -> '1h02m05s'."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class Progress:
    def __init__(self, stage: str, total: Optional[int] = None, unit: str = "img", start: int = 0,
                 enabled: bool = True, stream=None, clock=time.time,
                 sink: Optional[Callable[[str], None]] = None):
        self.stage, self.total, self.unit, self.enabled = stage, total, unit, enabled
        self.stream, self.sink = stream, sink
        self._clock = clock
        self._start_done, self._start_time = start, clock()

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self.sink is not None:
            self.sink(message)
        else:
            print(f"[{self.stage}] {message}", file=self.stream or sys.stdout, flush=True)

    def eta(self, done: int) -> Optional[float]:
        """Seconds left at the average pace since the start, None without a total or any progress."""
        if self.total is None or done <= self._start_done:
            return None
        pace = (self._clock() - self._start_time) / (done - self._start_done)
        return max(self.total - done, 0) * pace

    def update(self, done: int, rate: Optional[float] = None, extra: str = "") -> None:
        """One line: done[/total (percent)], rate in unit/s, `extra`, ETA."""
        parts = [f"{done}/{self.total} ({100.0 * done / max(self.total, 1):5.1f}%)" if self.total else f"{done}"]
        if rate is not None:
            parts.append(f"{rate:8.1f} {self.unit}/s")
        if extra:
            parts.append(extra)
        eta = self.eta(done)
        if eta is not None:
            parts.append(f"ETA {format_seconds(eta)}")
        self.log("  ".join(parts))
