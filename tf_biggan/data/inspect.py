"""`tf-biggan --mode=inspect_data --hparams=... --model_dir=DIR`: look at what the GAN will see.

Writes, atomically (temp file + rename), into DIR:

    inspect_grid.png      up to 64 preprocessed training images (crop along the long edge, area
                          resize, flips if data.random_flip; as the trainer gets them), each with
                          its 0-based class id underneath
    inspect_report.json   count_per_class ({"0": n0, "1": n1, ...}, every class 0..num_classes-1,
                          0-based ids), images_counted, complete_pass, images_per_sec (the
                          evaluation-order pipeline, first batch excluded), skipped_records /
                          damaged_files (data.on_corrupt=skip), and what was read

The count reads the split once, stopped after `--inspect_images` images if that flag
exists (default 50,000; 0 = the whole split). A class with count 0, or counts shifted by one,
point at a wrong `data.num_classes` or a label convention mismatch.
"""

from __future__ import annotations

import dataclasses
import io
import os
import time

import numpy as np

from tf_biggan import atomic
from tf_biggan.errors import UserError
from tf_biggan.images import to_uint8
from tf_biggan.requests import InspectDataRequest

GRID_IMAGES = 64
DEFAULT_INSPECT_IMAGES = 50000
GRID_NAME = "inspect_grid.png"
REPORT_NAME = "inspect_report.json"


def image_grid(images: np.ndarray, labels: np.ndarray, columns: int = 8):
    """uint8 [N, R, R, 3] + labels -> a PIL image: cells of at least 64 px, class id under each."""
    from PIL import Image, ImageDraw, ImageFont

    n, res = images.shape[0], images.shape[1]
    scale = max(1, -(-64 // res))  # nearest-neighbour enlargement of small images
    cell, text_h, pad = res * scale, 14, 2
    rows = -(-n // columns)
    grid = Image.new("RGB", (columns * (cell + pad) + pad, rows * (cell + text_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for k in range(n):
        r, c = divmod(k, columns)
        x, y = pad + c * (cell + pad), pad + r * (cell + text_h + pad)
        tile = Image.fromarray(images[k]).resize((cell, cell), Image.NEAREST)
        grid.paste(tile, (x, y))
        draw.text((x + 2, y + cell + 1), str(int(labels[k])), fill=(0, 0, 0), font=font)
    return grid


def _source_description(data) -> dict:
    if data.kind == "tfrecord":
        return {"pattern": data.pattern}
    if data.kind == "tfds":
        return {"name": data.name, "split": data.split, "data_dir": data.data_dir}
    return {"split": data.split}


def run_inspect_data(hp, request: InspectDataRequest) -> dict:
    """Writes the grid and the report for `hp.data` at `hp.model.resolution`; returns the report."""
    import tensorflow as tf

    from tf_biggan.data import pipeline

    model_dir = request.model_dir
    limit = DEFAULT_INSPECT_IMAGES if request.inspect_images is None else request.inspect_images
    tf.io.gfile.makedirs(model_dir)  # gfile: MODEL_DIR may be gs://
    data, res = hp.data, hp.model.resolution

    with pipeline.data_errors():
        # A small shuffle buffer: the grid shows the preprocessing, not the mixing.
        grid_data = dataclasses.replace(data, shuffle_buffer=min(data.shuffle_buffer, 256))
        train_ds = pipeline.make_dataset(grid_data, res, GRID_IMAGES, training=True)
        first = next(iter(train_ds.take(1)), None)
        if first is None:
            raise UserError(f"{hp.source}: data.kind={data.kind} yielded no images "
                            f"({_source_description(data)}); every record was skipped or the split is empty")
        images, labels = first
        images = to_uint8(images.numpy())
        labels = labels.numpy()

        stats = pipeline.ReadStats()
        eval_ds = pipeline.make_dataset(data, res, 256, training=False, stats=stats)
        counts = np.zeros(data.num_classes, np.int64)
        counted, timed, start, end, complete = 0, 0, None, None, True
        batches = iter(eval_ds)
        for _, batch_labels in batches:
            batch_labels = batch_labels.numpy()
            kept = batch_labels[:limit - counted] if limit else batch_labels
            counts += np.bincount(kept, minlength=data.num_classes)[:data.num_classes]
            counted += len(kept)
            if start is None:
                start = time.perf_counter()  # after the first batch: files open, autotune warm
            else:
                timed += len(kept)
            end = time.perf_counter()
            if limit and counted >= limit:
                complete = len(kept) == len(batch_labels) and next(batches, None) is None
                break
    elapsed = (end - start) if start is not None else 0.0
    grid = image_grid(images, labels)
    png = io.BytesIO()
    grid.save(png, format="PNG")
    atomic.write_bytes(os.path.join(model_dir, GRID_NAME), png.getvalue())
    report = {
        "kind": data.kind,
        **_source_description(data),
        "resolution": res,
        "num_classes": data.num_classes,
        "images_counted": int(counted),
        "complete_pass": bool(complete),
        "count_per_class": {str(c): int(n) for c, n in enumerate(counts)},
        "images_per_sec": round(timed / elapsed, 1) if elapsed > 0 and timed else None,
        "cpu_count": os.cpu_count(),
        **stats.as_dict(),
        "grid": GRID_NAME,
        "grid_labels": [int(x) for x in labels],
    }
    atomic.write_json(os.path.join(model_dir, REPORT_NAME), report)
    print(f"inspect_data: {counted} images, {report['images_per_sec']} images/s; wrote "
          f"{os.path.join(model_dir, GRID_NAME)} and {REPORT_NAME}")
    return report
