"""The ImageNet TFRecord layout: write it (`make_example`, `write_shard`) and read it (`parse_record`).

This is the layout of the shards the Cloud TPU ImageNet tutorials build with
`imagenet_to_gcs.py` / `build_imagenet_data.py` (`train-00000-of-01024` ...): one
`tf.train.Example` per image with

    image/encoded       bytes   the JPEG file
    image/format        bytes   b"JPEG"
    image/class/label   int64   class id, 1-BASED (1..1000; 0 was the background class of old
                                Inception checkpoints). Several values = a multi-label record.
    image/class/synset  bytes   WordNet id, e.g. b"n01440764"
    image/class/text    bytes   human-readable class name (optional)
    image/height, image/width, image/channels  int64
    image/colorspace    bytes   b"RGB"
    image/filename      bytes   original file name

tf_biggan works with 0-based class ids everywhere: `make_example` takes 0-based `class_id`s and
writes id + 1; `parse_record` returns id - 1. The reader only needs `image/encoded` and
`image/class/label`; the synthetic-data writer uses `make_example` + `write_shard` so that its
output reads back through the same path as real ImageNet shards.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from tf_biggan import atomic
from tf_biggan.errors import UserError

IMAGE_KEY = "image/encoded"
LABEL_KEY = "image/class/label"
LABEL_OFFSET = 1  # ImageNet shards store class id + 1


def _bytes(value: Union[bytes, str]) -> tf.train.Feature:
    if isinstance(value, str):
        value = value.encode("utf-8")
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def jpeg_size(encoded: bytes):
    """(height, width) from a JPEG's header; ValueError if the bytes are not a JPEG."""
    from PIL import Image  # the header only: no decode

    try:
        with Image.open(io.BytesIO(encoded)) as image:
            if image.format != "JPEG":
                raise ValueError(f"expected JPEG bytes, got {image.format}")
            width, height = image.size
    except (OSError, SyntaxError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"expected JPEG bytes: {exc}") from None
    return height, width


def make_example(encoded_jpeg: bytes, class_id: Union[int, np.integer, Sequence[int], np.ndarray], *,
                 height: Optional[int] = None, width: Optional[int] = None,
                 synset: str = "", text: str = "", filename: str = "") -> tf.train.Example:
    """One image as a `tf.train.Example` in the ImageNet layout.

    Args:
      encoded_jpeg: the JPEG file's bytes (e.g. `tf.io.encode_jpeg(uint8_image).numpy()`).
      class_id: 0-BASED class id (int or numpy integer), or a list / 1-D array of them for a
        multi-label record; stored + 1.
      height, width: read from the JPEG header when not given.
      synset, text, filename: the descriptive keys the ImageNet converter writes.
    """
    if height is None or width is None:
        height, width = jpeg_size(encoded_jpeg)
    ids = np.atleast_1d(np.asarray(class_id))
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu" or (ids < 0).any():
        raise ValueError(f"class_id must be one or more integer 0-based ids >= 0, got {class_id!r}")
    ids = ids.tolist()
    feature = {
        IMAGE_KEY: _bytes(encoded_jpeg),
        "image/format": _bytes(b"JPEG"),
        LABEL_KEY: _ints([int(i) + LABEL_OFFSET for i in ids]),
        "image/class/synset": _bytes(synset),
        "image/class/text": _bytes(text),
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/channels": _ints([3]),
        "image/colorspace": _bytes(b"RGB"),
        "image/filename": _bytes(filename),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_path(prefix: str, index: int, num_shards: int) -> str:
    """`prefix-00003-of-01024`, the ImageNet shard naming (glob: `prefix-*`)."""
    return f"{prefix}-{index:05d}-of-{num_shards:05d}"


def write_shard(path: str, examples: Iterable[Union[tf.train.Example, bytes]]) -> int:
    """Writes examples (or serialized examples) to one TFRecord file, atomically.

    The records go to a hidden temporary file in the same directory, renamed over `path` only
    once complete, so a reader (or a glob) never sees a half-written shard. Works for local
    paths and for `gs://` (where the rename is a copy + delete). Returns the number written.
    """
    directory = os.path.dirname(path) or "."
    tf.io.gfile.makedirs(directory)
    tmp = atomic.temporary_path(path)  # the project's temporary naming (tf_biggan.atomic)
    count = 0
    try:
        with tf.io.TFRecordWriter(tmp) as writer:
            for example in examples:
                writer.write(example if isinstance(example, bytes) else example.SerializeToString(deterministic=True))
                count += 1
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException:
        if tf.io.gfile.exists(tmp):
            tf.io.gfile.remove(tmp)
        raise
    return count


def list_files_with_sizes(pattern: str, key: str = "data.pattern") -> List[Tuple[str, int]]:
    """Sorted (path, size in bytes) of the files matching a glob (local or gs://).

    UserError naming the pattern if it is empty or matches no files. Directories and hidden files
    (write_shard's temporaries) are left out. The stat calls run in parallel: on gs:// each is a
    round trip, and ImageNet has 1024 training shards.
    """
    if not pattern:
        raise UserError(
            f"{key} is empty: with data.kind: tfrecord set it to a glob of ImageNet-layout TFRecord "
            f"shards, e.g. --hparams_overrides {key}=gs://BUCKET/imagenet/train-*")
    try:
        matches = sorted(f for f in tf.io.gfile.glob(pattern) if not os.path.basename(f).startswith("."))
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(32, len(matches)))) as pool:
            stats = list(pool.map(tf.io.gfile.stat, matches))
    except tf.errors.OpError as exc:
        raise UserError(f"{key}={pattern!r}: cannot list files: {exc.message}") from None
    files = [(f, int(st.length)) for f, st in zip(matches, stats) if not st.is_directory]
    if not files:
        raise UserError(
            f"{key}={pattern!r} matches no files. Check the path and the glob (e.g. "
            f"/data/imagenet/train-* or gs://BUCKET/imagenet/train-*)")
    return files


def list_files(pattern: str, key: str = "data.pattern") -> List[str]:
    """Sorted files matching a glob; see list_files_with_sizes."""
    return [f for f, _ in list_files_with_sizes(pattern, key)]


def parse_record(serialized: tf.Tensor):
    """Serialized ImageNet-layout Example -> (JPEG bytes, int64 vector of 0-based class ids).

    A missing image is returned as b"" and missing labels as an empty vector, so the caller can
    report them as a bad record; bytes that are not an Example at all raise at run time.
    """
    parsed = tf.io.parse_single_example(serialized, {
        IMAGE_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABEL_KEY: tf.io.VarLenFeature(tf.int64),
    })
    return parsed[IMAGE_KEY], parsed[LABEL_KEY].values - LABEL_OFFSET
