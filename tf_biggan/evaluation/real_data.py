"""The run's real images, as evaluation reads them: training or held-out ("validation") data.

Section 4 scores samples against real data: FID against the training set's statistics (the paper's
and TF-GAN's convention; `eval.fid_reference`), Table 2's middle column against the IS of real
validation data. `real_data_config` points a run's data section at either split (the digits' fixed
`test` split, a TFDS split, or `eval.validation_pattern` for TFRecords); `real_batches` streams it,
so ImageNet-size sets never sit in memory.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Tuple

import numpy as np

from tf_biggan.errors import UserError


def real_data_config(hp, which: str):
    """hp.data pointed at the real images of `which` ("train" or "validation"); None if the run
    has no held-out data configured (a TFRecord run without eval.validation_pattern)."""
    data = hp.data
    if which == "train":
        return data
    if which != "validation":
        raise ValueError(f"which must be 'train' or 'validation', got {which!r}")
    ev = hp.eval
    if data.kind == "digits":
        return dataclasses.replace(data, split=ev.validation_split or "test")
    if data.kind == "tfds":
        return dataclasses.replace(data, split=ev.validation_split or "validation")
    if data.kind == "tfrecord":
        if not ev.validation_pattern:
            return None
        return dataclasses.replace(data, pattern=ev.validation_pattern)
    raise UserError(f"data.kind={data.kind!r}: expected digits, tfds or tfrecord")


def no_validation_message(hp) -> str:
    """Why a run has no held-out data, and the flag that fixes it."""
    return (f"the run's data (data.kind={hp.data.kind}) has no held-out images configured: set "
            "eval.validation_pattern to the validation TFRecords (ImageNet: .../validation-*), e.g. "
            "--hparams_overrides eval.validation_pattern=/data/imagenet/validation-*")


def _config_or_error(hp, which: str):
    cfg = real_data_config(hp, which)
    if cfg is None:
        raise UserError(no_validation_message(hp))
    return cfg


def real_dataset_id(hp, which: str, max_examples: int) -> str:
    """A readable id of a real image set, the dataset half of a statistics cache key."""
    cfg = _config_or_error(hp, which)
    source = {"digits": "digits", "tfds": cfg.name, "tfrecord": cfg.pattern}[cfg.kind]
    split = cfg.split if cfg.kind != "tfrecord" else which
    return f"{cfg.kind}:{source}:{split}:{hp.model.resolution}px:max{max_examples}"


def real_batches(hp, which: str, batch_size: int, max_examples: int = 0) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """(images float32 [b, R, R, 3] in [-1, 1], labels int32 [b]) of the run's real `which` data
    ("train" or "validation"), read once in file order, at most `max_examples` (0 = all).
    Data errors become `UserError`s."""
    from tf_biggan.data.pipeline import data_errors, make_dataset

    cfg = _config_or_error(hp, which)
    ds = make_dataset(cfg, hp.model.resolution, batch_size, training=False)
    seen = 0
    with data_errors():
        for images, labels in ds:
            images, labels = images.numpy(), labels.numpy().astype(np.int32)
            if max_examples:
                images, labels = images[:max_examples - seen], labels[:max_examples - seen]
            seen += images.shape[0]
            if images.shape[0]:
                yield images, labels
            if max_examples and seen >= max_examples:
                return


def real_images(hp, which: str, max_examples: int = 0, batch_size: int = 256) -> Tuple[np.ndarray, np.ndarray]:
    """All of `real_batches` in memory: (images [N, R, R, 3], labels [N])."""
    parts = list(real_batches(hp, which, batch_size, max_examples))
    if not parts:
        raise UserError(f"the run's real {which} data is empty ({real_dataset_id(hp, which, max_examples)})")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
