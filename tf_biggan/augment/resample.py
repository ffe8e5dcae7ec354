"""Applying one affine transform per image without the pixel-grid artefacts (seed 003, Appendix C.5.2).

"Prior to applying the geometric transformations, the images are reflection padded and scaled to
double resolution (and conversely, cropped and downscaled afterwards)." Here:

1. reflection padding and 2x upsampling with the sym6 wavelet low-pass filter are ONE linear map per
   axis (a banded [2(n + 2m), n] matrix), so they run as two small matmuls;
2. the inverse affine matrix of each sample (output pixel -> input pixel, centred coordinates) is
   resampled bilinearly, reflecting whatever falls beyond the padded image. This is four gathers
   rather than ImageProjectiveTransformV3: TF's registered gradient of that op warps the incoming
   gradient by the INVERSE transform, which is not the adjoint of bilinear resampling (wrong under
   scaling and rotation, and at the borders, where it reflects gradient into pixels never read);
   the gather's gradient is the exact adjoint (test_augment checks it against finite differences);
3. 2x downsampling with the time-reversed filter and the crop are again one matrix per axis.

The up filter h and the down filter reversed(h) together are the zero-phase h * reversed(h): an
identity transform returns the image low-passed by it (not shifted), which is why the pipeline
returns untouched images, bit for bit, for every sample whose transform is the identity.

Coordinates: pixel i of an axis of length n has its centre at c = i - (n - 1) / 2; upsampled
sample j of the padded image sits at original-pixel position j / 2 - PHASE - m (PHASE ~ 0.45).
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

# Low-pass decomposition filter of the Symlet-6 wavelet (12 taps; the filter of the reference ADA
# implementation, Karras et al.), normalised below to unit DC gain.
SYM6 = np.array([0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
                 0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
                 -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148])
TAPS = len(SYM6)
# Upsampled samples kept on each side of the output crop so the down filter has its support.
FILTER_MARGIN = TAPS // 2
# sym6 is only nearly symmetric: its centre of mass is tap 5.098, not 5.5. Fine sample j sits at
# original-pixel position j / 2 - PHASE (PHASE = 1/4 for a symmetric filter); taking the true centre
# keeps mirror images (x-flip, 90-degree rotations) unshifted. Up-then-down stays the identity
# (orthogonal wavelet: sum_t h[t] h[t + 2k] = delta_k) whatever PHASE is.
PHASE = (TAPS // 2 - float(np.sum(np.arange(TAPS) * SYM6) / SYM6.sum())) / 2.0


def _reflect(index: int, n: int) -> int:
    """Half-sample symmetric reflection (d c b a | a b c d | d c b a), as the transform's fill."""
    period = 2 * n
    index %= period
    return index if index < n else period - 1 - index


