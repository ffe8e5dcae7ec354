"""The paper's preprocessing (crop along the long edge, area resampling) against numpy / PIL.

The reference for area resampling is computed here in numpy from its definition: output pixel i
along an axis of n_in -> n_out pixels averages the input over [i * s, (i + 1) * s), s = n_in / n_out,
each input pixel j weighted by the length of [j, j + 1) inside that interval. It is separable,
so the 2-D reference is A_h @ image @ A_w^T. TF's ResizeArea computes exactly this (float32:
agreement to ~1e-4 of 255). PIL's BOX filter is NOT this operation for non-integer factors: it
gives whole input pixels weight 1 if their centre falls inside the footprint (up to ~70 levels
apart from area resampling on noise for 375 -> 128), so PIL serves as a reference only for integer
factors, where both are plain block means.
"""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tf_biggan.data import preprocess
from tf_biggan.images import to_uint8


def area_matrix(n_in: int, n_out: int) -> np.ndarray:
    s = n_in / n_out
    lo = np.arange(n_out)[:, None] * s
    hi = lo + s
    j = np.arange(n_in)[None, :]
    return np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None) / s


def reference_crop_resize(image: np.ndarray, res: int) -> np.ndarray:
    """numpy: centred square crop along the long edge, then exact area resampling (float64)."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top:top + side, left:left + side].astype(np.float64)
    a = area_matrix(side, res)
    return np.stack([a @ square[..., c] @ a.T for c in range(square.shape[-1])], axis=-1)


def noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("h,w,offset", [(375, 500, (0, 62)), (500, 375, (62, 0)), (37, 50, (0, 6)),
                                        (64, 64, (0, 0)), (10, 3, (3, 0))])
def test_crop_window_is_centred_on_the_long_edge(h, w, offset):
    oy, ox, side = (int(v) for v in preprocess.crop_window(tf.constant(h), tf.constant(w)))
    assert (oy, ox) == offset and side == min(h, w)
    crop = preprocess.crop_long_edge(tf.constant(noise(h, w))).numpy()
    np.testing.assert_array_equal(crop, noise(h, w)[oy:oy + side, ox:ox + side])


@pytest.mark.parametrize("h,w,res", [(375, 500, 128), (500, 375, 256), (37, 50, 16), (100, 80, 7),
                                     (9, 12, 32)])
def test_area_resize_matches_numpy_definition(h, w, res):
    image = noise(h, w, seed=h * w)
    got = preprocess.area_resize(preprocess.crop_long_edge(tf.constant(image)), res).numpy()
    ref = reference_crop_resize(image, res)
    assert got.shape == (res, res, 3)
    np.testing.assert_allclose(got, ref, atol=1e-3, rtol=0)
    # Rounded to uint8 (what the pipeline keeps): identical on these images; a float32 value within
    # 1e-4 of a .5 could round the other way, which would show as a difference of 1.
    out = preprocess.crop_and_resize(tf.constant(image), res).numpy()
    assert out.dtype == np.uint8
    assert np.abs(out.astype(int) - np.round(ref)).max() <= 1
    assert np.mean(out != np.round(ref)) < 1e-3


@pytest.mark.parametrize("side,res", [(512, 128), (64, 16), (96, 32)])
def test_area_resize_matches_pil_box_for_integer_factors(side, res):
    image = noise(side, side, seed=side)
    got = preprocess.area_resize(tf.constant(image), res).numpy()
    pil = np.stack([np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode="F")
                               .resize((res, res), Image.BOX)) for c in range(3)], -1)
    np.testing.assert_allclose(got, pil, atol=1e-3, rtol=0)


def test_upsampling_is_pixel_replication():
    image = noise(8, 8)
    got = preprocess.crop_and_resize(tf.constant(image), 16).numpy()
    np.testing.assert_array_equal(got, image.repeat(2, axis=0).repeat(2, axis=1))


def _jpeg(image, quality=90):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.mark.parametrize("h,w,res", [(75, 100, 32), (100, 75, 16), (50, 50, 64)])
def test_jpeg_path_matches_pil_decode_and_numpy(h, w, res):
    # Smooth image + noise so JPEG keeps structure; decoded by PIL (libjpeg ISLOW), cropped and
    # area-resized in numpy: the pipeline's decode of the crop window only must agree.
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([yy * 255 // h, xx * 255 // w, (yy + xx) % 256], -1).astype(np.uint8)
    image = np.clip(image + noise(h, w) // 8, 0, 255).astype(np.uint8)
    data = _jpeg(image)
    decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    ref = np.round(reference_crop_resize(decoded, res))
    got = preprocess.decode_jpeg_crop_and_resize(tf.constant(data), res).numpy()
    assert np.abs(got.astype(int) - ref).max() <= 1
    assert np.mean(got != ref) < 1e-3


def test_decode_image_reads_png_and_greyscale():
    image = noise(30, 20)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    got = preprocess.decode_image_crop_and_resize(tf.constant(buf.getvalue()), 10).numpy()
    np.testing.assert_array_equal(got, np.round(reference_crop_resize(image, 10)).astype(np.uint8))
    grey = noise(20, 20)[..., 0]
    buf = io.BytesIO()
    Image.fromarray(grey).save(buf, format="PNG")
    got = preprocess.decode_image_crop_and_resize(tf.constant(buf.getvalue()), 20).numpy()
    np.testing.assert_array_equal(got, np.repeat(grey[..., None], 3, -1))


def test_random_flip_is_stateless_and_a_mirror():
    image = tf.constant(noise(6, 6))
    flips = []
    for i in range(40):
        a = preprocess.random_flip(image, tf.constant([7, i], tf.int64)).numpy()
        b = preprocess.random_flip(image, tf.constant([7, i], tf.int64)).numpy()
        np.testing.assert_array_equal(a, b)  # same seed, same decision
        flipped = np.array_equal(a, image.numpy()[:, ::-1])
        assert flipped or np.array_equal(a, image.numpy())
        flips.append(flipped)
    assert 8 < sum(flips) < 32  # both outcomes, about half each (binomial(40, 1/2))


def test_model_range_round_trip():
    u = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    x = preprocess.to_model_range(tf.constant(u)).numpy()
    assert x.dtype == np.float32 and x.min() == -1.0 and x.max() == 1.0
    np.testing.assert_array_equal(to_uint8(x), u)  # the one inverse conversion (tf_biggan.images)
