"""Memory, start-up and speed of one training iteration (issue 14), optionally beside BigGAN-PyTorch.

One iteration = train.disc_steps D steps + 1 G step + the EMA update (paper Section 3), on random
in-memory images so the input pipeline is not measured. Each configuration runs in a FRESH
subprocess (honest start-up and peak resident memory), which prints per stage: seconds and peak
RSS (VmHWM, reset between stages through /proc/self/clear_refs):
  import, build (G, D, EMA-G, Adam slots: orthogonal init), trace (first call: tracing, graph
  optimisation, the first iteration), iterations (median seconds, images/s), sigma monitoring
  (sigma_0..2 of every G and D kernel, Appendix F), and with --stage_profile one D step, one G step
  and one EMA update as separate functions (their own traces are excluded from their peaks).
FLOPs per iteration come from TF's per-op statistics of the G and D forward graphs with backward =
2 x forward (benchmarks/bench_train.py), and the fraction of a float32 matmul peak measured in the
same process.

--peer_dir DIR (a BigGAN-PyTorch checkout) with --peer_python (a python with torch) times the peer's
same iteration (its train_fns.GAN_training_function: shared embedding, hierarchical z, attention at
64, SN, orthogonal init, Adam, EMA; no ortho reg in its loop) in the same way, alternating
ours / peer --rounds times so that load from other processes hits both alike, and prints ratios.
The peer's dataset and image-saving imports (torchvision, PIL, h5py, tqdm) are stubbed: its training
step does not use them.

Measured (issue 14, second pass; AMD EPYC, 2 cores, avx512_bf16; BigGAN-128 ch 96, batch 8, fp32,
ortho reg on; the lead and another helper loaded the machine: load average 5-9, so seconds are
inflated and only comparable within a row's run). One variable at a time, fresh processes; peak
RSS of the first iteration / of the next iteration, GB:
  main before this pass                                  7.93 / 8.04 (BFC arena live peak 5.3)
  + each pass after the previous backward (step.py)      6.80 / 7.01
  + that, TF_ENABLE_ONEDNN_OPTS=0 (rejected: 1.5x slower) 5.87 / 6.17
  + TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1                     6.50 / 6.44
  + glibc mmap threshold 1 MB (tf_biggan/host_memory.py)  5.97 / 6.09
  + attention one image at a time in training            5.77 / 5.90 (model.attention_per_image,
                                                         off by default: ~10% slower)
  paired run with that lever on, vs BigGAN-PyTorch: peak 5.89 GB vs 5.10 GB (1.15x); 210 vs 255 s
  per iteration (1.21x faster, load 8-10); start to first iteration 422 vs 406 s.
  defaults (attention batched), load 4-5: peak 6.09 GB, 44.5 s/iteration, start to first 156 s;
  quiet machine (load < 1), back to back: ours 6.09 GB, 31.7 s/iteration, start to first 87.8 s
  (build 21.5, trace + first iteration 62.6); BigGAN-PyTorch 5.17 GB, 30.2 s, 42.9 s: peak 1.18x,
  iteration 0.95x (no faster), start-up 2.05x. Levers at load 3-4: model.dtype=mixed_bfloat16
  5.63 GB, 35.4 s/iteration; train.jit_compile=true 8.53 GB, 46.9 s/iteration (no help on this CPU).
  the commit before issue 14 (d0c9db9, model.ortho_reg=0 since ortho on needs 17 GB), load 8:
  peak 7.60 GB, 135 s/iteration, start to first 223 s (build 90 s: orthogonal init).
  + blocks, G and D built without Keras' symbolic pass (layers/container.py), paired at load 1.6-1.8:
  ours 6.10 GB, 31.65 s/iteration, start to first 71.6 s (import 3.3, build 12.1, trace + first
  iteration 56.2); BigGAN-PyTorch 5.17 GB, 31.28 s, 46.7 s: peak 1.18x, iteration 0.99x, start-up 1.53x.
  Through the CLI (--mode=train --hparams=hparams/biggan_128.yaml --train_steps=2, batch 8, ImageNet-
  layout shards, final sample grid included), idle: exit after 3 min 17 s, max RSS 6.61 GB.
  Third pass (this machine, load 5-7: seconds inflated; peaks in GiB, first / next iteration):
  main at the start                                      5.98 / 6.10; sample grid stage 5.42
  + BatchNorm as one op with its closed-form gradient    5.77 / 5.91 (layers/batch_norm.py)
  + sample grid drawn a row at a time                    grid stage 5.05
  + Grappler constant folding off (training/grappler.py) 5.57 / 5.67; grid 4.80; resident after the
    first step 3.40 -> 3.14 (281 MB of folded zero accumulators of G's kernel gradients gone),
    60.3 vs 58.7-59.3 s per iteration beside each other (no slower)
  tf.config.threading inter-op threads = 1: 5.77 / 5.88 (no help, not kept).
  Through the CLI (2 steps, ImageNet-layout shards, /usr/bin/time max RSS): 5.90 GiB; with at most
  2 glibc arenas (host_memory.py, now the default): 5.74 GiB (6,013,776 kB).
  Paired, idle (load 1.0-1.8), final code of the third pass: ours 30.81 s/iteration, peak 5.69 GiB, start
  to first iteration 71.9 s (import 3.8, build 12.6, trace + first iteration 55.5), 69.3% of a 188 GFLOP/s
  matmul peak; BigGAN-PyTorch 30.73 s, 5.10 GiB, 44.5 s: iteration 1.00x, peak 1.12x, start-up 1.61x.
  Ours alone ten minutes earlier: 31.73 s, 5.67 GiB, 66.3 s. bf16 (model.dtype=mixed_bfloat16), idle:
  22.63 s/iteration (1.43x our fp32, 1.32x the peer's 29.94 s measured beside it), 5.24 GiB, 62.2 s.
  Rejected: G's ReLU inside the BN op (keeps only x for the backward): start to first iteration 66.3 ->
  94.1 s with no memory gain (5.71 GiB), reverted. CLI 2 steps, idle: exit 3 min 11 s, 5.73 GiB.
  A 2x speed-up over the peer would need 134-138% of the matmul peak: out of reach on this CPU.
  Fourth pass (this machine, idle; split runs: fresh process, 2 iterations after the first, peak GiB):
  main at the start                                      iteration peak 5.70 (31.2-31.7 s)
  + spectral norm's W / sigma recomputed in the backward 5.75 (no gain: Grappler's common-subgraph
    elimination merged the recomputed W / sigma back into the forward's, which then stayed alive)
  + the recomputation ordered after dy (control dependency; layers/recompute.py)  5.42
  + G's upsample inside conv1's recomputed part, attention map recomputed        5.23 (31.1-32.3 s)
  + Adam through TF's fused ResourceApplyAdam (training/adam.py)                 5.05-5.09 (30.5-30.8 s;
    python trace 13.4 -> 11.0 s: ~2,000 fewer ops)
  model.ortho_reg=0 at the third of these: 5.20 (the lean regulariser costs 0.03 GiB at the peak).
  Where the peak was (--stage_profile, main at the start): G step 5.64, D step 4.76, EMA 3.71 GiB, from
  ~3.3 GiB at rest (TF's runtime 0.68 at import: 0.42 of it shared-library pages, 0.28 anonymous).
  Not kept: glibc's own mmap threshold (TF_BIGGAN_MMAP_THRESHOLD=0) 28.4-29.4 s but 6.28-6.58 GiB;
  transparent huge pages for malloc (GLIBC_TUNABLES=glibc.malloc.hugetlb=1) 15x fewer page faults
  (0.41 vs 6.1 M per iteration) but 32.9 s: zeroing fresh pages, not faulting, is the cost;
  MALLOC_TRIM_THRESHOLD_ 64 MB 30.4 s, mmap threshold 4 MB 30.1 s (no gain beyond noise); with the
  levers below, mmap threshold 1 / 16 / 64 MB: 31.0-31.4 s at 5.01 / 31.1-32.8 s at 5.60 / 27.3-28.5 s
  at 6.32 GiB (speed only comes with keeping the large tensors mapped, i.e. the old footprint).
  bf16 (model.dtype=mixed_bfloat16) with these levers: 23.71 s, 5.35 GiB. Cause of the excess: Keras
  autocasts a variable read inside a bf16 layer, so SN's power iteration and W / sigma saw a
  bf16-rounded kernel and a float32 copy of it was kept per layer. SN kernels now have autocast=False
  (the layer casts W / sigma itself): 22.81 s/iteration (1.36x the peer's 31.05 s), 4.82 GiB (0.93x),
  62.9 s to the first iteration.
  Paired, idle (load 1.7-1.9), final code: ours 30.26 s/iteration, peak 4.98 GiB, start to first
  iteration 66.1 s (import 3.7, build 12.5, trace + first iteration 49.9), 65.5% of a 202 GFLOP/s
  matmul peak; BigGAN-PyTorch 31.05 s, 5.20 GiB, 57.3 s (its import 10.2 s this time): iteration
  1.03x faster, peak 0.96x, start-up 1.15x. CLI, 2 steps, idle: exit 3 min 24 s, max RSS 5.14 GiB
  (5,390,692 kB). The commit before issue 14 (d0c9db9) through the same CLI, alternating with ours
  (log line of step 1): 112.1 / 125.3 s from process start to the first finished iteration (build
  49.6 / 54.8 s, iteration 28.4-28.8 s, 16.7 GiB) against ours' 76.3 / 73.6 s then.
  Fifth pass (start-up; this machine, idle). Split of the first call (fresh process, the fourth pass's
  code): import 3.2, build 12.2 (orthogonal draws 8.4 of it, 107 kernels), Python trace 7.9, first
  call 38.9 (Grappler 5.6-6.6: memory optimizer 1.3, a second round of every pass that changes
  nothing 1.4, layout 0.3; then the iteration itself) = 62.2 s.
  + step traced without autograph (explicit while_loop)   trace 10.5 -> 7.9 s (the conversion of the
    step's call tree; tiny step 6.35 -> 3.74 s)
  + orthogonal draws deferred (layers/orthogonal_init.py): a background thread draws while the step
    is traced and, through a 0-step call, optimised; assigned before the first step (same weights
    bit for bit): build 12.2 -> 4.2 s, trace 9.7 s, 0-step call 8.4 s, joining the draws 0.2 s, the
    first step 30.3 s: 55.6 s (split) / 59.4-60.8 s (this bench, whose stage marks trim the heap).
    Drawing while the models are built instead slowed the build more than it overlapped (61.5 s).
  Paired, idle (load 1.7-1.9): ours 31.00 s/iteration, peak 5.00 GiB, start to first iteration 60.1 s
  (import 3.4, build 4.1, trace + first iteration 52.5), 63.8% of a 202 GFLOP/s matmul peak;
  BigGAN-PyTorch 31.59 s, 5.19 GiB, 43.7 s: iteration 1.02x faster, peak 0.96x, start-up 1.37x.
  Through the CLI (2 steps, train.steps_per_loop=1, log line of step 1, alternating): ours 63.8 s
  (66.2 s before this pass; the same losses to the digit), the commit before issue 14 (d0c9db9)
  116.6 s: 0.55. Not taken: Grappler's second round is not switchable through tf.config (a thread's
  FunctionCallOptions config did not reach the function's optimiser).
  Sixth pass (start-up; this machine, idle; split with the ImageNet-layout shards, fresh processes):
  + the D steps of a step share one trace (step.py: one tf.function called disc_steps times, on one
    device and with no D hook): python trace alone 7.7-8.1 -> 6.2-6.3 s, 23,013 -> 17,541 graph
    nodes. The same weights bit for bit on the tests' model; at BigGAN-128 Grappler rewrites the
    inlined graph a little differently: after 2 steps G's and D's kernels are within 2e-4 (relative
    Frobenius) of the unrolled step's, step-2 losses d 0.72437 / g 3.63821 vs 0.72437 / 3.63838; one
    intra-op thread instead of two moves the kernels by 1.3e-3 (the biases of G's block convs, each feeding a
    BatchNorm, have a zero gradient, so Adam turns rounding noise into their ~lr-sized values in every
    variant)
  + models built by a pass on a batch of 1 instead of 2 (the same weights): build 4.0 -> 3.0 s
  = import 3.3, build 3.1, iterator 0.5, trace 7.8-8.2 (beside the draws), 0-step call 8.2-9.0, first
    step 30.4: 53.7-54.8 s. Grappler's layout and implementation-selector passes off (tf.config): 0-step
    call 7.7-8.3 vs 8.1-9.1 s, inside the run-to-run spread; not kept.
  Through the CLI (as in the fifth pass, alternating, same session): ours 55.1 / 54.1 / 56.5 s, the
  commit before issue 14 (d0c9db9) 116.3 / 114.6 / 119.6 s: 0.47 (0.45-0.49); the same losses at step
  1 (23.3689) in all of ours. --mode=summary of BigGAN-512: 17.1-17.4 s vs 39.2 s for d0c9db9 (0.44).
  Paired (--iters 2), idle, load 1.9: ours 30.76 s/iteration, peak 4.89 GiB, start to first iteration
  54.6 s (import 3.2, build 3.0, trace + first iteration 48.4), 66.1% of a 197 GFLOP/s matmul peak;
  BigGAN-PyTorch 30.15 s, 5.13 GiB, 43.4 s: iteration 0.98x, peak 0.95x, start-up 1.26x.
  Seventh pass: the host's malloc (tf_biggan/malloc.py, TF_BIGGAN_MALLOC; the peer's --peer_malloc). An
  Intel Xeon (family 6 model 207, AMX-BF16 / AVX-512 BF16), 2 cores, idle; its speed drifted between runs
  (the same fp32 matmul peak measured 186-241 GFLOP/s), so ratios come from alternating runs.
  fp32, paired with the peer as it ships (glibc), 2 rounds each:
    ours, glibc (the default)      35.69 / 40.66 s, 4.92 / 4.94 GiB, 79.8 / 86.3 s to the first iteration;
                                   peer 36.39 / 41.39 s, 5.20 / 5.23 GiB, 54.9 / 58.4 s:
                                   iteration 1.02x, peak 0.95x, start-up 1.47x
    ours, TF_BIGGAN_MALLOC=tcmalloc 29.99 / 24.69 s, 5.38 / 5.29 GiB, 69.9 / 58.8 s (55-69% of the matmul
                                   peak); peer 39.44 / 37.66 s, 5.24 / 5.22 GiB, 52.7 / 52.6 s:
                                   iteration 1.41x, peak 1.02x, start-up 1.22x
  ours alone, alternating (s/iteration, GiB): glibc 31.51, 33.84, 33.14 / 4.91-4.98; tcmalloc 22.80,
  23.98, 26.23, 28.31 / 5.27-5.48; mimalloc (MIMALLOC_PURGE_DELAY 10 ms, its default) 25.96, 31.47 /
  5.26, 5.41; mimalloc purging at once 29.65 / 5.06; jemalloc 33.76 / 4.93; tcmalloc with
  TCMALLOC_AGGRESSIVE_DECOMMIT (frees go back to the OS at once) 35.95 / 4.95: the speed is the kept
  pages (no fault-and-zero of every step's tensors), and the memory is what the allocator keeps free at
  the peak. The same allocator under the peer: BigGAN-PyTorch on tcmalloc 23.40 s at 4.97 GiB (glibc
  37.7-39.4 s at 5.22-5.24), so on one allocator the fp32 iterations are at parity, as on the AMD
  machine; the 1.4x of the issue's "today" was the pre-issue code's BFC arena keeping every page
  (that code here: 29.89 s per iteration at 17.5 GB peak, 175.9 s from process start to the first
  finished iteration against ours' 64.5-86.3 s, on random data as this bench: 0.37-0.49).
  bf16 (model.dtype=mixed_bfloat16; AMX here): glibc 19.68 / 22.51 s at 4.79 / 4.80 GiB (peer on
  tcmalloc beside the second: 23.40 s); tcmalloc 12.46 s at 5.19 GiB, 45.5 s to the first iteration:
  3.0-3.2x the peer as it ships (37.7-39.4 s) and 1.9x the peer on tcmalloc, at 0.99x its peak.
  XLA (train.jit_compile=true) on tcmalloc: 23.94 s at 8.37 GiB, 94.5 s to the first iteration: no
  faster than tcmalloc alone and 1.6x the memory (not a lever here either). TCMALLOC_RELEASE_RATE 4 / 20
  (tcmalloc's incremental release to the OS): 24.99 s at 5.39 GiB / 23.68 s at 5.54 GiB: no less
  memory at the peak, so the default rate stays.
  Through the CLI (--mode=train --hparams=hparams/biggan_128.yaml --train_steps=2, batch 8, ImageNet-layout
  shards, final sample grid included; /usr/bin/time): glibc (the default) exit after 3:05.7 at max RSS
  5,308,988 kB (5.06 GiB); TF_BIGGAN_MALLOC=tcmalloc 2:43.8 at 6,466,916 kB (6.17 GiB: the grid's standing
  statistics on top of the kept pages); the same losses at step 2 to the digit (d 2.0951, g -0.3098).
  Eighth pass: Keras' optional imports withheld from Keras (tf_biggan/keras_extras.py: scikit-learn, matplotlib
  and IPython, which Keras imports only for its sklearn wrappers, gallery plots and notebook check):
  `import tf_biggan.training.trainer` 5.25 -> 3.05 s, 681 -> 576 MB resident (4,379 -> 3,161 modules). The same
  Intel machine, fp32, ours on TF_BIGGAN_MALLOC=tcmalloc, the peer as it ships (glibc), two paired rounds:
    28.12 / 26.56 s per iteration, peak 5.18 / 5.27 GiB (iterations stage 5.12 / 5.24; the rest is the sigma
    monitoring stage), start to first iteration 53.6 / 68.4 s; peer 39.24 / 39.09 s, 5.20 / 5.18 GiB, 57.2 /
    55.0 s: iteration 1.40x / 1.47x faster, peak 1.00x / 1.02x, start-up 0.94x / 1.24x (58% / 79% of a
    245 / 190 GFLOP/s matmul peak: the machine's speed drifted between the rounds).
  Through the CLI (2 steps, ImageNet-layout shards, final grid; default glibc): exit after 3:39.3 at max RSS
  5,035,164 kB (4.80 GiB; 5.06 before this pass), the same step-2 losses to the digit (d 2.0951, g -0.3098).
  Ninth pass (AMD EPYC, family 25 model 17, AVX-512 BF16, 2 cores, idle but for this bench; fp32, ours on
  TF_BIGGAN_MALLOC=tcmalloc, the peer as it ships on glibc, --iters 3, one alternating round each):
    defaults                             ours 28.90 s, peak 5.25 GiB (iterations 5.23), 67.9 s to the first
                                         iteration; peer 44.70 s, 5.17 GiB, 62.8 s: 1.55x faster, 1.01x peak
    model.attention_per_image=true, 1    ours 29.93 s, 4.86 GiB (iterations 4.84), 75.6 s; peer 44.60 s,
                                         5.20 GiB: 1.49x faster, 0.94x peak
    model.attention_per_image=true, 2    ours 29.31 s, 4.95 GiB (iterations 4.93), 61.6 s; peer 41.63 s,
                                         5.19 GiB: 1.42x faster, 0.95x peak
  So on tcmalloc, attention one image at a time (recomputed in the backward) takes 0.3-0.4 GiB off the peak
  for 1-4% of the iteration (the ~10% of the second pass was on glibc): with both levers the fp32 step is
  1.42-1.49x the peer's speed below its peak. Also this pass (start-up and the tests' time, bit-identical
  unless noted): G's upsample as tile + reshape (5 ops where tf.repeat built ~31; the gradients sum the same
  pairs, but Grappler rewrites the static-shape graph a little differently: non-noise weights within 5e-8
  after 2 tiny steps), Adam's step scalars once per apply, EMA's 1 - decay once, spectral norm's axis and
  epsilon one Const per graph, BatchNorm's per-sample gain / bias in one Reshape and its element counts as
  constants: the tiny step 7,876 -> 6,216 graph ops (-21%). sigma monitoring runs its layers one after
  another and its subspace iteration as a graph loop instead of 30 unrolled copies (tiny model: 2,844 ->
  1,986 ops, first call 1.23 -> 0.59 s; within 4e-7 of the unrolled values); its stage now adds 0.02 GiB
  to the iterations' peak (0.03-0.05 before).
The BFC figure: tf.config.experimental.get_memory_info with TF's default allocator (oneDNN's BFC
arena), which never gives memory back, so its resident set was its high-water mark plus
fragmentation. TF's runtime still rests higher than torch's (0.68 GiB at import vs 0.22, and the
step's graphs and kernels after the first run); since the fourth pass the step's transient memory is
enough below the peer's (W / sigma, upsampled inputs and attention maps not kept; Adam without
temporaries) that the peak is below it.

Run:  python benchmarks/bench_memory_speed.py [--config biggan_128|default|both] [--iters 3]
          [--overrides model.dtype=mixed_bfloat16,train.jit_compile=true]
          [--peer_dir /tmp/biggan_pytorch --peer_python /tmp/torchenv/bin/python --rounds 2]
"""