@functools.lru_cache(maxsize=None)
def up_matrix(n: int, pad: int) -> np.ndarray:
    """[2 (n + 2 pad), n]: reflection padding by `pad`, then 2x upsampling with sym6 (gain 2)."""
    h = SYM6 / SYM6.sum()
    size = n + 2 * pad
    pad_matrix = np.zeros((size, n))
    for i in range(size):
        pad_matrix[i, _reflect(i - pad, n)] = 1.0
    # Zero insertion puts padded sample k at upsampled index 2k; output j = sum_t h[t] z[j + t - 6]
    # has its centre of mass at z = j - 2 PHASE: position j / 2 - PHASE.
    up = np.zeros((2 * size, size))
    for j in range(2 * size):
        for t in range(TAPS):
            z = j + t - TAPS // 2
            if z % 2 == 0 and 0 <= z // 2 < size:
                up[j, z // 2] += 2.0 * h[t]
    return (up @ pad_matrix).astype(np.float32)


@functools.lru_cache(maxsize=None)
def down_matrix(n: int) -> np.ndarray:
    """[n, 2 n + 2 FILTER_MARGIN]: 2x downsampling of the fine output grid with reversed(sym6)."""
    g = (SYM6 / SYM6.sum())[::-1]
    fine = 2 * n + 2 * FILTER_MARGIN
    down = np.zeros((n, fine))
    for i in range(n):
        for t in range(TAPS):
            # Fine sample v sits at position (v - FILTER_MARGIN) / 2 - PHASE; reversed(h) has its
            # centre of mass at fine offset 2 PHASE after 2i: position i.
            v = FILTER_MARGIN + 2 * i + t - (TAPS // 2 - 1)
            down[i, v] += g[t]
    return down.astype(np.float32)


def _axis_maps(n: int, pad: int):
    """(scale, offset) of fine-output index -> centred coordinate, and centred -> upsampled index."""
    centre = (n - 1) / 2.0
    out_offset = -FILTER_MARGIN / 2.0 - PHASE - centre  # c = v / 2 + out_offset
    in_offset = 2.0 * (pad + centre + PHASE)  # j = 2 c + in_offset
    return out_offset, in_offset


def default_pad(n: int) -> int:
    """Static reflection padding: a quarter of the size plus the filter's reach (the transform's own
    reflection covers the rest; a static size keeps shapes fixed for XLA / TPU)."""
    return min(n - 1, n // 4 + TAPS // 2)


def _reflect_index(index, n: int):
    """Half-sample symmetric reflection of integer indices into [0, n)."""
    r = tf.math.floormod(index, 2 * n)
    return tf.where(r >= n, 2 * n - 1 - r, r)


def bilinear_sample(images, m, out_h: int, out_w: int):
    """out[b, v, u] = images[b] bilinearly read at (x, y) = m[b] @ (u, v, 1), (x = column), with the
    image reflected beyond its borders. images [b, h, w, c] float32, m [b, 3, 3] (affine rows)."""
    _, h, w, c = images.shape
    u = tf.range(out_w, dtype=tf.float32)
    v = tf.range(out_h, dtype=tf.float32)
    x = m[:, 0, 0, None, None] * u[None, None, :] + m[:, 0, 1, None, None] * v[None, :, None] + m[:, 0, 2, None, None]
    y = m[:, 1, 0, None, None] * u[None, None, :] + m[:, 1, 1, None, None] * v[None, :, None] + m[:, 1, 2, None, None]
    x0, y0 = tf.floor(x), tf.floor(y)
    fx, fy = (x - x0)[..., None], (y - y0)[..., None]
    x0, y0 = tf.cast(x0, tf.int32), tf.cast(y0, tf.int32)
    xs = (_reflect_index(x0, w), _reflect_index(x0 + 1, w))
    ys = (_reflect_index(y0, h), _reflect_index(y0 + 1, h))
    flat = tf.reshape(images, [-1, h * w, c])

    def read(yi, xi):
        return tf.reshape(tf.gather(flat, tf.reshape(yi * w + xi, [-1, out_h * out_w]), batch_dims=1),
                          [-1, out_h, out_w, c])
    top = read(ys[0], xs[0]) * (1.0 - fx) + read(ys[0], xs[1]) * fx
    bottom = read(ys[1], xs[0]) * (1.0 - fx) + read(ys[1], xs[1]) * fx
    return top * (1.0 - fy) + bottom * fy


def affine_resample(images, g_inv, pad: int = None):
    """Images [b, h, w, c] float32 resampled through the inverse affine matrices g_inv [b, 3, 3].

    g_inv maps output centred coordinates (x = column, y = row, 1) to input centred coordinates.
    """
    _, height, width, _ = images.shape
    pad_h = default_pad(height) if pad is None else pad
    pad_w = default_pad(width) if pad is None else pad
    up_h = tf.constant(up_matrix(height, pad_h))
    up_w = tf.constant(up_matrix(width, pad_w))
    up = tf.einsum("ih,bhwc->biwc", up_h, images)
    up = tf.einsum("jw,biwc->bijc", up_w, up)

    out_x, in_x = _axis_maps(width, pad_w)
    out_y, in_y = _axis_maps(height, pad_h)
    g_inv = tf.cast(g_inv, tf.float32)
    fine_to_centred = tf.constant([[0.5, 0.0, out_x], [0.0, 0.5, out_y], [0.0, 0.0, 1.0]], tf.float32)
    centred_to_up = tf.constant([[2.0, 0.0, in_x], [0.0, 2.0, in_y], [0.0, 0.0, 1.0]], tf.float32)
    m = tf.einsum("ij,bjk,kl->bil", centred_to_up, g_inv, fine_to_centred)
    fine = bilinear_sample(up, m, 2 * height + 2 * FILTER_MARGIN, 2 * width + 2 * FILTER_MARGIN)
    down_h = tf.constant(down_matrix(height))
    down_w = tf.constant(down_matrix(width))
    out = tf.einsum("iv,bvuc->biuc", down_h, fine)
    return tf.einsum("ju,biuc->bijc", down_w, out)
