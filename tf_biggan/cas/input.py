"""The CAS input pipeline: the reference ResNet preprocessing on ImageNet-layout TFRecords / digits.

Training (tensorflow/tpu resnet_preprocessing.py, `cas.train_crop`):
  inception  a random box covering 8-100% of the image with aspect ratio 3/4-4/3
             (sample_distorted_bounding_box, 10 attempts; when none fits, the evaluation's
             central crop, as the reference), resized to image_size (bicubic, as the
             reference), random horizontal flip;
  pad_crop   He et al. 2016 CIFAR: pad `cas.pad` pixels (zeros), random image_size crop, flip;
  none       resized to image_size.
Evaluation: the central crop of `eval_crop_fraction` of the short side (224 / 256: the reference's
`CROP_PADDING = 32`), resized to image_size. Then (x / 255 - mean) / std per channel.

Order and resume: every source is shuffled (files, then a record buffer) and repeated; the sources
are interleaved by a per-epoch permutation of their used counts, so each epoch draws EXACTLY each
source's count (the mixture's proportions hold per epoch, not just on average). All randomness is
stateless from (cas.seed, the step the pipeline starts at): a run resumed at step s reseeds the
stream by s rather than replaying s batches (the reference's input restarts the same way after a
checkpoint restore), which keeps resuming cheap on ImageNet-size data.
"""

from __future__ import annotations

from typing import List, Optional

import numpy as np
import tensorflow as tf

from tf_biggan import seeds
from tf_biggan.data import digits, pipeline
from tf_biggan.cas.sources import Source
from tf_biggan.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE
RESIZE = "bicubic"  # resnet_preprocessing._resize_image (an identity at the same size, e.g. 16 px digits)
_plain = tf.autograph.experimental.do_not_convert


def _decode(encoded):
    return tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE")


def _digits_images(split: str, size: int) -> np.ndarray:
    """Real digits as uint8 [N, size, size, 3] exactly as the GAN saw them (data/digits.py)."""
    ds = digits.digits_dataset(split, size).map(lambda ex: ex["image"]).batch(4096)
    return np.concatenate([b.numpy() for b in ds])


def _records(source: Source, input_context, training: bool, seed: int, digits_size: int) -> tf.data.Dataset:
    """(uint8 image [h, w, 3], int32 label) of the used records of one source (digits at digits_size)."""
    if source.digits_split is not None:
        images = _digits_images(source.digits_split, digits_size)
        keep = source.kept
        ds = tf.data.Dataset.from_tensor_slices((images[keep], source.labels[keep].astype(np.int32)))
        if input_context is not None and input_context.num_input_pipelines > 1:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        return ds
    ids = list(range(len(source.files)))
    ids = pipeline.shard_for_host(ids, input_context, source.spec)
    paths = tf.constant([source.files[i] for i in ids])
    starts = tf.constant([int(source.offsets[i]) for i in ids], tf.int64)
    keep = tf.constant(source.kept)
    labels = tf.constant(source.labels.astype(np.int32))
    files = tf.data.Dataset.range(len(ids))
    if training:
        files = files.shuffle(len(ids), seed=seed, reshuffle_each_iteration=True)

    @_plain
    def read(fid):
        base = starts[fid]
        ds = tf.data.TFRecordDataset(paths[fid], buffer_size=8 << 20).enumerate()
        ds = ds.filter(_plain(lambda i, r: keep[base + i]))
        return ds.map(_plain(lambda i, r: (tf.io.parse_single_example(
            r, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})["image/encoded"], labels[base + i])))

    ds = files.interleave(read, cycle_length=min(16, len(ids)), num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.map(_plain(lambda e, y: (_decode(e), y)), num_parallel_calls=AUTOTUNE, deterministic=True)


def _normalise(image, cas):
    mean = tf.constant(cas.mean, tf.float32) * 255.0
    std = tf.constant(cas.std, tf.float32) * 255.0
    return (tf.cast(image, tf.float32) - mean) / std


def train_preprocess(image, key, cas):
    """uint8 [h, w, 3] -> float32 [S, S, 3], random crop + flip from the stateless `key` [2]."""
    size = cas.image_size
    k_crop, k_flip = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    if cas.train_crop == "inception":
        shape = tf.shape(image)
        begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape, bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=k_crop,
            min_object_covered=0.1, aspect_ratio_range=(3 / 4, 4 / 3), area_range=(0.08, 1.0),
            max_attempts=10, use_image_if_no_bounding_boxes=True)
        # No valid box in 10 attempts returns the whole image; the reference then takes the central
        # crop instead (resnet_preprocessing._decode_and_random_crop: `bad` -> _decode_and_center_crop).
        failed = tf.reduce_all(tf.equal(extent[:2], shape[:2]))
        crop = tf.cond(failed, lambda: _central_crop(image, cas.eval_crop_fraction),
                       lambda: tf.slice(image, begin, extent))
        image = tf.image.resize(crop, [size, size], method=RESIZE)
    elif cas.train_crop == "pad_crop":
        image = tf.image.resize(image, [size, size], method=RESIZE)
        image = tf.pad(tf.cast(image, tf.float32), [[cas.pad, cas.pad], [cas.pad, cas.pad], [0, 0]])
        image = tf.image.stateless_random_crop(image, [size, size, 3], seed=k_crop)
    else:
        image = tf.image.resize(image, [size, size], method=RESIZE)
    if cas.random_flip:
        image = tf.image.stateless_random_flip_left_right(image, k_flip)
    return _normalise(image, cas)


