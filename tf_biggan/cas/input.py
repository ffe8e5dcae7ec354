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

Order and resume. The training stream is a sequence of epochs; epoch e holds every used record of
every source exactly once (the mixture's proportions hold per epoch, not just on average), in an
order that is a stateless function of (cas.seed, host, e) alone, and the record at position p of
epoch e is cropped and flipped with the key (cas.seed, host, e, p) (tf.random stateless folds):
  * in-memory sources (the digits): a full permutation of the records per epoch;
  * TFRecord sources: a permutation of the host's files per epoch, read 16 at a time record by
    record (deterministic interleave), then a stateless permutation within each window of
    cas.shuffle_buffer records (the reference's file shuffle + record buffer, made stateless);
  * several sources: interleaved by a per-epoch permutation of their used counts.
A run resumed at step s starts at the host's record s x batch / hosts, i.e. epoch
(s x batch / hosts) // records and the position within it, and so sees exactly the batches the
uninterrupted run would have (as GAN training does, train.replay_input); reaching the position
reads (without decoding) at most one epoch of this host's records.
"""

from __future__ import annotations

from typing import Callable, List, Optional

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


def _encoded_records(source: Source, file_ids) -> Callable[[tf.Tensor], tf.data.Dataset]:
    """fid (index into `file_ids`) -> dataset of (JPEG bytes, int32 label) of that file's used records."""
    paths = tf.constant([source.files[i] for i in file_ids])
    starts = tf.constant([int(source.offsets[i]) for i in file_ids], tf.int64)
    keep = tf.constant(source.kept)
    labels = tf.constant(source.labels.astype(np.int32))

    @_plain
    def read(fid):
        base = starts[fid]
        ds = tf.data.TFRecordDataset(paths[fid], buffer_size=8 << 20).enumerate()
        ds = ds.filter(_plain(lambda i, r: keep[base + i]))
        return ds.map(_plain(lambda i, r: (tf.io.parse_single_example(
            r, {"image/encoded": tf.io.FixedLenFeature([], tf.string)})["image/encoded"], labels[base + i])))

    return read


def _records(source: Source, digits_size: int) -> tf.data.Dataset:
    """(uint8 image [h, w, 3], int32 label) of the used records of one source, in order (evaluation)."""
    if source.digits_split is not None:
        images = _digits_images(source.digits_split, digits_size)
        keep = source.kept
        return tf.data.Dataset.from_tensor_slices((images[keep], source.labels[keep].astype(np.int32)))
    ids = list(range(len(source.files)))
    ds = tf.data.Dataset.range(len(ids)).interleave(_encoded_records(source, ids), cycle_length=min(16, len(ids)),
                                                    num_parallel_calls=AUTOTUNE, deterministic=True)
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


# What each stateless key is for: folded into the key (cas_data, cas.seed) before (host, epoch, ...).
_ORDER, _WINDOW, _CHOICE, _AUGMENT = range(4)


def _key(base, *data):
    """`base` with each of `data` folded in (tf.random.experimental.stateless_fold_in), int64 [2]."""
    for d in data:
        base = tf.random.experimental.stateless_fold_in(base, tf.cast(d, tf.int64))
    return base


class _HostSource:
    """One source's used records on this host, as an epoch-indexed stream of (JPEG bytes or b"",
    row into the in-memory images or -1, int32 label): exactly `count` records per epoch."""

    def __init__(self, index: int, source: Source, input_context, cas, key, memory: List[np.ndarray]):
        host, hosts = ((input_context.input_pipeline_id, input_context.num_input_pipelines)
                       if input_context is not None else (0, 1))
        self.index, self.key, self.window = index, key, cas.shuffle_buffer
        if source.digits_split is not None:
            rows = np.nonzero(source.kept)[0][host::hosts]  # every n-th used record, from this host's index
            first = sum(len(m) for m in memory)
            memory.append(_digits_images(source.digits_split, cas.image_size)[rows])
            self.rows = first + np.arange(len(rows), dtype=np.int64)
            self.labels = source.labels[rows].astype(np.int32)
            self.files = None
            self.count = len(rows)
        else:
            self.files = pipeline.shard_for_host(list(range(len(source.files))), input_context, source.spec)
            cumulative = np.concatenate([[0], np.cumsum(source.kept)])
            used = cumulative[source.offsets[1:]] - cumulative[source.offsets[:-1]]  # per file
            self.count = int(sum(used[i] for i in self.files))
            self.read = _encoded_records(source, self.files)

    def epoch(self, e) -> tf.data.Dataset:
        key = _key(self.key, _ORDER, e, self.index)
        if self.files is None:
            order = tf.random.experimental.stateless_shuffle(tf.range(self.count, dtype=tf.int64), key)
            return tf.data.Dataset.from_tensor_slices((tf.gather(tf.constant(self.rows), order),
                                                       tf.gather(tf.constant(self.labels), order))).map(
                _plain(lambda row, y: (tf.constant(b""), row, y)))
        order = tf.random.experimental.stateless_shuffle(tf.range(len(self.files), dtype=tf.int64), key)
        ds = tf.data.Dataset.from_tensor_slices(order).interleave(
            self.read, cycle_length=min(16, len(self.files)), num_parallel_calls=AUTOTUNE, deterministic=True)

        @_plain
        def permute(j, batch):
            encoded, labels = batch
            perm = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(labels, tf.int64)[0]),
                                                            _key(self.key, _WINDOW, e, self.index, j))
            return tf.data.Dataset.from_tensor_slices((tf.gather(encoded, perm), tf.fill(tf.shape(perm), tf.constant(
                -1, tf.int64)), tf.gather(labels, perm)))

        return ds.batch(self.window).enumerate().flat_map(permute)


