"""Benchmark of the trainer (paper Section 3 / Appendix C training procedure).

1. Trains the embedded default (hparams/digits.yaml) for its train.train_steps on this machine and
   times it (target: <= 10 minutes on 2 cores).
2. Labels 1,000 EMA-G samples (100 per class, z ~ N(0, I), standing statistics first, Appendix C.1)
   with the project's digit classifier trained on the REAL training digits only (the fixed held-out
   split is unseen by both GAN and classifier; the classifier's held-out accuracy is printed too)
   and prints the fraction labelled as the class asked for (target >= 90%).
3. Train-step throughput (images/s = global batch x steps / s, compilation excluded) for the
   embedded default and for BigGAN-128 (ch = 96, batch 4, random inputs), with the step's FLOPs and
   the achieved fraction of a float32 matmul peak measured in the same process.

FLOPs of a step are counted from measured forward FLOPs (tf.compat.v1.profiler on the forward
graphs of G and D, conv/matmul/elementwise as TF registers them) with the usual "backward = 2 x
forward" rule:
    k D steps: k x [G_f(B) + 3 D_f(2B)]      G step: 3 G_f(B) + 2 D_f(B)   (D: forward + input grads)

Run:  python benchmarks/bench_train.py [--model_dir DIR] [--skip_train] [--skip_biggan128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_biggan.config import DEFAULT_HPARAMS, load_hparams  # noqa: E402
from tf_biggan.images import tile  # noqa: E402
from tf_biggan.training.trainer import GANTrainer, prepare_model_dir  # noqa: E402


def forward_flops(fn, *specs) -> float:
    """FLOPs of one call of `fn` on inputs of `specs`, from TF's registered per-op statistics."""
    concrete = tf.function(fn).get_concrete_function(*specs)
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    info = tf.compat.v1.profiler.profile(graph=concrete.graph, options=opts)
    return float(info.total_float_ops)


def step_flops(trainer) -> dict:
    hp = trainer.hp
    b, r, dz = trainer.global_batch, hp.model.resolution, hp.model.dim_z
    z = tf.TensorSpec((b, dz), tf.float32)
    y = tf.TensorSpec((b,), tf.int32)
    g_f = forward_flops(lambda z, y: trainer.g((z, y), training=True), z, y)
    d_f = forward_flops(lambda x, y: trainer.d((x, y), training=True), tf.TensorSpec((b, r, r, 3), tf.float32), y)
    k = hp.train.disc_steps
    total = k * (g_f + 3 * 2 * d_f) + 3 * g_f + 2 * d_f
    return {"g_forward": g_f, "d_forward": d_f, "step": total}


def matmul_peak(n: int = 2048, reps: int = 10) -> float:
    """Achieved float32 FLOP/s of a large square matmul (the machine's practical peak)."""
    a = tf.random.normal((n, n))
    bm = tf.random.normal((n, n)) / n ** 0.5  # keeps the chained product's scale

    @tf.function
    def run():
        # A chain x <- x @ b: each product depends on the last, so grappler cannot merge the
        # repeated identical matmuls into one (an unrolled `acc += a @ b` was measured 10x too fast).
        x = a
        for _ in tf.range(reps):
            x = tf.matmul(x, bm)
        return tf.reduce_sum(x)

    run().numpy()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        run().numpy()
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 * reps / best


def throughput(trainer, steps: int) -> float:
    trainer.train_steps(1)  # compile
    t0 = time.perf_counter()
    trainer.train_steps(steps)
    return steps * trainer.global_batch / (time.perf_counter() - t0)


def random_data(hp):
    r, b, n = hp.model.resolution, hp.train.batch_size, hp.data.num_classes

    def fn(ctx):
        per = ctx.get_per_replica_batch_size(b)
        x = tf.random.stateless_uniform((per, r, r, 3), seed=(1, 2), minval=-1.0, maxval=1.0)
        y = tf.random.stateless_uniform((per,), seed=(3, 4), maxval=n, dtype=tf.int32)
        return tf.data.Dataset.from_tensors((x, y)).repeat()
    return fn


def class_samples(trainer, per_class: int = 100):
    """(images, labels): `per_class` EMA-G samples of every class, z ~ N(0, I) from fixed latents, after
    standing statistics (Appendix C.1); the samples bench_train and bench_augment score."""
    from tf_biggan.sampling.standing_stats import accumulate_standing_stats

    ev = trainer.hp.eval
    accumulate_standing_stats(trainer.ema_g, num_passes=ev.standing_stats_passes, batch_size=ev.standing_stats_batch,
                              seed=12345)
    n = trainer.hp.data.num_classes
    labels = np.repeat(np.arange(n, dtype=np.int32), per_class)
    z = tf.random.stateless_normal((len(labels), trainer.hp.model.dim_z), seed=(2024, 1))
    images = np.concatenate([trainer.ema_g((z[i:i + 100], labels[i:i + 100]), training=False).numpy()
                             for i in range(0, len(labels), 100)])
    return images, labels


