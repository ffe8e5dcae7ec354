"""Peak memory of gradient accumulation (train.d_accumulations / g_accumulations, training/step.py).

At BigGAN-128 ch 96 (hparams/biggan_128.yaml: 2 D steps, ortho reg on, fp32), one training iteration
with batch 8 x 4 accumulations (effective batch 32, every update averaging 4 micro-batches of 8)
against batch 8 and batch 32 without accumulation, all three in one run. Each configuration runs in
a FRESH subprocess on random in-memory images (bench_train.random_data: the input pipeline is not
measured) and reports the peak resident memory (VmHWM, reset between stages as
bench_memory_speed.py does) of
  first      trace, graph optimisation and the first iteration
  iteration  the next iteration alone (the steady state a long run sits in)
and its seconds. What accumulation promises: 8 x 4 within 10% of 8 x 1 (one micro-batch's
activations plus one gradient-sized sum) and well below 32 x 1.

Run:  nice python benchmarks/bench_accumulation.py [--configs 8x1,8x4,32x1] [--json out.json]
      [--overrides model.ch=32]   (a quicker look at a narrower model; the target is stated at ch 96)
Results: docs/results.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path[:0] = [REPO, HERE]

import workers  # noqa: E402
from bench_memory_speed import Stages, launch_worker, malloc  # noqa: E402  (no TensorFlow import)
from machine import cpu_model  # noqa: E402

CONFIGS = {"8x1": (8, 1), "8x4": (8, 4), "32x1": (32, 1)}  # name -> (batch_size, accumulations)


def worker(name: str, overrides: str = "") -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tf_biggan  # first, as in the CLI

    tf_biggan.configure_process()  # the CLI's process settings (allocator, Keras extras)

    from bench_train import random_data
    from tf_biggan.config import load_hparams
    from tf_biggan.training.trainer import GANTrainer

    stages = Stages()
    batch, k = CONFIGS[name]
    hp = load_hparams("biggan_128", f"train.batch_size={batch},train.d_accumulations={k},"
                                    f"train.g_accumulations={k},train.steps_per_loop=1"
                                    + (f",{overrides}" if overrides else ""))
    trainer = GANTrainer(hp, dataset_fn=random_data(hp), verbose=False, defer_init=True)
    stages.mark("build")
    trainer.train_steps(1)
    stages.mark("first")
    t = time.time()
    trainer.train_steps(1)
    stages.mark("iteration", time.time() - t)
    return {"config": name, "batch_size": batch, "accumulations": k, "effective_batch": batch * k,
            "stages": stages.rows, "malloc": malloc.active()}


def run(name: str, overrides: str = "") -> dict:
    return launch_worker([sys.executable, os.path.abspath(__file__), f"--_worker={name}", f"--overrides={overrides}"], name,
                         os.environ.get(malloc.ENV, malloc.DEFAULT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="8x1,8x4,32x1")
    parser.add_argument("--overrides", default="", help="more hparams overrides, e.g. model.ch=32 (a quick look)")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--_worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        workers.report(worker(args._worker, args.overrides))
        return 0
    results = {name: run(name, args.overrides) for name in args.configs.split(",")}
    report = {"machine": cpu_model(platform.processor() or "unknown"), "cores": os.cpu_count(),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"), "results": results}
    for name, r in results.items():
        s = r["stages"]
        print(f"{name:5s} (effective batch {r['effective_batch']:3d}): iteration peak "
              f"{s['iteration']['peak_gb']:.2f} GiB in {s['iteration']['seconds']:.1f} s; first iteration (with "
              f"trace) peak {s['first']['peak_gb']:.2f} GiB in {s['first']['seconds']:.1f} s; "
              f"load {r['load_average'][0]:.1f}")
    if {"8x1", "8x4", "32x1"} <= set(results):
        peak = {n: results[n]["stages"]["iteration"]["peak_gb"] for n in ("8x1", "8x4", "32x1")}
        print(f"8x4 / 8x1 = {peak['8x4'] / peak['8x1']:.3f} (acceptance: <= 1.10); "
              f"8x4 / 32x1 = {peak['8x4'] / peak['32x1']:.3f}")
        report["ratios"] = {"8x4_over_8x1": peak["8x4"] / peak["8x1"], "8x4_over_32x1": peak["8x4"] / peak["32x1"]}
    print(f"{report['machine']}, {report['cores']} cores, {report['date']}")
    if args.json:
        from tf_biggan.atomic import write_json

        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
