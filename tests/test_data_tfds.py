"""TFDS datasets: a tiny one is built under tmp_path by a GeneratorBasedBuilder (no download)."""


import numpy as np
import pytest
import tensorflow as tf

tfds = pytest.importorskip("tensorflow_datasets")

from tf_biggan.config import DataConfig  # noqa: E402
from tf_biggan.data import pipeline  # noqa: E402
from tf_biggan.errors import UserError  # noqa: E402

from test_data_preprocess import reference_crop_resize  # noqa: E402

# This module's fixtures are built once: all its tests run on one xdist worker (CI: --dist loadgroup).
pytestmark = pytest.mark.xdist_group("data_tfds")

tfds.disable_progress_bar()


def tiny_image(i):
    return np.random.default_rng(i).integers(0, 256, (6 + i, 9, 3), dtype=np.uint8)


class TfBigganTiny(tfds.core.GeneratorBasedBuilder):
    """10 PNG images (lossless, so the pipeline must reproduce them exactly) in 3 classes."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "label": tfds.features.ClassLabel(num_classes=3)}), supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(range(10)), "test": self._generate_examples(range(10, 13))}

    def _generate_examples(self, ids):
        for i in ids:
            yield i, {"image": tiny_image(i), "label": i % 3}


class TfBigganTinyMulti(tfds.core.GeneratorBasedBuilder):
    """Multi-label (Sequence of ClassLabel), JPEG-encoded, no supervised_keys."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
            "labels": tfds.features.Sequence(tfds.features.ClassLabel(num_classes=5)),
            "note": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(20):
            yield i, {"image": tiny_image(i), "labels": [1, 4], "note": "x"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tfds")
    for cls in (TfBigganTiny, TfBigganTinyMulti):
        cls(data_dir=str(d)).download_and_prepare(file_format="tfrecord")
    return str(d)


def read(data_cfg, **kw):
    kw.setdefault("training", False)
    with pipeline.data_errors():
        out = [(x.numpy(), y.numpy()) for x, y in pipeline.make_dataset(data_cfg, 4, 4, **kw)]
    return np.concatenate([x for x, _ in out]), np.concatenate([y for _, y in out])


def test_tfds_split_reads_exact_images_and_zero_based_labels(data_dir):
    cfg = DataConfig(kind="tfds", name="tf_biggan_tiny", split="train", data_dir=data_dir, num_classes=3)
    images, labels = read(cfg)
    # TFDS shuffles examples into its files by key hash: match records to sources by content.
    refs = {i: np.round(reference_crop_resize(tiny_image(i), 4)) / 127.5 - 1 for i in range(10)}
    found = []
    for image, label in zip(images, labels):
        (i,) = [k for k, ref in refs.items() if np.allclose(image, ref, atol=1e-6)]
        assert label == i % 3
        found.append(i)
    assert sorted(found) == list(range(10))
    sub, sub_labels = read(DataConfig(kind="tfds", name="tf_biggan_tiny", split="train[2:7]",
                                      data_dir=data_dir, num_classes=3))
    np.testing.assert_array_equal(sub, images[2:7])  # TFDS's record order, records 2..6
    np.testing.assert_array_equal(sub_labels, labels[2:7])


def test_tfds_multi_label_sequence_feature(data_dir):
    cfg = DataConfig(kind="tfds", name="tf_biggan_tiny_multi", data_dir=data_dir, num_classes=5, multi_label=True,
                     shuffle_buffer=4)
    ys = np.concatenate([y.numpy() for _, y in pipeline.make_dataset(cfg, 4, 20, training=True).take(5)])
    assert set(ys.tolist()) == {1, 4} and 30 < int(np.sum(ys == 1)) < 70  # 100 fair draws
    with pytest.raises(UserError, match="multi_label"):
        read(DataConfig(kind="tfds", name="tf_biggan_tiny_multi", data_dir=data_dir, num_classes=5))


def test_tfds_user_errors(data_dir, tmp_path):
    with pytest.raises(UserError, match="data.name is empty"):
        pipeline.make_dataset(DataConfig(kind="tfds", name=""), 4, 4)
    with pytest.raises(UserError, match=r"not prepared .*tfds build cifar10"):
        pipeline.make_dataset(DataConfig(kind="tfds", name="cifar10", data_dir=str(tmp_path), num_classes=10), 4, 4)
    with pytest.raises(UserError, match="no such TFDS dataset"):
        pipeline.make_dataset(DataConfig(kind="tfds", name="no_such_dataset_xyz", data_dir=str(tmp_path)), 4, 4)
    with pytest.raises(UserError, match="not a split"):
        pipeline.make_dataset(DataConfig(kind="tfds", name="tf_biggan_tiny", split="valid", data_dir=data_dir,
                                         num_classes=3), 4, 4)
    with pytest.raises(UserError, match="set data.num_classes=3"):
        pipeline.make_dataset(DataConfig(kind="tfds", name="tf_biggan_tiny", data_dir=data_dir, num_classes=2), 4, 4)
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0, num_replicas_in_sync=2)
    with pytest.raises(UserError, match="1 file.*2 input pipelines"):
        pipeline.make_dataset(DataConfig(kind="tfds", name="tf_biggan_tiny", data_dir=data_dir, num_classes=3),
                              4, 4, input_context=ctx)


def test_tfds_damaged_file_is_reported(data_dir, tmp_path):
    import shutil

    src = tfds.builder("tf_biggan_tiny", data_dir=data_dir).data_dir
    copy = tmp_path / "tf_biggan_tiny" / "1.0.0"
    shutil.copytree(src, copy)
    (shard,) = [p for p in copy.iterdir() if "train.tfrecord" in p.name]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    cfg = DataConfig(kind="tfds", name="tf_biggan_tiny", data_dir=str(tmp_path), num_classes=3)
    with pytest.raises(UserError, match=r"ends early: \d of the 10 records"):
        read(cfg)
    stats = pipeline.ReadStats()
    images, _ = read(DataConfig(kind="tfds", name="tf_biggan_tiny", data_dir=str(tmp_path), num_classes=3,
                                on_corrupt="skip"), stats=stats)
    assert 0 < len(images) < 10 and stats.as_dict()["damaged_files"] == 1
