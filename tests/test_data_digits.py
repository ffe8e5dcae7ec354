"""The embedded digits: a fixed held-out split, the images the GAN sees, and the way back to 8x8."""

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

from tf_biggan.config import DataConfig
from tf_biggan.data import digits, pipeline
from tf_biggan.errors import UserError


def test_split_is_fixed_disjoint_stratified_and_covers_everything():
    raw = load_digits()
    train_x, train_y = digits.load_digits_split("train")
    test_x, test_y = digits.load_digits_split("test")
    assert train_x.shape == (1433, 8, 8) and test_x.shape == (364, 8, 8)
    assert train_x.dtype == np.float32 and train_y.dtype == np.int32
    assert 0 <= train_x.min() and train_x.max() <= 1
    assert np.bincount(test_y).tolist() == [-(-n // 5) for n in np.bincount(raw.target)]  # 35..37
    # Rule: within each class, sklearn's order, positions 0, 5, 10, ... are held out.
    expected_test = np.concatenate([np.nonzero(raw.target == c)[0][::5] for c in range(10)])
    held_out = np.zeros(len(raw.target), bool)
    held_out[expected_test] = True
    np.testing.assert_array_equal(test_x, (raw.images[held_out] / 16).astype(np.float32))
    np.testing.assert_array_equal(train_x, (raw.images[~held_out] / 16).astype(np.float32))
    np.testing.assert_array_equal(train_y, raw.target[~held_out])
    again = digits.load_digits_split("test")
    np.testing.assert_array_equal(again[0], test_x)
    with pytest.raises(UserError, match="splits train, test"):
        digits.load_digits_split("validation")


def test_dataset_images_are_replicated_pixels_in_rgb():
    x, y = digits.load_digits_split("test")
    got = list(digits.digits_dataset("test", 16).take(3).as_numpy_iterator())
    for k, ex in enumerate(got):
        grey = np.round(x[k] * 255).astype(np.uint8).repeat(2, 0).repeat(2, 1)
        np.testing.assert_array_equal(ex["image"], np.repeat(grey[..., None], 3, -1))
        assert ex["labels"].tolist() == [y[k]]


def test_make_dataset_and_the_inverse_mapping():
    data_cfg = DataConfig(kind="digits", num_classes=10, split="test")
    batches = list(pipeline.make_dataset(data_cfg, 16, 100, training=False))
    images = np.concatenate([b[0].numpy() for b in batches])
    labels = np.concatenate([b[1].numpy() for b in batches])
    x, y = digits.load_digits_split("test")
    assert images.shape == (364, 16, 16, 3) and images.dtype == np.float32
    assert images.min() == -1.0 and images.max() == 1.0
    np.testing.assert_array_equal(labels, y)
    back = digits.images_to_digits(images)
    assert back.shape == (364, 8, 8)
    np.testing.assert_allclose(back, x, atol=0.5 / 255 + 1e-6)  # uint8 rounding only


def test_hosts_get_disjoint_parts_and_training_batches_are_full():
    data_cfg = DataConfig(kind="digits", num_classes=10, split="test")
    parts = []
    for host in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=host, num_replicas_in_sync=2)
        ex = pipeline.examples(data_cfg, 8, input_context=ctx, training=False)
        parts.append([e["image"].tobytes() + e["labels"].tobytes() for e in ex.as_numpy_iterator()])
    assert len(parts[0]) == len(parts[1]) == 182
    everything = [e["image"].tobytes() + e["labels"].tobytes()
                  for e in pipeline.examples(data_cfg, 8, training=False).as_numpy_iterator()]
    assert sorted(parts[0] + parts[1]) == sorted(everything)
    x, y = next(iter(pipeline.make_dataset(data_cfg, 8, 32, training=True)))
    assert x.shape == (32, 8, 8, 3) and y.dtype == tf.int32
    with pytest.raises(UserError, match="num_classes=10"):
        pipeline.make_dataset(DataConfig(kind="digits", num_classes=5), 8, 4)
