"""Orthogonal initialisation of G and D kernels (paper Appendix C: "orthogonal initialization",
Saxe et al. 2014), fast for the large conv kernels of BigGAN (process start-up).

The same distribution and, for the same seed, the same matrix as `keras.initializers.Orthogonal`:
draw A ~ N(0, 1) of shape (max(rows, cols), min(rows, cols)) with the same Keras seed stream, take
the Q of A = QR with R's diagonal made positive (the unique such factorisation, which is what
makes Q Haar-distributed), transpose for wide kernels, scale by `gain`.

Only the factorisation differs. Keras calls a Householder QR, which on a CPU runs mostly on one
core: 16 s for a 3x3x1536x1536 kernel (a 13,824 x 1,536 matrix), several of which BigGAN-128 has
in G and D. A tall Gaussian matrix is well conditioned (condition number about
(sqrt(m) + sqrt(n)) / (sqrt(m) - sqrt(n)) <= 5.8 for m >= 2n), so Cholesky QR is exact to float32
rounding there: R^T R = A^T A by Cholesky (R with a positive diagonal, so the same Q), then
Q = A R^-1 by a triangular solve; both are matmul-shaped and multi-threaded (about 3x faster).
Near-square matrices, whose condition number grows with n, keep the Householder QR; they are
small (n x n at most 2n x n).

Deferred draws (`deferred_kernels`, process start-up): the draws of BigGAN-128 take ~8 s of
matmul-shaped work, which nothing needs until the first step runs. Kernels built inside get zeros
and their orthogonal values are computed in a background thread while the trainer traces its
step (one Python thread) and the runtime optimises it (Grappler, one thread); the values are
assigned, and anyone may read the weights, only after `DeferredKernels.finish()`. The values are the ones the immediate draw gives: the seeds are fixed
when the initialisers are constructed, and each draw is stateless.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from typing import List, Optional, Tuple

import keras
import tensorflow as tf

# Cholesky QR for matrices at least this many times taller than wide (condition number <= 5.8).
CHOLESKY_MIN_ASPECT = 2
_state = threading.local()


@contextlib.contextmanager
def placeholder_kernels():
    """Kernels built inside get zeros instead of an orthogonal draw: for a model whose weights are
    assigned right after it is built (the EMA generator, a copy of G). The seeds are fixed when the
    initialisers are constructed, so skipping the draws changes no other weight."""
    previous = getattr(_state, "placeholder", False)
    _state.placeholder = True
    try:
        yield
    finally:
        _state.placeholder = previous


class DeferredKernels:
    """Orthogonal draws of the kernels built inside `deferred_kernels()`, computed in a background
    thread from `start()` on; `finish()` waits for them and assigns them (module docstring)."""

    def __init__(self):
        self._pending: List[Tuple[object, "Orthogonal", tuple]] = []  # (variable, initializer, shape)
        self._values: List[tf.Tensor] = []
        self._queue: "queue.Queue" = queue.Queue()
        self._error: Optional[BaseException] = None
        self._cancelled = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def add(self, variable, initializer, shape) -> None:
        entry = (variable, initializer, tuple(shape))
        self._pending.append(entry)
        self._queue.put(entry)

    def start(self) -> None:
        """Starts the draws in a background thread (after the models are built: drawing while
        they are built slowed the build more than it overlapped)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._draw_all, name="orthogonal_init", daemon=True)
            self._thread.start()

    def __len__(self) -> int:
        return len(self._pending)

    def _draw_all(self) -> None:
        while True:
            entry = self._queue.get()
            if entry is None or self._cancelled.is_set():
                return
            if self._error is None:
                _, initializer, shape = entry
                try:
                    self._values.append(initializer(shape, "float32"))
                except BaseException as error:  # re-raised by finish() in the caller's thread
                    self._error = error

    def _stop(self) -> None:
        self.start()  # (finish() without start(): the draws run now)
        self._queue.put(None)
        self._thread.join()

    def finish(self) -> None:
        """Waits for the draws and assigns them (in the caller's thread and strategy scope)."""
        self._stop()
        if self._error is not None:
            raise self._error
        for (variable, _, _), value in zip(self._pending, self._values):
            variable.assign(tf.cast(value, variable.dtype))
        self._pending, self._values = [], []

    def cancel(self) -> None:
        """Drops the draws (every kernel is about to be overwritten, e.g. by a checkpoint restore)."""
        self._cancelled.set()
        self._stop()
        self._pending, self._values = [], []


@contextlib.contextmanager
def deferred_kernels(pending: DeferredKernels):
    """Orthogonal kernels built inside (through `register`) get zeros now and their draw in `pending`."""
    previous = getattr(_state, "deferred", None)
    _state.deferred = pending
    try:
        yield pending
    finally:
        _state.deferred = previous


def register(variable, initializer, shape) -> None:
    """Called by a layer right after creating `variable` with `initializer`: inside
    `deferred_kernels()`, an Orthogonal initialiser's draw is deferred (the variable holds zeros)."""
    pending = getattr(_state, "deferred", None)
    if pending is not None and isinstance(initializer, Orthogonal) and not getattr(_state, "placeholder", False):
        pending.add(variable, initializer, shape)


def orthonormal_columns(a: tf.Tensor) -> tf.Tensor:
    """Q of the QR factorisation of a tall (m, n) matrix with R's diagonal positive."""
    m, n = a.shape
    if m >= CHOLESKY_MIN_ASPECT * n:
        chol = tf.linalg.cholesky(tf.matmul(a, a, transpose_a=True))  # L = R^T
        return tf.transpose(tf.linalg.triangular_solve(chol, tf.transpose(a), lower=True))  # (L^-1 A^T)^T
    q, r = tf.linalg.qr(a)
    return q * tf.sign(tf.linalg.diag_part(r))


class Orthogonal(keras.initializers.Orthogonal):
    """keras.initializers.Orthogonal with the fast factorisation above (same seed use, same values)."""

    def __call__(self, shape, dtype=None):
        if len(shape) < 2:
            raise ValueError(f"an orthogonal initialiser needs a kernel of rank >= 2, got shape {shape}")
        rows = 1
        for dim in shape[:-1]:
            rows *= int(dim)
        cols = int(shape[-1])
        dtype = dtype or "float32"
        if getattr(_state, "placeholder", False) or getattr(_state, "deferred", None) is not None:
            return tf.zeros(shape, dtype)
        a = keras.random.normal((max(rows, cols), min(rows, cols)), seed=self.seed, dtype="float32")
        q = orthonormal_columns(tf.convert_to_tensor(a))
        if rows < cols:
            q = tf.transpose(q)
        return tf.cast(self.gain * tf.reshape(q, shape), dtype)
