"""Grappler options of every graph tf_biggan runs (resident memory of training).

Grappler's memory optimizer turns an AddN whose inputs become ready at different times into an
in-place accumulation into a temporary initialised with zeros. A G kernel's gradient is such a
sum (the loss's path through W / σ, the path through σ, and the orthogonal regulariser, Eq. 3,
which is ready long before the loss's), and constant folding then bakes each of those zero
initialisers into the optimised graph as a Const of the kernel's size: for BigGAN-128 (ch 96)
281 MB of zeros (two 85 MB consts for the 3x3x1536x1536 kernels alone) stay resident for the
life of the process. With constant folding off the zeros are a Fill at run time, freed with the
step's other temporaries: about 0.26 GB less both at rest after the first step and at an
iteration's peak, and no slower (benchmarks/bench_memory_speed.py). The option is process-wide
(TF has no per-function Grappler options), never flipped back: a function's executor is instantiated per Grappler configuration,
so toggling it would re-optimise and hold a second copy. Set by every CLI mode before its first
graph, by the training step, and by `runs.load_run` and `cas.run_cas` (the library's
entry points), so every process computes the same numbers: folded constants round differently,
and a synthesis resumed in a fresh process wrote other bytes than the one that followed
training in-process (tests/test_main_job.py). For that reason it has no switch: a process that
folded constants would compute other numbers than every other process of the same run.
"""

from __future__ import annotations

import tensorflow as tf


def configure() -> None:
    """Turns Grappler's constant folding off for this process (idempotent; module docstring)."""
    tf.config.optimizer.set_experimental_options({"constant_folding": False})