def sample_accuracy(trainer, classifier, per_class: int = 100) -> float:
    images, labels = class_samples(trainer, per_class)
    return classifier.accuracy(images, labels), images


def digits_images(split: str, resolution: int):
    from tf_biggan.data.digits import digits_dataset

    xs, ys = [], []
    for ex in digits_dataset(split, resolution).batch(512):
        xs.append(ex["image"].numpy().astype(np.float32) / 127.5 - 1.0)
        ys.append(ex["labels"].numpy()[:, 0].astype(np.int32))
    return np.concatenate(xs), np.concatenate(ys)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", default=None, help="where the embedded-default run goes (default: a temp dir)")
    parser.add_argument("--hparams", default=DEFAULT_HPARAMS)
    parser.add_argument("--skip_train", action="store_true", help="resume/evaluate an existing --model_dir")
    parser.add_argument("--skip_biggan128", action="store_true")
    args = parser.parse_args()
    results = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, TF {tf.__version__}"}

    hp = load_hparams(args.hparams)
    model_dir = args.model_dir or tempfile.mkdtemp(prefix="bench_train_")
    prepare_model_dir(hp, model_dir)
    trainer = GANTrainer(hp, model_dir=model_dir)
    trainer.restore()
    t0 = time.time()
    if not args.skip_train:
        report = trainer.fit()
        results["train_minutes"] = (time.time() - t0) / 60.0
        results["train_steps"] = report["step"]
        results["default_images_per_sec_in_training"] = report["images_per_sec"]

    # Classifier on the real training digits only; the held-out split checks it.
    from tf_biggan.evaluation.features import train_classifier

    r = hp.model.resolution
    x_train, y_train = digits_images("train", r)
    x_test, y_test = digits_images("test", r)
    t1 = time.time()
    classifier = train_classifier(x_train, y_train, hp.data.num_classes, seed=0)
    results["classifier_heldout_accuracy"] = classifier.accuracy(x_test, y_test)
    results["classifier_seconds"] = time.time() - t1
    acc, images = sample_accuracy(trainer, classifier)
    results["ema_sample_class_accuracy"] = acc
    grid = tile(images.reshape(10, 100, r, r, 3)[:, :10])  # rows = classes 0-9
    tf.io.write_file(os.path.join(model_dir, "bench_samples.png"), tf.io.encode_png(grid))
    print(f"[bench] EMA-G samples labelled as their class: {100 * acc:.1f}% of 1000 "
          f"(classifier held-out accuracy {100 * results['classifier_heldout_accuracy']:.1f}%)", flush=True)

    peak = matmul_peak()
    results["matmul_peak_gflops"] = peak / 1e9
    print(f"[bench] float32 matmul peak: {peak / 1e9:.1f} GFLOP/s", flush=True)

    flops = step_flops(trainer)
    ips = throughput(trainer, 20)
    steps_per_sec = ips / trainer.global_batch
    results["default"] = {"batch": trainer.global_batch, "images_per_sec": ips, "step_gflops": flops["step"] / 1e9,
                          "g_forward_gflops": flops["g_forward"] / 1e9, "d_forward_gflops": flops["d_forward"] / 1e9,
                          "fraction_of_peak": flops["step"] * steps_per_sec / peak}
    print(f"[bench] embedded default: {ips:.1f} img/s, {flops['step'] / 1e9:.3f} GFLOP/step, "
          f"{100 * results['default']['fraction_of_peak']:.1f}% of matmul peak", flush=True)

    if not args.skip_biggan128:
        big = load_hparams("biggan_128", "train.batch_size=4,train.steps_per_loop=1")
        big_trainer = GANTrainer(big, dataset_fn=random_data(big), verbose=False)
        bflops = step_flops(big_trainer)
        bips = throughput(big_trainer, 2)
        results["biggan128"] = {"batch": 4, "ch": big.model.ch, "images_per_sec": bips,
                                "step_gflops": bflops["step"] / 1e9, "g_forward_gflops": bflops["g_forward"] / 1e9,
                                "d_forward_gflops": bflops["d_forward"] / 1e9,
                                "fraction_of_peak": bflops["step"] * bips / 4 / peak}
        print(f"[bench] BigGAN-128 ch={big.model.ch} batch 4: {bips:.2f} img/s, {bflops['step'] / 1e9:.1f} GFLOP/step, "
              f"{100 * results['biggan128']['fraction_of_peak']:.1f}% of matmul peak", flush=True)

    print(json.dumps(results, indent=2, sort_keys=True))
    with open(os.path.join(model_dir, "bench_train.json"), "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
