"""Images as people look at them: the ONE [-1, 1] -> uint8 conversion and the ONE grid layout.

`to_uint8` is how every model output becomes pixels (grids, JPEG shards, PNGs): x -> (x + 1) * 127.5,
rounded half to even (like numpy.round and the input pipeline's `preprocess.quantize`), clipped to
[0, 255]; it inverts the pipeline's `x / 127.5 - 1` exactly on every uint8 value.

One layout for every PNG the project writes: cells separated by a mid-grey gap so that
dark-background images (digits) do not run into each other, small images upscaled by nearest
neighbour so a 16 px sample is visible.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import tensorflow as tf

GRID_GAP = 2  # pixels between grid cells


def to_uint8(images):
    """float images in [-1, 1] (numpy or tf) -> uint8 in [0, 255]; numpy in, numpy out."""
    x = tf.cast(tf.clip_by_value(tf.round((tf.cast(images, tf.float32) + 1.0) * 127.5), 0.0, 255.0), tf.uint8)
    return x if isinstance(images, (tf.Tensor, tf.Variable)) else x.numpy()


def png_bytes(image) -> bytes:
    """uint8 [H, W, C] (or float in [-1, 1], converted by `to_uint8`) -> PNG file bytes
    (write them with `tf_biggan.atomic.write_bytes`)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = to_uint8(image)
    return tf.io.encode_png(image).numpy()


def upscale_factor(height: int) -> int:
    """Small images (16 px digits) are hard to see: nearest-neighbour upscale to >= 64 px."""
    return max(1, 64 // int(height))


def tile(images: np.ndarray, scale: Optional[int] = None, gap: int = GRID_GAP) -> np.ndarray:
    """float [rows, cols, H, W, C] in [-1, 1] -> uint8 grid [rows*H*s + (rows-1)*gap,
    cols*W*s + (cols-1)*gap, 3] (s = scale, default `upscale_factor(H)`), cells separated by
    `gap` mid-grey pixels so that dark-background images (digits) do not run into each other."""
    images = np.asarray(images, np.float32)
    rows, cols, h, w, c = images.shape
    if c == 1:
        images = np.repeat(images, 3, axis=-1)
    s = upscale_factor(h) if scale is None else int(scale)
    pixels = to_uint8(images)
    pixels = np.repeat(np.repeat(pixels, s, 2), s, 3)
    ch, cw = h * s, w * s
    grid = np.full((rows * ch + (rows - 1) * gap, cols * cw + (cols - 1) * gap, 3), 128, np.uint8)
    for r in range(rows):
        for col in range(cols):
            top, left = r * (ch + gap), col * (cw + gap)
            grid[top:top + ch, left:left + cw] = pixels[r, col]
    return grid


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed): the one way figures are drawn."""
    import matplotlib

    matplotlib.use("Agg")  # safe before pyplot's first import
    import matplotlib.pyplot as plt

    return plt


def write_figure(fig, path: str) -> None:
    """A matplotlib figure as a PNG at `path`, written atomically; the figure is closed."""
    import io

    from tf_biggan import atomic

    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    atomic.write_bytes(path, buffer.getvalue())
