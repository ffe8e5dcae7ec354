"""CAS on the embedded default, and ResNet-50 training throughput on this machine.

    python3 benchmarks/bench_cas.py [--gan_dir=/work/runs/cas_gan] [--out=/tmp/bench_cas] [--skip_resnet50]

1. Digits (hparams/cas_digits.yaml): a classifier trained on the REAL training digits, scored on the
   held-out real digits (target >= 97% top-1), and one trained ONLY on synthetic digits of the trained
   embedded GAN in --gan_dir (`--mode=train` with the default hparams/digits.yaml), 300 per class
   (3,000 >= the 1,433 real training digits), untruncated (target >= 85%, aim 90%). Shards are
   synthesized into GAN_DIR/bench_cas_synthetic (reused when present).
2. ResNet-50 (keras.applications, hparams/cas_resnet50_v2-8.yaml in float32) at 224 px: training
   images/s at a small batch, the step's FLOPs counted analytically (2 x multiply-adds of every conv
   and dense layer forward, x3 for forward + backward: the usual 1 + 2 rule), the matmul peak of
   this machine measured in the same run (float32 2048^3 matmuls), the fraction of it the step
   reaches, and what the numbers imply for the 90-epoch, 1.28M-image v2-8 protocol.
Prints one JSON summary at the end (also OUT/bench_cas.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from machine import cpu_model  # noqa: E402
from tf_biggan import atomic  # noqa: E402
from tf_biggan.config import load_hparams  # noqa: E402

IMAGENET_TRAIN = 1281167
V2_8_PEAK_TFLOPS = 180.0  # Cloud TPU v2-8: 4 chips x 45 TFLOP/s (bf16 matmul), Google's published figure


def digits_cas(gan_dir: str, out: str) -> dict:
    from tf_biggan.cas import run_cas
    from tf_biggan.synthesis import synthesize as syn
    from tf_biggan.synthesis.generators import CheckpointSource

    hp = load_hparams("hparams/cas_digits.yaml")
    t = time.time()
    real = run_cas(hp, os.path.join(out, "real"), "digits:train", "digits:test")
    real_s = time.time() - t
    synthetic_dir = os.path.join(gan_dir, "bench_cas_synthetic")
    source = CheckpointSource(gan_dir)
    syn.synthesize(source, synthetic_dir, [300] * source.num_classes, num_shards=4, truncation=0.0, seed=0)
    t = time.time()
    synthetic = run_cas(hp, os.path.join(out, "synthetic"), f"synthetic:{synthetic_dir}/train-*", "digits:test")
    synthetic_s = time.time() - t
    return {"real": {"top1": real["top1"], "top5": real["top5"], "train_images": real["train_images"],
                     "seconds": real_s, "images_per_sec": real["images_per_sec"]},
            "synthetic_only": {"top1": synthetic["top1"], "top5": synthetic["top5"],
                               "train_images": synthetic["train_images"], "seconds": synthetic_s,
                               "gan_step": source.description.get("step")},
            "targets_met": {"real>=0.97": real["top1"] >= 0.97, "synthetic>=0.85": synthetic["top1"] >= 0.85}}


def conv_dense_flops(model) -> int:
    """Forward FLOPs (2 x multiply-adds) of the Conv2D and Dense layers of a built Keras model."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, oh, ow, _ = layer.output.shape
            total += 2 * oh * ow * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            total += 2 * cin * cout
    return int(total)


def matmul_peak(n: int = 2048, repeats: int = 10) -> float:
    """Best float32 matmul GFLOP/s of n x n x n products on this machine."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    f = tf.function(lambda x, y: tf.reduce_sum(tf.linalg.matmul(x, y)))
    f(a, b).numpy()
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).numpy()
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def resnet50_throughput(batch: int = 8, steps: int = 5) -> dict:
    from tf_biggan.cas.train import CasClassifier

    hp = load_hparams("hparams/cas_resnet50_v2-8.yaml")
    hp = dataclasses.replace(hp, cas=dataclasses.replace(hp.cas, batch_size=batch, dtype="float32"))
    clf = CasClassifier(hp, tf.distribute.get_strategy(), steps_per_epoch=IMAGENET_TRAIN // 1024)
    clf.optimizer.iterations.assign(5 * 1251)  # past warm-up: the peak rate (no effect on speed)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch, 224, 224, 3)).astype(np.float32)
    labels = rng.integers(0, 1000, size=batch).astype(np.int32)
    it = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
    clf.train_steps(it, tf.constant(1))  # trace + warm up
    t = time.perf_counter()
    clf.train_steps(it, tf.constant(steps))
    seconds = time.perf_counter() - t
    ips = batch * steps / seconds
    forward = conv_dense_flops(clf.model)
    step_flops = 3 * forward * batch
    return {"batch": batch, "steps": steps, "images_per_sec": ips, "forward_gflops_per_image": forward / 1e9,
            "train_gflops_per_image": 3 * forward / 1e9, "step_gflops": step_flops / 1e9,
            "achieved_gflops_per_sec": step_flops * steps / seconds / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gan_dir", default="/work/runs/cas_gan")
    parser.add_argument("--out", default="/tmp/bench_cas")
    parser.add_argument("--skip_digits", action="store_true")
    parser.add_argument("--skip_resnet50", action="store_true")
    args = parser.parse_args()
    result = {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average": os.getloadavg()}
    if not args.skip_digits:
        result["digits"] = digits_cas(args.gan_dir, args.out)
    if not args.skip_resnet50:
        peak = matmul_peak()
        r50 = resnet50_throughput()
        peak_after = matmul_peak()
        peak = max(peak, peak_after)
        r50["matmul_peak_gflops_per_sec"] = peak
        r50["fraction_of_matmul_peak"] = r50["achieved_gflops_per_sec"] / peak
        total_images = 90 * IMAGENET_TRAIN
        total_flops = total_images * r50["train_gflops_per_image"] * 1e9
        r50["v2_8_protocol"] = {
            "images": total_images, "total_pflops": total_flops / 1e15,
            "days_on_this_machine": total_images / r50["images_per_sec"] / 86400,
            "v2_8_images_per_sec_for_10_hours": total_images / 36000,
            "v2_8_fraction_of_peak_for_10_hours": total_flops / 36000 / (V2_8_PEAK_TFLOPS * 1e12),
        }
        result["resnet50_224"] = r50
    os.makedirs(args.out, exist_ok=True)
    atomic.write_json(os.path.join(args.out, "bench_cas.json"), result)
    print(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
