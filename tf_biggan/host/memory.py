"""How this process's CPU host hands memory back: peak resident memory of training.

Process-level settings, applied by the CLI before TF makes its CPU device (`configure()`, called by
`tf_biggan.configure_process`; importing tf_biggan applies nothing):

- TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1. With oneDNN on (TF's default on x86), TF's CPU tensors come
  from MklCPUAllocator, a BFC arena that never returns memory: the process keeps its highest
  footprint, plus the arena's fragmentation, for the rest of the run (BigGAN-128 at batch 8:
  5.3 GB of live tensors at the peak held 6.8 GB resident). The system allocator frees what the
  step frees. Same oneDNN kernels, so the same numbers.
- glibc's mmap threshold fixed at 1 MB (mallopt M_MMAP_THRESHOLD). glibc raises it on its own up
  to 32 MB after the first large free, so most activations (1-32 MB) then land in heap arenas,
  whose holes stay resident; above the threshold a tensor is its own mapping and is unmapped when
  freed.
- At most as many glibc arenas as CPUs (mallopt M_ARENA_MAX; glibc's default is 8 per CPU). Each
  of TF's threads that meets a locked arena opens another, and memory freed into one arena is not
  reused by the others: BigGAN-128's 2-step CLI run peaked at 5.90 GiB with glibc's default and
  5.73 GiB with 2 arenas on this 2-core machine (one run each).

Measured with benchmarks/bench_memory_speed.py. A user's
TF_ONEDNN_USE_SYSTEM_ALLOCATOR and MALLOC_ARENA_MAX win. The threshold has no switch: glibc's own
(dynamic) threshold ran BigGAN-128's batch-8 iteration about 5% faster at a 1.2-1.5 GiB higher peak,
and a caching malloc (TF_BIGGAN_MALLOC, malloc.py) is the lever for speed.
"""

from __future__ import annotations

import ctypes
import os

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
M_ARENA_MAX = -8
DEFAULT_MMAP_THRESHOLD = 1 << 20


def configure() -> None:
    """Applies the settings (idempotent; the glibc ones are a no-op where glibc is absent)."""
    os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD)
        if "MALLOC_ARENA_MAX" not in os.environ:  # glibc read the user's own setting at start-up
            libc.mallopt(M_ARENA_MAX, max(1, os.cpu_count() or 1))
    except (OSError, AttributeError):
        pass  # not glibc (macOS, musl): nothing to set
