"""Input-pipeline throughput: decode + crop + area-resize images/s per CPU core, ImageNet layout.

Makes its own data: `--images` JPEGs of ImageNet-like size (500x375 landscape and 375x500
portrait, quality 90, smooth colour fields plus grain so the files are ImageNet-sized, ~105 KB),
written as ImageNet-layout TFRecord shards with `tfrecord.write_shard`. Then it runs the real
pipeline (`pipeline.make_dataset`, training=True: interleave, bad-record checks, shuffle, flip,
[-1, 1], batching) at each resolution with tf.data limited to one thread
(`threading.private_threadpool_size = 1`, `max_intra_op_parallelism = 1`). The per-core figure
is images per CPU-second of the whole process (time.process_time), which stays meaningful on a
machine shared with other jobs; wall-clock images/s is printed beside it. Divide what one chip
consumes (global batch x D steps per G step x steps/s / chips) by it to size the input hosts.

    python benchmarks/bench_input.py [--seconds 4] [--images 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_jpegs(count: int, seed: int = 0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        w, h = (500, 375) if i % 4 else (375, 500)  # a quarter portrait, like ImageNet
        field = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(field).resize((w, h), Image.BICUBIC), np.float32)
        image += rng.normal(0, 25, image.shape)  # grain: ~105 KB per file, ImageNet averages ~110 KB
        buf = io.BytesIO()
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        out.append((buf.getvalue(), h, w))
    return out


def write_data(directory: str, count: int, shards: int = 4) -> str:
    from tf_biggan.data import tfrecord

    jpegs = make_jpegs(count)
    for s in range(shards):
        tfrecord.write_shard(
            tfrecord.shard_path(os.path.join(directory, "train"), s, shards),
            (tfrecord.make_example(data, i % 1000, height=h, width=w, synset=f"n{i % 1000:08d}")
             for i, (data, h, w) in enumerate(jpegs) if i % shards == s))
    mean_kb = np.mean([len(d) for d, _, _ in jpegs]) / 1024
    return os.path.join(directory, "train-*"), mean_kb


def measure(pattern: str, resolution: int, seconds: float, threads: int, batch: int = 64) -> float:
    import tensorflow as tf

    from tf_biggan.config import DataConfig
    from tf_biggan.data import pipeline

    cfg = DataConfig(kind="tfrecord", pattern=pattern, num_classes=1000, random_flip=True,
                     shuffle_buffer=256)
    ds = pipeline.make_dataset(cfg, resolution, batch, training=True)
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    ds = ds.with_options(options)
    it = iter(ds)
    for _ in range(3):  # warm up: open files, fill the shuffle buffer, autotune
        next(it)
    count, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        images, _ = next(it)
        count += int(images.shape[0])
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return count / wall, count / cpu


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per resolution")
    parser.add_argument("--images", type=int, default=256, help="distinct JPEGs to make")
    parser.add_argument("--threads", type=int, default=1, help="tf.data threads (1 = per core)")
    parser.add_argument("--resolutions", default="128,256")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with tempfile.TemporaryDirectory() as tmp:
        pattern, mean_kb = write_data(tmp, args.images)
        results = {}
        for res in [int(r) for r in args.resolutions.split(",")]:
            wall_rate, cpu_rate = measure(pattern, res, args.seconds, args.threads)
            results[res] = cpu_rate
            print(f"{res:>4} px: {wall_rate:8.1f} images/s wall on {args.threads} tf.data thread(s); "
                  f"{cpu_rate:8.1f} images per CPU-second (= per core)")
    print(json.dumps({"jpeg": "500x375 / 375x500, q90", "mean_jpeg_kb": round(float(mean_kb), 1),
                      "threads": args.threads,
                      "images_per_sec_per_core": {str(k): round(v, 1) for k, v in results.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
