"""The shared mechanisms: atomic writes, the uint8 conversion, named seed streams."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tf_biggan import atomic, images, seeds


def test_seed_streams_never_collide():
    """No (stream, seed) pair of one stream gives the key of another stream, for seeds 0..999."""
    owner = {}
    for stream in seeds.STREAMS:
        for seed in range(1000):
            k = seeds.int_seed(stream, seed)
            assert owner.setdefault(k, stream) == stream, (stream, seed, owner[k])
    assert len(set(seeds.STREAMS.values())) == len(seeds.STREAMS)
    assert all(0 <= k < 2 ** 31 for k in owner)


def test_seed_keys_are_stateless_and_distinct():
    a = tf.random.stateless_normal([4], seed=seeds.key("eval_z", 3, 5)).numpy()
    b = tf.random.stateless_normal([4], seed=seeds.key("eval_z", 3, 5)).numpy()
    c = tf.random.stateless_normal([4], seed=seeds.key("eval_y", 3, 5)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    with pytest.raises(KeyError):
        seeds.int_seed("no_such_stream", 0)
    with pytest.raises(ValueError):
        seeds.int_seed("eval_z", -1)


def test_to_uint8_inverts_the_input_scaling_and_rounds_half_to_even():
    values = np.arange(256, dtype=np.uint8)
    model_range = values.astype(np.float32) / 127.5 - 1.0
    np.testing.assert_array_equal(images.to_uint8(model_range), values)
    # Half-way values round to even, as numpy.round does; out-of-range values clip.
    x = (np.array([0.5, 1.5, 2.5, -3.0, 300.0], np.float32) / 127.5) - 1.0
    np.testing.assert_array_equal(images.to_uint8(x), np.clip(np.round(x.astype(np.float64) * 127.5 + 127.5), 0, 255))
    assert images.to_uint8(tf.constant(model_range)).dtype == tf.uint8


def test_atomic_file_writes(tmp_path):
    path = tmp_path / "sub" / "report.json"
    atomic.write_json(str(path), {"b": np.float32(1.5), "a": np.arange(2)})
    assert json.loads(path.read_text()) == {"a": [0, 1], "b": 1.5}
    atomic.write_text(str(path), "x")
    assert path.read_text() == "x"
    assert sorted(os.listdir(path.parent)) == ["report.json"]  # no temporaries left behind
    atomic.save_npz(str(tmp_path / "a.npz"), x=np.ones(3))
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["x"], np.ones(3))


def test_atomic_directory_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "module"
    with atomic.directory(str(target)) as tmp:
        open(os.path.join(tmp, "v1"), "w").close()
    assert os.listdir(target) == ["v1"]
    with pytest.raises(RuntimeError):
        with atomic.directory(str(target)) as tmp:
            open(os.path.join(tmp, "v2"), "w").close()
            raise RuntimeError("killed")
    assert os.listdir(target) == ["v1"]
    with atomic.directory(str(target)) as tmp:
        open(os.path.join(tmp, "v3"), "w").close()
    assert os.listdir(target) == ["v3"]
    assert sorted(os.listdir(tmp_path)) == ["module"]
