"""Any prepared TFDS image-classification dataset, read file by file like the ImageNet shards.

`data.name` (e.g. cifar10, imagenet2012, or a dataset of your own prepared with `tfds build`),
`data.split` (any TFDS split expression: "train", "validation", "train[:10%]") and `data.data_dir`
(empty = TFDS's default, ~/tensorflow_datasets, or $TFDS_DATA_DIR) select the data. Nothing is
downloaded: a dataset that is not prepared in `data_dir` is a UserError saying how to build it.

tf_biggan does not use `as_dataset`: it asks TFDS which files (and which records of them) make
up the split, then reads them with the same reader as ImageNet TFRecords (pipeline.py), so that
per-host sharding and the bad-record policy (`data.on_corrupt`) work the same for both. Images
are kept encoded (`SkipDecoding`) and decoded by the pipeline.

Features: the dataset's `supervised_keys` if it has them, else its one Image feature and its
one ClassLabel (or Sequence of ClassLabel, a multi-label dataset) feature. ClassLabels are
already 0-based.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, List, Optional

import tensorflow as tf

from tf_biggan.errors import UserError


@dataclasses.dataclass
class TfdsSource:
    name: str
    split: str
    files: List[tuple]  # (path, skip, take)
    parse: Callable  # serialized -> (encoded image bytes, int64 vector of 0-based labels)
    num_classes: Optional[int]
    num_examples: int


def _features(info, name):
    import tensorflow_datasets as tfds

    features = info.features
    image_key = label_key = None
    if info.supervised_keys and len(info.supervised_keys) == 2 and all(
            isinstance(k, str) for k in info.supervised_keys):
        image_key, label_key = info.supervised_keys
    else:
        images = [k for k, f in features.items() if isinstance(f, tfds.features.Image)]
        labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel) or (
            isinstance(f, tfds.features.Sequence) and isinstance(f.feature, tfds.features.ClassLabel))]
        if len(images) == 1 and len(labels) == 1:
            image_key, label_key = images[0], labels[0]
    if image_key is None or image_key not in features or label_key not in features:
        raise UserError(
            f"data.name={name!r}: cannot tell which feature is the image and which the class label "
            f"(features: {', '.join(features.keys())}); tf_biggan needs supervised_keys "
            f"(image, label) or exactly one Image and one ClassLabel feature")
    image_feature, label_feature = features[image_key], features[label_key]
    if not isinstance(image_feature, tfds.features.Image):
        raise UserError(f"data.name={name!r}: feature {image_key!r} is {type(image_feature).__name__}, "
                        f"not an encoded Image")
    class_label = label_feature.feature if isinstance(label_feature, tfds.features.Sequence) else label_feature
    num_classes = getattr(class_label, "num_classes", None)
    return image_key, label_key, num_classes


def tfds_source(name: str, split: str, data_dir: str = "") -> TfdsSource:
    """The files of a prepared TFDS split and a parser for its records."""
    if not name:
        raise UserError("data.name is empty: with data.kind: tfds set it to a TFDS dataset name, "
                        "e.g. --hparams_overrides data.name=cifar10")
    import tensorflow_datasets as tfds

    where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except tfds.core.registered.DatasetNotFoundError:
        raise UserError(f"data.name={name!r}: no such TFDS dataset, and none prepared under "
                        f"data.data_dir={where!r}") from None
    if not builder.is_prepared():
        raise UserError(
            f"data.name={name!r} is not prepared under data.data_dir={where!r} and tf_biggan never "
            f"downloads. Prepare it first: `tfds build {name} --data_dir={where}` (imagenet2012 needs "
            f"the ILSVRC tar files in <data_dir>/downloads/manual), or set data.data_dir to where it is.")
    info = builder.info
    fmt = getattr(info.file_format, "value", str(info.file_format))
    if fmt != "tfrecord":
        raise UserError(f"data.name={name!r} is stored as {fmt}; tf_biggan reads TFRecord-format TFDS "
                        f"data: rebuild with `tfds build {name} --file_format=tfrecord`")
    try:
        split_info = info.splits[split]
    except (KeyError, ValueError) as exc:
        raise UserError(f"data.split={split!r} is not a split of {name!r} (splits: "
                        f"{', '.join(info.splits.keys())}): {exc}") from None
    files = [(fi.filename, int(fi.skip), int(fi.take)) for fi in split_info.file_instructions
             if int(fi.take) != 0]
    if not files:
        raise UserError(f"data.split={split!r} of {name!r} selects no examples")
    image_key, label_key, num_classes = _features(info, name)
    features = info.features
    decoders = {image_key: tfds.decode.SkipDecoding()}

    def parse(serialized):
        example = features.deserialize_example(serialized, decoders=decoders)
        labels = tf.reshape(tf.cast(example[label_key], tf.int64), [-1])
        return example[image_key], labels

    return TfdsSource(name=name, split=split, files=files, parse=parse, num_classes=num_classes,
                      num_examples=int(split_info.num_examples))
