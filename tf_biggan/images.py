"""Image grids as people look at them: samples, interpolations, neighbours (Figures 4, 8-14).

One layout for every PNG the project writes: cells separated by a mid-grey gap so that
dark-background images (digits) do not run into each other, small images upscaled by nearest
neighbour so a 16 px sample is visible.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

GRID_GAP = 2  # pixels between grid cells


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
    pixels = np.clip((images + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    pixels = np.repeat(np.repeat(pixels, s, 2), s, 3)
    ch, cw = h * s, w * s
    grid = np.full((rows * ch + (rows - 1) * gap, cols * cw + (cols - 1) * gap, 3), 128, np.uint8)
    for r in range(rows):
        for col in range(cols):
            top, left = r * (ch + gap), col * (cw + gap)
            grid[top:top + ch, left:left + cw] = pixels[r, col]
    return grid