def _central_crop(image, fraction):
    """The square central crop of `fraction` of the short side, as resnet_preprocessing.
    _decode_and_center_crop: int(fraction x short side) pixels, offsets rounded up."""
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    side = tf.cast(tf.cast(tf.minimum(h, w), tf.float32) * fraction, tf.int32)
    return tf.image.crop_to_bounding_box(image, (h - side + 1) // 2, (w - side + 1) // 2, side, side)


def eval_preprocess(image, cas):
    """uint8 [h, w, 3] -> float32 [S, S, 3]: central crop of eval_crop_fraction of the short side."""
    image = _central_crop(image, cas.eval_crop_fraction)
    image = tf.image.resize(image, [cas.image_size, cas.image_size], method=RESIZE)
    return _normalise(image, cas)


def train_dataset(sources: List[Source], cas, global_batch: int, steps_per_epoch: int, start_step: int,
                  input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """Endless per-replica batches (float32 images, int32 labels) from `start_step` on."""
    used = [s for s in sources if s.count() > 0]
    base = seeds.int_seed("cas_data", cas.seed)
    host = input_context.input_pipeline_id if input_context else 0
    seed = (base * 1_000_003 + start_step * 131 + host) % (2 ** 31 - 1)  # reseeded by the start step
    streams = []
    for i, s in enumerate(used):
        ds = _records(s, input_context, training=True, seed=seed + i, digits_size=cas.image_size)
        ds = ds.shuffle(min(cas.shuffle_buffer, max(s.count(), 1)), seed=seed + 7919 * (i + 1),
                        reshuffle_each_iteration=True).repeat()
        streams.append(ds)
    if len(streams) == 1:
        ds = streams[0]
    else:
        counts = tf.constant(np.repeat(np.arange(len(used)), [s.count() for s in used]), tf.int64)
        start_epoch = start_step // steps_per_epoch

        def epoch_order(epoch):
            key = seeds.key("cas_data", cas.seed, epoch)
            return tf.data.Dataset.from_tensor_slices(tf.random.experimental.stateless_shuffle(counts, key))

        choice = tf.data.Dataset.range(start_epoch, 2 ** 62).flat_map(epoch_order)
        choice = choice.skip((start_step % steps_per_epoch) * global_batch)
        ds = tf.data.Dataset.choose_from_datasets(streams, choice)
    key = seeds.key("cas_data", cas.seed, 2 ** 40 + start_step * 64 + host)
    ds = ds.enumerate().map(
        _plain(lambda i, ex: (train_preprocess(ex[0], tf.stack([key[0], key[1] + i]), cas), ex[1])),
        num_parallel_calls=AUTOTUNE, deterministic=True)
    per_replica = input_context.get_per_replica_batch_size(global_batch) if input_context else global_batch
    return ds.batch(per_replica, drop_remainder=True).prefetch(AUTOTUNE)


def eval_dataset(sources: List[Source], cas, replicas: int = 1) -> tf.data.Dataset:
    """One pass, in order: (float32 images, int32 labels) batches of cas.eval_batch_size (global).

    Every batch has the full size (static shapes for TPUs): the last one is padded with zero
    images labelled -1, which the scorer drops.
    """
    size = cas.eval_batch_size
    if size % replicas:
        raise UserError(f"cas.eval_batch_size={size} is not divisible by the {replicas} replicas")
    ds = None
    for s in sources:
        part = _records(s, None, training=False, seed=0, digits_size=cas.image_size)
        ds = part if ds is None else ds.concatenate(part)
    ds = ds.map(_plain(lambda image, y: (eval_preprocess(image, cas), y)), num_parallel_calls=AUTOTUNE,
                deterministic=True)

    @_plain
    def pad(images, labels):
        missing = size - tf.shape(labels)[0]
        images = tf.pad(images, [[0, missing], [0, 0], [0, 0], [0, 0]])
        labels = tf.pad(labels, [[0, missing]], constant_values=-1)
        return tf.ensure_shape(images, [size, cas.image_size, cas.image_size, 3]), tf.ensure_shape(labels, [size])

    return ds.batch(size).map(pad).prefetch(AUTOTUNE)
