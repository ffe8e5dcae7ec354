"""Synthesize throughput on this machine: images/s for generation and for JPEG encoding, separately.

CAS (Ravuri & Vinyals 2019, Appendix A.1) trains ResNet-50 on an ImageNet-sized synthetic set, about
1.28M images; this says how long `--mode=synthesize` takes to write one here. For each model:

  generate   EMA-G inference (random-initialised weights: throughput does not depend on training)
             at the given batch, z truncated at 1.0 as synthesize draws it, plus the [-1, 1] -> uint8
             conversion; the first (tracing) batch is not timed
  JPEG       tf.io.encode_jpeg at quality 95 of those images + the ImageNet-layout tf.train.Example
             (tfrecord.make_example, deterministic serialisation): what synthesize does per image
  end-to-end synthesize() into a temporary directory (shards, markers, manifest), wall clock

Models: the embedded default (hparams/digits.yaml: BigGAN, 16 px, ch 8) and BigGAN-deep-128 at full
width (hparams/biggan_deep_128.yaml: ch 128, 1000 classes, Table 7; building it takes a while).

    python benchmarks/bench_synthesize.py [--batches 5] [--deep_batch 8] [--skip_deep] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

from machine import cpu_model, load_average, usable_cores

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def machine() -> dict:
    import tensorflow as tf

    return {"nproc": usable_cores(), "cpu": cpu_model(platform.processor() or "unknown"),
            "tensorflow": tf.__version__, "load_average": load_average() if hasattr(os, "getloadavg") else None}


def bench_model(name: str, hparams: str, batch: int, batches: int, e2e_images: int) -> dict:
    import tensorflow as tf

    from tf_biggan.config import load_hparams
    from tf_biggan.synthesis import synthesize as synth
    from tf_biggan.synthesis.generators import GeneratorSource
    from tf_biggan.images import to_uint8
    from tf_biggan.data import tfrecord
    from tf_biggan.models import Generator

    hp = load_hparams(hparams)
    t0 = time.perf_counter()
    g = Generator(hp.model, hp.data.num_classes, name="ema_generator")
    g.build_for_input(2)
    build_s = time.perf_counter() - t0
    params = int(sum(np.prod(v.shape) for v in g.trainable_variables))
    source = GeneratorSource(g, {"kind": "benchmark", "hparams": hparams}, batch_size=batch)
    res = hp.model.resolution

    def one_batch(i):
        z = synth.shard_latents(i, batch, g.dim_z, 1.0, seed=0)
        labels = (np.arange(batch) * 7 + i) % hp.data.num_classes
        return to_uint8(source.generate(z, labels.astype(np.int32))), labels

    one_batch(0)  # trace
    gen_s, images = 0.0, []
    for i in range(batches):
        t = time.perf_counter()
        images.append(one_batch(i + 1))
        gen_s += time.perf_counter() - t
    n = batch * batches

    t = time.perf_counter()
    sizes = []
    for uint8, labels in images:
        for image, label in zip(uint8, labels):
            jpeg = tf.io.encode_jpeg(image, format="rgb", quality=95).numpy()
            sizes.append(len(jpeg))
            tfrecord.make_example(jpeg, int(label), height=res, width=res,
                                  filename="x.JPEG").SerializeToString(deterministic=True)
    enc_s = time.perf_counter() - t

    counts = [0] * hp.data.num_classes
    for k in range(e2e_images):
        counts[k % hp.data.num_classes] += 1
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        synth.synthesize(source, out, counts, num_shards=2, truncation=1.0, seed=0, log=lambda m: None)
        e2e_s = time.perf_counter() - t
    gen_ips, enc_ips, e2e_ips = n / gen_s, n / enc_s, e2e_images / e2e_s
    return {"model": name, "resolution": res, "ch": hp.model.ch, "g_params": params, "batch": batch,
            "images_timed": n, "build_s": build_s, "generate_ips": gen_ips, "jpeg_ips": enc_ips,
            "end_to_end_ips": e2e_ips, "end_to_end_images": e2e_images,
            "jpeg_kb": float(np.mean(sizes)) / 1024, "hours_per_1.28M": 1.28e6 / e2e_ips / 3600}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=5, help="timed batches per model")
    parser.add_argument("--digits_batch", type=int, default=100)
    parser.add_argument("--deep_batch", type=int, default=8)
    parser.add_argument("--skip_deep", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    info = machine()
    print(f"machine: {info['nproc']} CPU core(s) available, {info['cpu']}, TensorFlow {info['tensorflow']}, "
          f"load average {info['load_average']} (shared cores: figures are a lower bound)")
    rows = [bench_model("digits (embedded default)", "digits", args.digits_batch, args.batches,
                        e2e_images=2000)]
    if not args.skip_deep:
        rows.append(bench_model("BigGAN-deep-128", "biggan_deep_128", args.deep_batch, args.batches,
                                e2e_images=args.deep_batch * 2))
    header = (f"{'model':<27}{'px':>5}{'ch':>5}{'G params':>11}{'batch':>7}{'build s':>9}{'generate/s':>12}"
              f"{'JPEG/s':>10}{'end-to-end/s':>14}{'KB/img':>8}{'h per 1.28M':>13}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<27}{r['resolution']:>5}{r['ch']:>5}{r['g_params'] / 1e6:>10.1f}M{r['batch']:>7}"
              f"{r['build_s']:>9.1f}{r['generate_ips']:>12.1f}{r['jpeg_ips']:>10.1f}{r['end_to_end_ips']:>14.1f}"
              f"{r['jpeg_kb']:>8.2f}{r['hours_per_1.28M']:>13.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
