"""Training summaries: TensorBoard event files and `scalars.jsonl` in MODEL_DIR/train.

TensorBoard (pinned in the requirements) shows losses, D's outputs, learning rates, images/s,
σ0-σ2 of every weight (paper Section 4 / Appendix F) and the sample grids. Every scalar is also
appended to `scalars.jsonl` (one {"step", "tag", "value"} object a line) for scripts and plots.
`Summaries(None)` writes nothing (non-chief workers, in-memory runs).
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf


class Summaries:
    def __init__(self, logdir: Optional[str]):
        self.logdir = logdir
        self.writer = None
        self._jsonl = None
        if logdir:
            # tf.io.gfile: MODEL_DIR may be gs:// (append there re-uploads the object at each flush).
            tf.io.gfile.makedirs(logdir)
            self._jsonl = tf.io.gfile.GFile(os.path.join(logdir, "scalars.jsonl"), "a")
            self.writer = tf.summary.create_file_writer(logdir)

    def scalars(self, step: int, values: Dict[str, float]) -> None:
        if self._jsonl is None:
            return
        for tag, value in values.items():
            self._jsonl.write(json.dumps({"step": int(step), "tag": tag, "value": float(value)}) + "\n")
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
            self.writer.flush()

    def close(self) -> None:
        if self._jsonl is not None:
            self.flush()
            self._jsonl.close()
            self.writer.close()
            self._jsonl = None
            self.writer = None