def train_dataset(sources: List[Source], cas, global_batch: int, start_step: int,
                  input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    """Endless per-replica batches (float32 images, int32 labels) from `start_step` on, the same from
    any start as the uninterrupted stream's (module docstring: order and resume)."""
    host, hosts = ((input_context.input_pipeline_id, input_context.num_input_pipelines)
                   if input_context is not None else (0, 1))
    key = _key(seeds.key("cas_data", cas.seed), host)
    memory: List[np.ndarray] = []
    streams = [_HostSource(i, s, input_context, cas, key, memory) for i, s in enumerate(sources) if s.count() > 0]
    streams = [s for s in streams if s.count > 0]
    total = sum(s.count for s in streams)
    per_host = global_batch // hosts
    if total < per_host:
        raise UserError(f"--train_data: host {host} holds {total} training images, fewer than its share of a "
                        f"batch ({per_host} of cas.batch_size={global_batch}); use more data or a smaller batch")
    counts = tf.constant(np.repeat(np.arange(len(streams)), [s.count for s in streams]), tf.int64)

    def epoch(e):
        if len(streams) == 1:
            ds = streams[0].epoch(e)
        else:
            choice = tf.random.experimental.stateless_shuffle(counts, _key(key, _CHOICE, e))
            ds = tf.data.Dataset.choose_from_datasets([s.epoch(e) for s in streams],
                                                      tf.data.Dataset.from_tensor_slices(choice))
        return ds.enumerate().map(_plain(lambda p, ex: (e, p) + ex))

    start_epoch, offset = divmod(start_step * per_host, total)
    ds = tf.data.Dataset.range(start_epoch, 2 ** 62).flat_map(epoch).skip(offset)  # undecoded, so cheap
    pixels = tf.constant(np.concatenate(memory) if memory else np.zeros([1, 1, 1, 3], np.uint8))

    @_plain
    def prepare(e, p, encoded, row, label):
        image = tf.cond(row >= 0, lambda: tf.gather(pixels, tf.maximum(row, 0)), lambda: _decode(encoded))
        return train_preprocess(image, _key(key, _AUGMENT, e, p), cas), label

    ds = ds.map(prepare, num_parallel_calls=AUTOTUNE, deterministic=True)
    per_replica = input_context.get_per_replica_batch_size(global_batch) if input_context else global_batch
    return ds.batch(per_replica, drop_remainder=True).prefetch(AUTOTUNE)


def eval_dataset(sources: List[Source], cas, replicas: int = 1) -> tf.data.Dataset:
    """Every image once, in order: (float32 images, int32 labels) batches of cas.eval_batch_size (global).

    Every batch has the full size (static shapes for TPUs): the last one is padded with zero
    images labelled -1, which the scorer drops.
    """
    size = cas.eval_batch_size
    if size % replicas:
        raise UserError(f"cas.eval_batch_size={size} is not divisible by the {replicas} replicas")
    ds = None
    for s in sources:
        part = _records(s, digits_size=cas.image_size)
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
