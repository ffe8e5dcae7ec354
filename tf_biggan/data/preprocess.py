"""The paper's preprocessing: a central square crop along the long edge, then area resampling.

BigGAN, Appendix C: "We preprocess data by cropping along the long edge and rescaling to a
given resolution with area resampling." Concretely, for an image of H x W pixels:

1. crop a centred square of side min(H, W): the long edge loses (max - min) // 2 pixels at the
   start and the rest at the end (the same offsets as `tf.image.resize_with_crop_or_pad`);
2. resize the square to `resolution` x `resolution` with area resampling: each output pixel is the
   mean of the input pixels under its footprint, partly covered pixels weighted by the covered
   fraction (`tf.image.resize(method="area")`, TF's ResizeArea kernel). When the crop is smaller
   than the resolution this is pixel replication;
3. round to uint8, as a stored dataset would be (BigGAN-PyTorch keeps its resized ImageNet as uint8),
   so that cached and uncached pipelines give bit-identical images;
4. optionally flip horizontally (off by default, as in the paper), with a stateless seed so that a
   run is reproducible whatever the parallelism;
5. map to float32 in [-1, 1] for the models: x / 127.5 - 1.

JPEGs are decoded with the accurate integer DCT (`dct_method="INTEGER_ACCURATE"`, libjpeg's ISLOW),
which gives the same pixels as PIL; TF's default fast DCT differs by a few levels and saves only
~2%. The whole JPEG is decoded, then cropped: `decode_and_crop_jpeg` was no faster on ImageNet-
sized images and its pixels at the window edge differ (by up to 32 levels: chroma upsampling
treats the window edge as the image edge).
"""

from __future__ import annotations

import tensorflow as tf

JPEG_DCT_METHOD = "INTEGER_ACCURATE"


def crop_window(height, width):
    """Returns (offset_y, offset_x, side) of the centred square crop along the long edge."""
    side = tf.minimum(height, width)
    return (height - side) // 2, (width - side) // 2, side


def crop_long_edge(image: tf.Tensor) -> tf.Tensor:
    """Central square crop of an [H, W, C] image along its long edge."""
    shape = tf.shape(image)
    offset_y, offset_x, side = crop_window(shape[0], shape[1])
    return image[offset_y:offset_y + side, offset_x:offset_x + side]


def area_resize(image: tf.Tensor, resolution: int) -> tf.Tensor:
    """Area resampling of an [H, W, C] image to [resolution, resolution, C] float32 (input scale)."""
    return tf.image.resize(image, [resolution, resolution], method=tf.image.ResizeMethod.AREA)


def quantize(image: tf.Tensor) -> tf.Tensor:
    """Rounds a float image in [0, 255] to uint8 (half to even, like numpy.round)."""
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def crop_and_resize(image: tf.Tensor, resolution: int) -> tf.Tensor:
    """Decoded [H, W, C] image (uint8) -> cropped, area-resized [resolution, resolution, C] uint8."""
    out = quantize(area_resize(crop_long_edge(image), resolution))
    out.set_shape([resolution, resolution, image.shape[-1]])
    return out


def decode_jpeg_crop_and_resize(encoded: tf.Tensor, resolution: int) -> tf.Tensor:
    """JPEG bytes -> [resolution, resolution, 3] uint8.

    Raises InvalidArgumentError (at run time) for data that is not a decodable JPEG; callers that
    must survive bad records check `tf.io.is_jpeg` first and catch the rest with `ignore_errors`.
    """
    image = tf.io.decode_jpeg(encoded, channels=3, dct_method=JPEG_DCT_METHOD)
    return crop_and_resize(image, resolution)


def decode_image_crop_and_resize(encoded: tf.Tensor, resolution: int) -> tf.Tensor:
    """Any image bytes tf.io.decode_image reads (JPEG fast path; PNG, GIF, BMP) -> uint8 RGB."""
    def other():
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        return crop_and_resize(image, resolution)

    return tf.cond(tf.io.is_jpeg(encoded), lambda: decode_jpeg_crop_and_resize(encoded, resolution), other)


def random_flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Horizontal flip with probability 1/2, decided by a stateless `seed` (shape [2])."""
    return tf.image.stateless_random_flip_left_right(image, seed)


def to_model_range(image: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0
