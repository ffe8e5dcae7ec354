"""ImageNet-layout TFRecords: writing, reading through make_dataset, sharding, bad data.

The files are written two ways: by hand here with tf.train.Example (1-based labels, the keys of
the Cloud TPU converter), independently of tf_biggan, and with tf_biggan's own make_example /
write_shard; both must read back the same.
"""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tf_biggan.config import DataConfig
from tf_biggan.data import pipeline, tfrecord
from tf_biggan.errors import UserError

from test_data_preprocess import reference_crop_resize

RES = 8


def jpeg_bytes(h, w, seed):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def png_bytes(h, w, seed):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def hand_example(encoded: bytes, label_1_based, h=0, w=0) -> bytes:
    """An Example as the ImageNet-to-TFRecord converter writes it (no tf_biggan code)."""
    labels = label_1_based if isinstance(label_1_based, list) else [label_1_based]

    def b(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

    def i(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    return tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": b(encoded), "image/format": b(b"JPEG"), "image/class/label": i(labels),
        "image/class/synset": b(b"n01440764"), "image/height": i([h]), "image/width": i([w]),
        "image/channels": i([3]), "image/colorspace": b(b"RGB"), "image/filename": b(b"x.JPEG"),
    })).SerializeToString()


def write_raw(path, records):
    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)


def cfg(pattern, **kw):
    kw.setdefault("num_classes", 100)
    return DataConfig(kind="tfrecord", pattern=str(pattern), **kw)


def read_all(data_cfg, res=RES, **kw):
    kw.setdefault("training", False)
    images, labels = [], []
    with pipeline.data_errors():
        for x, y in pipeline.make_dataset(data_cfg, res, 8, **kw):
            images.append(x.numpy())
            labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


@pytest.fixture
def shards(tmp_path):
    """4 shards x 5 records; record k of shard s has 0-based label 5 s + k (unique)."""
    for s in range(4):
        write_raw(tmp_path / f"train-{s:05d}-of-00004",
                  [hand_example(jpeg_bytes(12 + k, 9, seed=5 * s + k), 5 * s + k + 1) for k in range(5)])
    return tmp_path