from __future__ import annotations

import time

T0 = time.time()  # process start, before the heavy imports (start-up counts them)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _load_malloc():
    """tf_biggan/malloc.py alone (no package import: tf_biggan's own host settings must not reach
    the peer's process)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tf_biggan_malloc", os.path.join(REPO, "tf_biggan", "malloc.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


malloc = _load_malloc()
CONFIGS = {  # name -> (hparams file, overrides): BigGAN-128 ch 96 at batch 8, and the embedded default
    "biggan_128": ("biggan_128", "train.batch_size=8,train.steps_per_loop=1"),
    "default": (None, "train.steps_per_loop=1"),
}


class Stages:
    """Seconds and peak RSS of consecutive stages of this process."""

    def __init__(self):
        self.last = T0
        self.rows = {}
        self._reset_peak()

    @staticmethod
    def _reset_peak():
        # Free heap pages go back to the OS first, so each stage's peak is what it holds, not what
        # an earlier stage left in malloc's free lists.
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            pass

    @staticmethod
    def rss_gb(field: str = "VmHWM") -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024 ** 2
        return float("nan")

    def mark(self, name: str, seconds: float = None) -> None:
        now = time.time()
        self.rows[name] = {"seconds": now - self.last if seconds is None else seconds, "peak_gb": self.rss_gb()}
        print(f"STAGE {name} {self.rows[name]['seconds']:.1f}s peak {self.rows[name]['peak_gb']:.2f}GiB",
              file=sys.stderr, flush=True)  # partial results survive a stopped run
        self.last = now
        self._reset_peak()

    def report(self) -> dict:
        return {"stages": self.rows, "peak_gb": max(r["peak_gb"] for r in self.rows.values())}


# ---------------------------------------------------------------------------------------- ours
def ours_worker(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path[:0] = [REPO, HERE]
    import tf_biggan  # noqa: F401  (first, as in the CLI: its import settings precede TF's; keras_extras.py)
    import tensorflow as tf

    from bench_train import matmul_peak, random_data, step_flops
    from tf_biggan.config import load_hparams
    from tf_biggan.training.trainer import GANTrainer

    stages = Stages()
    stages.mark("import")
    name, overrides = CONFIGS[args.config]
    hp = load_hparams(name, ",".join(x for x in (overrides, args.overrides) if x))
    # defer_init as the train mode has it: the orthogonal draws overlap the first trace, so "build"
    # is the models without their draws and the draws' remainder lands in the first iteration's stage.
    trainer = GANTrainer(hp, dataset_fn=random_data(hp), verbose=False, defer_init=True)
    stages.mark("build")
    trainer.train_steps(1)
    stages.mark("trace_and_first_iteration")
    start_to_first = time.time() - T0
    times = []
    for _ in range(args.iters if hp.model.resolution > 32 else 10 * args.iters):  # the default: ms each
        t = time.time()
        trainer.train_steps(1)
        times.append(time.time() - t)
    stages.mark("iterations", statistics.median(times))
    trainer.singular_values()
    stages.mark("sigma_monitoring")
    if args.sample_grid:
        trainer.sample_grid()  # the periodic / final picture (train.sample_stats_*, then the grid)
        stages.mark("sample_grid")
    if args.stage_profile:
        profile_steps(trainer, stages)
    out = stages.report()
    out.update(seconds_per_iteration=statistics.median(times), iteration_times=times,
               images_per_sec=hp.train.batch_size / statistics.median(times), start_to_first_iteration=start_to_first)
    if not args.no_flops:
        peak = matmul_peak()
        flops = step_flops(trainer)["step"]
        out.update(gflops_per_iteration=flops / 1e9, matmul_peak_gflops=peak / 1e9,
                   fraction_of_peak=flops / statistics.median(times) / peak)
    out["malloc"] = malloc.active()
    out["config"] = {"hparams": name or "digits (embedded default)", "overrides": args.overrides,
                     "batch_size": hp.train.batch_size,
                     "dtype": hp.model.dtype, "ch": hp.model.ch, "resolution": hp.model.resolution}
    del tf
    return out


def profile_steps(trainer, stages) -> None:
    """Peak RSS of one D step, one G step (with ortho reg) and one EMA update, each its own function."""
    import tensorflow as tf

    from tf_biggan.layers.ortho_reg import ortho_reg
    from tf_biggan.training.losses import hinge_d_loss, hinge_g_loss

    hp, g, d = trainer.hp, trainer.g, trainer.d
    b, r = hp.train.batch_size, hp.model.resolution
    z = tf.random.normal((b, hp.model.dim_z))
    y = tf.zeros((b,), tf.int32)
    x = tf.random.uniform((b, r, r, 3), -1.0, 1.0)

    @tf.function
    def d_step():
        x_fake = g((z, y), training=True)
        with tf.GradientTape() as tape:
            logits = d((tf.concat([x, x_fake], 0), tf.concat([y, y], 0)), training=True)
            loss = hinge_d_loss(logits[:b], logits[b:], b)[0]
        trainer.d_opt.apply_gradients(zip(tape.gradient(loss, d.trainable_variables), d.trainable_variables))

    @tf.function
    def g_step():
        with tf.GradientTape() as tape:
            loss = hinge_g_loss(d((g((z, y), training=True), y), training=True), b)
            loss += ortho_reg(g.ortho_reg_kernels(), hp.model.ortho_reg)
        trainer.g_opt.apply_gradients(zip(tape.gradient(loss, g.trainable_variables), g.trainable_variables))

    ema = tf.function(lambda: trainer.ema.update(trainer.step))
    for name, fn in (("d_step", d_step), ("g_step", g_step), ("ema", ema)):
        fn.get_concrete_function()
        stages.mark(f"{name}_trace")
        fn()
        stages.mark(name)


# ---------------------------------------------------------------------------------------- peer
def peer_worker(args) -> dict:
    """BigGAN-PyTorch's iteration at BigGAN-128 ch 96, batch 8, 2 D steps (run under --peer_python)."""
    import importlib.abc
    import importlib.machinery
    import types

    stubbed = ("torchvision", "PIL", "h5py", "tqdm")

    class Anything:
        def __init__(self, *a, **k):
            pass

        def __call__(self, *a, **k):
            return self

        def __getattr__(self, name):
            return Anything()

    class Stub(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Anything

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in stubbed:
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            return Stub(spec.name)

        def exec_module(self, module):
            module.__path__ = []

    sys.meta_path.insert(0, Finder())
    sys.path.insert(0, os.path.abspath(args.peer_dir))
    import torch

    import BigGAN
    import train_fns
    import utils

    stages = Stages()
    stages.mark("import")
    config = vars(utils.prepare_parser().parse_args([]))
    # scripts/launch_BigGAN_bs256x8.sh (BigGAN-128, ch 96), at our batch, epsilons and D steps.
    config.update(G_ch=96, D_ch=96, G_attn="64", D_attn="64", G_shared=True, hier=True, dim_z=120, shared_dim=128,
                  G_init="ortho", D_init="ortho", batch_size=8, num_D_steps=2, G_lr=5e-5, D_lr=2e-4, SN_eps=1e-4,
                  BN_eps=1e-4, G_ortho=0.0, ema=True, ema_start=20000, resolution=128, n_classes=1000,
                  G_activation=torch.nn.ReLU(inplace=False), D_activation=torch.nn.ReLU(inplace=False))
    utils.seed_rng(0)
    g = BigGAN.Generator(**config)
    d = BigGAN.Discriminator(**config)
    g_ema = BigGAN.Generator(**{**config, "skip_init": True, "no_optim": True})
    ema = utils.ema(g, g_ema, config["ema_decay"], config["ema_start"])
    gd = BigGAN.G_D(g, d)
    z_, y_ = utils.prepare_z_y(8, g.dim_z, 1000, device="cpu")
    train = train_fns.GAN_training_function(g, d, gd, z_, y_, ema, {"itr": 0}, config)
    x = torch.rand(16, 3, 128, 128) * 2 - 1
    y = torch.randint(0, 1000, (16,))
    stages.mark("build")

    def iteration():
        g.train()
        d.train()
        train(x, y)

    iteration()
    stages.mark("trace_and_first_iteration")
    start_to_first = time.time() - T0
    times = []
    for _ in range(args.iters):
        t = time.time()
        iteration()
        times.append(time.time() - t)
    stages.mark("iterations", statistics.median(times))
    out = stages.report()
    out.update(seconds_per_iteration=statistics.median(times), iteration_times=times,
               images_per_sec=8 / statistics.median(times), start_to_first_iteration=start_to_first,
               torch=torch.__version__, threads=torch.get_num_threads(), malloc=malloc.active(),
               params={"G": sum(p.numel() for p in g.parameters()), "D": sum(p.numel() for p in d.parameters())})
    return out


# ---------------------------------------------------------------------------------------- driver
def run_worker(kind: str, args, python: str) -> dict:
    cmd = [python, os.path.abspath(__file__), f"--_worker={kind}", f"--config={args.config_now}",
           f"--iters={args.iters}", f"--overrides={args.overrides}"]
    if kind == "peer":
        cmd.append(f"--peer_dir={args.peer_dir}")
    if args.stage_profile:
        cmd.append("--stage_profile")
    if args.no_flops:
        cmd.append("--no_flops")
    if args.sample_grid and kind == "ours":
        cmd.append("--sample_grid")
    # Ours runs on the malloc the CLI re-executes itself with (tf_biggan/malloc.py); the peer on
    # --peer_malloc (default: glibc's, as BigGAN-PyTorch ships).
    setting = os.environ.get(malloc.ENV, malloc.DEFAULT) if kind == "ours" else args.peer_malloc
    env = malloc.preload_environ(dict(os.environ, PYTHONPATH=REPO, **{malloc.ENV: setting}))
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)  # stages: stderr
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{kind} worker failed ({proc.returncode}); its stderr is above")
    result = json.loads(lines[-1][len("RESULT "):])
    result["load_average"] = os.getloadavg()
    return result