def test_labels_come_back_zero_based_and_exact(shards):
    images, labels = read_all(cfg(shards / "train-*"))
    assert labels.dtype == np.int32
    assert labels.tolist() == sorted(range(20), key=lambda v: (v % 5, v // 5))  # 4 files interleaved
    assert images.dtype == np.float32 and images.shape == (20, RES, RES, 3)
    assert images.min() >= -1 and images.max() <= 1


def test_crop_resize_through_the_pipeline_matches_pil_and_numpy(tmp_path):
    sizes = [(30, 41), (41, 30), (16, 16), (5, 7)]  # landscape, portrait, square, upsampling
    datas = [jpeg_bytes(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    write_raw(tmp_path / "a.tfrecord", [hand_example(d, i + 1) for i, d in enumerate(datas)])
    images, labels = read_all(cfg(tmp_path / "a.tfrecord"), res=RES)
    for i, data in enumerate(datas):
        decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        ref = np.round(reference_crop_resize(decoded, RES)) / 127.5 - 1
        assert labels[i] == i
        np.testing.assert_allclose(images[i], ref, atol=1e-6, rtol=0)  # same uint8 levels


def test_make_example_writes_the_imagenet_layout_and_round_trips(tmp_path):
    data = jpeg_bytes(12, 17, seed=1)
    ex = tfrecord.make_example(data, 0, synset="n01440764", text="tench", filename="a.JPEG")
    f = ex.features.feature
    assert f["image/class/label"].int64_list.value == [1]  # stored 1-based
    assert (f["image/height"].int64_list.value, f["image/width"].int64_list.value) == ([12], [17])
    assert f["image/encoded"].bytes_list.value == [data]
    for key in ("image/format", "image/class/synset", "image/class/text", "image/channels",
                "image/colorspace", "image/filename"):
        assert key in f
    with pytest.raises(ValueError):
        tfrecord.make_example(png_bytes(4, 4, 0), 1)
    with pytest.raises(ValueError):
        tfrecord.make_example(data, -1)
    with pytest.raises(ValueError):
        tfrecord.make_example(data, 1.5)
    for ids, stored in ((np.int64(4), [5]), (np.array([0, 9], np.int32), [1, 10]), ([2, 3], [3, 4])):
        assert tfrecord.make_example(data, ids).features.feature["image/class/label"].int64_list.value == stored

    path = tfrecord.shard_path(str(tmp_path / "syn"), 0, 2)
    assert path.endswith("syn-00000-of-00002")
    n = tfrecord.write_shard(path, (tfrecord.make_example(jpeg_bytes(10, 10, seed=k), k * 7) for k in range(6)))
    assert n == 6 and os.listdir(tmp_path) == ["syn-00000-of-00002"]  # no temporaries left
    _, labels = read_all(cfg(tmp_path / "syn-*"))
    assert labels.tolist() == [0, 7, 14, 21, 28, 35]
    # make_example and the hand-written layout are the same record.
    parsed = tfrecord.parse_record(tf.constant(hand_example(data, 5)))
    assert parsed[1].numpy().tolist() == [4]


def test_write_shard_is_atomic(tmp_path):
    path = str(tmp_path / "out-00000-of-00001")

    def failing():
        yield tfrecord.make_example(jpeg_bytes(8, 8, 0), 1)
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        tfrecord.write_shard(path, failing())
    assert os.listdir(tmp_path) == []  # neither the shard nor a temporary
    tfrecord.write_shard(path, [tfrecord.make_example(jpeg_bytes(8, 8, 0), 1)])
    tfrecord.write_shard(path, [tfrecord.make_example(jpeg_bytes(8, 8, 0), 2)] * 2)  # replaces
    assert sum(1 for _ in tf.data.TFRecordDataset(path)) == 2


def test_two_input_contexts_read_disjoint_files_that_cover_all(shards):
    seen = []
    for host in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=host, num_replicas_in_sync=2)
        files = pipeline.shard_for_host(tfrecord.list_files(str(shards / "train-*")), ctx)
        _, labels = read_all(cfg(shards / "train-*"), input_context=ctx)
        assert sorted({int(v) // 5 for v in labels}) == sorted(int(f[-14:-9]) for f in files)
        seen.append(set(labels.tolist()))
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(20))
    with pytest.raises(UserError, match="at least 8 shards"):
        pipeline.shard_for_host(list(range(4)), tf.distribute.InputContext(8, 0, 8))
    # per-replica batches under an input context: global 8 over 4 replicas -> 2
    ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0, num_replicas_in_sync=4)
    x, y = next(iter(pipeline.make_dataset(cfg(shards / "train-*"), RES, 8, input_context=ctx)))
    assert x.shape[0] == 2 and y.shape == (2,)


def test_empty_glob_is_a_clear_error_naming_the_pattern(tmp_path):
    pattern = str(tmp_path / "nothing-*")
    with pytest.raises(UserError, match="nothing-\\*.*matches no files"):
        pipeline.make_dataset(cfg(pattern), RES, 4)
    with pytest.raises(UserError, match="data.pattern is empty"):
        pipeline.make_dataset(cfg(""), RES, 4)


def _bad_shards(tmp_path):
    good = [hand_example(jpeg_bytes(10, 10, seed=k), k + 1) for k in range(6)]
    truncated = hand_example(jpeg_bytes(10, 10, seed=9)[:150], 50)
    not_jpeg = hand_example(png_bytes(10, 10, seed=3), 51)
    write_raw(tmp_path / "d-0", good[:3])
    write_raw(tmp_path / "d-1", [good[3], truncated, good[4], not_jpeg])  # last record bad too
    write_raw(tmp_path / "d-2", [good[5], b"this is not a tf.train.Example"])
    return tmp_path / "d-*"


def test_bad_records_fail_with_file_and_index(tmp_path):
    pattern = _bad_shards(tmp_path)
    with pytest.raises(UserError, match=r"record 1 of .*d-1.*could not be read.*on_corrupt=skip"):
        read_all(cfg(pattern))
    write_raw(tmp_path / "d-1", [hand_example(png_bytes(10, 10, seed=3), 51)])
    with pytest.raises(UserError, match=r"record 0 of .*d-1.* is not a JPEG .*89 50 4e 47"):
        read_all(cfg(pattern))
    os.remove(tmp_path / "d-1")
    with pytest.raises(UserError, match=r"record 1 of .*d-2.*could not be read"):  # last record of a file
        read_all(cfg(pattern))


def test_bad_records_are_skipped_and_counted(tmp_path):
    pattern = _bad_shards(tmp_path)
    stats = pipeline.ReadStats()
    _, labels = read_all(cfg(pattern, on_corrupt="skip"), stats=stats)
    assert sorted(labels.tolist()) == [0, 1, 2, 3, 4, 5]
    assert stats.as_dict() == {"skipped_records": 3, "damaged_files": 0}


def test_truncated_file_is_reported_or_counted(tmp_path):
    write_raw(tmp_path / "t-0", [hand_example(jpeg_bytes(10, 10, seed=k), k + 1) for k in range(4)])
    data = open(tmp_path / "t-0", "rb").read()
    open(tmp_path / "t-0", "wb").write(data[:-40])  # cut inside the last record
    with pytest.raises(UserError, match=r"file .*t-0.* ends early after record 2"):
        read_all(cfg(tmp_path / "t-*"))
    stats = pipeline.ReadStats()
    _, labels = read_all(cfg(tmp_path / "t-*", on_corrupt="skip"), stats=stats)
    assert labels.tolist() == [0, 1, 2] and stats.as_dict() == {"skipped_records": 0, "damaged_files": 1}


def test_labels_out_of_range_fail_even_when_skipping(tmp_path):
    write_raw(tmp_path / "z-0", [hand_example(jpeg_bytes(8, 8, 0), 0)])  # 0 is not a 1-based class
    for mode in ("fail", "skip"):
        with pytest.raises(UserError, match=r"label\(s\) 0 outside 1..100.*num_classes=100"):
            read_all(cfg(tmp_path / "z-*", on_corrupt=mode))


def test_multi_label_records_sample_one_label_uniformly_per_read(tmp_path):
    write_raw(tmp_path / "m-0", [hand_example(jpeg_bytes(8, 8, 0), [3, 6, 9])] * 50)  # 0-based 2, 5, 8
    with pytest.raises(UserError, match="several labels.*multi_label"):
        read_all(cfg(tmp_path / "m-*"))
    data_cfg = cfg(tmp_path / "m-*", multi_label=True, shuffle_buffer=10)

    def draws(seed):
        ds = pipeline.make_dataset(data_cfg, RES, 100, training=True, seed=seed)
        return np.concatenate([y.numpy() for _, y in ds.take(6)])

    a = draws(0)
    counts = np.bincount(a, minlength=9)
    assert set(np.nonzero(counts)[0]) == {2, 5, 8}
    assert all(150 < counts[c] < 250 for c in (2, 5, 8))  # 600 uniform draws: 200 +- 4.3 sigma
    np.testing.assert_array_equal(a, draws(0))  # deterministic under the seed
    assert not np.array_equal(a, draws(1))


def test_training_stream_is_deterministic_under_a_seed_and_flips_are_mirrors(shards):
    data_cfg = cfg(shards / "train-*", random_flip=True, shuffle_buffer=8)
    first = [next(iter(pipeline.make_dataset(data_cfg, RES, 20, seed=3))) for _ in range(2)]
    np.testing.assert_array_equal(first[0][0].numpy(), first[1][0].numpy())
    np.testing.assert_array_equal(first[0][1].numpy(), first[1][1].numpy())
    other = next(iter(pipeline.make_dataset(data_cfg, RES, 20, seed=4)))
    assert not np.array_equal(first[0][1].numpy(), other[1].numpy())
    plain_images, plain_labels = read_all(cfg(shards / "train-*"))
    by_label = dict(zip(plain_labels.tolist(), plain_images))
    images, labels = first[0][0].numpy(), first[0][1].numpy()
    assert sorted(labels.tolist()) == list(range(20))  # one epoch, each image once
    flipped = [np.array_equal(img, by_label[y][:, ::-1]) and not np.array_equal(img, by_label[y])
               for img, y in zip(images, labels)]
    same = [np.array_equal(img, by_label[y]) for img, y in zip(images, labels)]
    assert all(f or s for f, s in zip(flipped, same)) and any(flipped) and any(same)


def test_cache_gives_the_same_images_and_serves_later_passes(shards):
    plain = read_all(cfg(shards / "train-*"))
    ds = pipeline.make_dataset(cfg(shards / "train-*", cache=True), RES, 8, training=False)
    passes = []
    for _ in range(2):
        passes.append([(x.numpy(), y.numpy()) for x, y in ds])
        for f in shards.iterdir():  # the second pass must come from the cache
            f.unlink()
    for batches in passes:
        np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), plain[0])
        np.testing.assert_array_equal(np.concatenate([y for _, y in batches]), plain[1])