def show(kind: str, r: dict) -> None:
    stages = "  ".join(f"{k} {v['seconds']:.1f}s/{v['peak_gb']:.2f}GiB" for k, v in r["stages"].items())
    extra = ""
    if "gflops_per_iteration" in r:
        extra = (f", {r['gflops_per_iteration']:.1f} GFLOP/iteration, {100 * r['fraction_of_peak']:.1f}% of a "
                 f"{r['matmul_peak_gflops']:.0f} GFLOP/s matmul peak")
    print(f"[{kind}, {r.get('malloc', '?')}] {r['seconds_per_iteration']:.2f} s/iteration ({r['images_per_sec']:.2f} img/s), peak "
          f"{r['peak_gb']:.2f} GiB, start to first iteration {r['start_to_first_iteration']:.1f} s{extra}; "
          f"load {r['load_average'][0]:.1f}\n    {stages}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="both", choices=["biggan_128", "default", "both"])
    parser.add_argument("--overrides", default="", help="hparams overrides for ours, e.g. train.jit_compile=true")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="alternating ours/peer rounds")
    parser.add_argument("--stage_profile", action="store_true", help="peak RSS of D step, G step, EMA alone")
    parser.add_argument("--sample_grid", action="store_true", help="also the training sample grid's peak")
    parser.add_argument("--no_flops", action="store_true")
    parser.add_argument("--peer_dir", default="", help="a BigGAN-PyTorch checkout (times its iteration too)")
    parser.add_argument("--peer_python", default=sys.executable, help="a python that imports torch")
    parser.add_argument("--peer_malloc", default="system",
                        help="the peer's malloc, as TF_BIGGAN_MALLOC spells it (ours: TF_BIGGAN_MALLOC, default system)")
    parser.add_argument("--json", default="", help="also write all results here")
    parser.add_argument("--_worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        result = (ours_worker if args._worker == "ours" else peer_worker)(args)
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    model = ""
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"[bench] {platform.machine()} {model}, {os.cpu_count()} cores", flush=True)
    results = {"machine": model, "cores": os.cpu_count(), "runs": []}
    for config in (["biggan_128", "default"] if args.config == "both" else [args.config]):
        args.config_now = config
        with_peer = bool(args.peer_dir) and config == "biggan_128"
        ours, peer = [], []
        for _ in range(args.rounds if with_peer else 1):
            ours.append(run_worker("ours", args, sys.executable))
            show(f"ours {config}", ours[-1])
            results["runs"].append({"kind": "ours", "config": config, **ours[-1]})
            if with_peer:
                peer.append(run_worker("peer", args, args.peer_python))
                show("BigGAN-PyTorch", peer[-1])
                results["runs"].append({"kind": "peer", "config": config, **peer[-1]})
        if with_peer:
            med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
            ratios = {"iteration_speedup": med(peer, "seconds_per_iteration") / med(ours, "seconds_per_iteration"),
                      "peak_memory_ratio": med(ours, "peak_gb") / med(peer, "peak_gb"),
                      "start_to_first_ratio": med(ours, "start_to_first_iteration")
                      / med(peer, "start_to_first_iteration")}
            results["ratios"] = ratios
            print(f"[bench] ours vs BigGAN-PyTorch (medians of {len(ours)} alternating rounds): iteration "
                  f"{ratios['iteration_speedup']:.2f}x faster, peak memory {ratios['peak_memory_ratio']:.2f}x, "
                  f"start to first iteration {ratios['start_to_first_ratio']:.2f}x", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
