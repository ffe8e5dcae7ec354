"""--mode=synthesize: CAS-ready synthetic shards in the ImageNet TFRecord layout (CAS Appendix B).

Uses the session's tiny trained run (conftest.py `tiny_run`); everything else is small: a few
images per class, a handful of shards.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import evaluation_run
from tf_biggan.data.shards import shard_bounds
from tf_biggan.errors import UserError
from tf_biggan.requests import SynthesizeRequest
from tf_biggan.synthesis import synthesize as synth
from tf_biggan.sampling.labels import interleaved_labels

# The session's tiny run (conftest.py) is trained once: every module that reads it runs on one xdist worker.
pytestmark = pytest.mark.xdist_group("tiny_run")

# The ImageNet layout exactly as a reader that knows nothing of tf_biggan parses it.
IMAGENET_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/class/label": tf.io.FixedLenFeature([], tf.int64),
    "image/class/synset": tf.io.FixedLenFeature([], tf.string),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/channels": tf.io.FixedLenFeature([], tf.int64),
    "image/colorspace": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
}


def make_request(**kw):
    """--mode=synthesize's request with these flags, every other at main.py's default."""
    return SynthesizeRequest(**kw)


def read_shard(path):
    return [tf.io.parse_single_example(r, IMAGENET_FEATURES) for r in tf.data.TFRecordDataset(path)]


def tree(directory):
    """{relative path: bytes} of every file below `directory`, hidden ones included."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = f.read()
    return out


@pytest.fixture(scope="module")
def run_dir(tiny_run):
    return tiny_run[0]


@pytest.fixture(scope="module")
def module_dir(tiny_module):
    return tiny_module


# ------------------------------------------------------------------------------------------------


def test_labels_are_stratified_so_every_shard_is_class_balanced():
    from tf_biggan.data.digits import load_digits_split

    counts = synth.default_counts("digits", "train")
    assert counts == np.bincount(load_digits_split("train")[1], minlength=10).tolist() and sum(counts) == 1433
    labels = interleaved_labels(counts)
    assert np.bincount(labels).tolist() == counts
    for start, end in shard_bounds(len(labels), 7):
        per_class = np.bincount(labels[start:end], minlength=10)
        expected = np.asarray(counts) * (end - start) / len(labels)
        assert np.all(np.abs(per_class - expected) <= 1.5)
    assert interleaved_labels([2, 2]).tolist() == [0, 1, 0, 1]
    sizes = [e - s for s, e in shard_bounds(10, 4)]
    assert sum(sizes) == 10 and max(sizes) - min(sizes) <= 1


def test_latents_are_stateless_per_shard_and_truncated():
    z = synth.shard_latents(3, 50, 60, 0.5, seed=9)
    np.testing.assert_array_equal(z.numpy(), synth.shard_latents(3, 50, 60, 0.5, seed=9).numpy())
    assert float(tf.reduce_max(tf.abs(z))) <= 0.5
    assert not np.allclose(z.numpy(), synth.shard_latents(4, 50, 60, 0.5, seed=9).numpy())
    # Static shapes whatever truncated_z's shared tf.function has traced before: a graph with an
    # unknown batch size gets other fused kernels and other last bits in its standing statistics.
    for n in (3, 5, 9):
        synth.shard_latents(0, n, 60, 0.5, seed=1)
    graph_z = tf.function(lambda: synth.shard_latents(1, 16, 60, 0.5, seed=2))
    assert graph_z.get_concrete_function().structured_outputs.shape.as_list() == [16, 60]
    # CAS footnote 5's convention (the TF-Hub notebook's): values within [-2t, 2t].
    hub = synth.shard_latents(3, 400, 60, 0.5, seed=9, convention="hub_notebook").numpy()
    assert np.abs(hub).max() <= 1.0 and np.abs(hub).max() > 0.6


def test_shards_read_back_in_the_imagenet_layout(run_dir, tmp_path):
    """Plain parse_single_example: requested counts, 1-based labels, synsets, 16x16 JPEGs; manifest;
    and the images are EMA-G's with standing statistics accumulated at the requested truncation."""
    from tf_biggan.runs import load_run
    from tf_biggan.sampling.standing_stats import apply_standing_stats

    synsets = tmp_path / "synsets.txt"
    synsets.write_text("".join(f"n{c:08d} digit {c}\n" for c in range(10)))
    out = tmp_path / "out"
    result = synth.run_synthesize(None, make_request(
        model_dir=run_dir, output_dir=str(out), images_per_class=3, num_shards=4, truncation=0.5, seed=5,
        jpeg_quality=90, synsets_file=str(synsets), also_write_npz=True))
    names = [f"train-{i:05d}-of-00004" for i in range(4)]
    assert sorted(tf.io.gfile.glob(str(out / "train-*"))) == [str(out / n) for n in names]
    labels, filenames, shard_labels_of = [], set(), {}
    for name in names:
        records = read_shard(str(out / name))
        shard_labels = [int(r["image/class/label"]) for r in records]
        assert max(np.bincount(shard_labels)[1:]) - min(np.bincount(shard_labels, minlength=11)[1:]) <= 1
        for r in records:
            label = int(r["image/class/label"])
            assert r["image/class/synset"].numpy().decode() == f"n{label - 1:08d}"
            image = tf.io.decode_jpeg(r["image/encoded"])
            assert image.shape == (16, 16, 3) and image.dtype == tf.uint8
            assert (int(r["image/height"]), int(r["image/width"]), int(r["image/channels"])) == (16, 16, 3)
            assert (r["image/format"].numpy(), r["image/colorspace"].numpy()) == (b"JPEG", b"RGB")
            filenames.add(r["image/filename"].numpy())
        labels += shard_labels
        shard_labels_of[name] = shard_labels
    assert sorted(set(labels)) == list(range(1, 11)) and np.bincount(labels).tolist() == [0] + [3] * 10
    assert len(filenames) == 30

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == result["manifest"]
    assert manifest["count_per_class"] == {str(c): 3 for c in range(10)}
    assert (manifest["truncation"], manifest["seed"], manifest["shards"]) == (0.5, 5, names)
    assert manifest["source"]["kind"] == "checkpoint" and manifest["source"]["step"] == evaluation_run.STEPS
    assert manifest["source"]["model_dir"] == os.path.abspath(run_dir)
    assert manifest["standing_stats"] == {"passes": 4, "batch_size": 50, "truncation": 0.5,
                                          "latent_convention": "paper_resample"}
    assert (manifest["label_offset"], manifest["num_images"], manifest["resolution"]) == (1, 30, 16)
    assert sum(manifest["images_per_shard"]) == 30 and manifest["jpeg_quality"] == 90

    # The npz holds exactly EMA-G's images for shard 2's latents with statistics at truncation 0.5.
    npz = np.load(out / "npz" / f"{names[2]}.npz")
    assert npz["images"].dtype == np.uint8 and npz["images"].shape == (len(npz["labels"]), 16, 16, 3)
    assert npz["labels"].tolist() == [v - 1 for v in shard_labels_of[names[2]]]
    g = load_run(run_dir).ema_generator
    apply_standing_stats(g, 0.5, 4, 50, seed=5, class_counts=[3] * 10)
    z = synth.shard_latents(2, len(npz["labels"]), 60, 0.5, seed=5)
    expected = np.round(np.clip((g((z, npz["labels"]), training=False).numpy() + 1) * 127.5, 0, 255))
    assert np.abs(expected - npz["images"]).max() <= 1
    # Each record's JPEG is exactly the encoding of that image at --jpeg_quality.
    for r, image in zip(read_shard(str(out / names[2])), npz["images"]):
        assert r["image/encoded"].numpy() == tf.io.encode_jpeg(image, format="rgb", quality=90).numpy()
    # ... and not the images of untruncated statistics (they are not interchangeable, Appendix C.1).
    apply_standing_stats(g, 0.0, 4, 50, seed=5, class_counts=[3] * 10)
    other = np.round(np.clip((g((z, npz["labels"]), training=False).numpy() + 1) * 127.5, 0, 255))
    assert np.abs(other - npz["images"]).max() > 1


def test_two_workers_write_the_files_of_one_uninterrupted_run(run_dir, tmp_path, monkeypatch):
    """Two workers (TF_CONFIG and flags), each writing its own shards, give the bytes of one
    uninterrupted run: a shard depends only on its index. (A killed run's resume is the sharded
    writer's, tested in tests/test_shards.py, and test_preemption.py stops a synthesis mid-shard.
    Default counts, the real training split's, are checked in
    test_labels_are_stratified_so_every_shard_is_class_balanced; here 15 per class keep it quick.)"""
    whole, split = tmp_path / "whole", tmp_path / "split"
    settings = dict(model_dir=run_dir, num_shards=6, truncation=0.5, seed=7, images_per_class=15)
    synth.run_synthesize(None, make_request(output_dir=str(whole), **settings))
    manifest = json.loads((whole / "manifest.json").read_text())
    assert manifest["count_per_class"] == {str(c): 15 for c in range(10)}

    # Two hosts: shard i belongs to worker i % 2. Worker 1 (from TF_CONFIG) finishes first and leaves
    # the manifest to worker 0 (from flags), the last to finish.
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]},
                                                "task": {"type": "worker", "index": 1}}))
    first = synth.run_synthesize(None, make_request(output_dir=str(split), **settings))
    assert first["written"] == ["train-00001-of-00006", "train-00003-of-00006", "train-00005-of-00006"]
    assert first["manifest"] is None and not (split / "manifest.json").exists()
    monkeypatch.delenv("TF_CONFIG")
    second = synth.run_synthesize(None, make_request(output_dir=str(split), num_workers=2, worker_index=0,
                                                     **settings))
    assert len(second["written"]) == 3 and second["manifest"] is not None
    assert tree(split) == tree(whole)


def test_module_source_gives_the_modules_images(module_dir, tmp_path):
    module = tf.saved_model.load(module_dir)
    out = tmp_path / "from_module"
    result = synth.run_synthesize(None, make_request(module=module_dir, output_dir=str(out), images_per_class=2,
                                                     num_shards=2, truncation=0.75, seed=11, also_write_npz=True))
    manifest = result["manifest"]
    assert manifest["source"] == {"kind": "module", "module": os.path.abspath(module_dir),
                                  "step": evaluation_run.STEPS}
    assert manifest["count_per_class"] == {str(c): 2 for c in range(10)} and manifest["truncation"] == 0.75
    for index, name in enumerate(manifest["shards"]):
        npz = np.load(out / "npz" / f"{name}.npz")
        records = read_shard(str(out / name))
        assert [int(r["image/class/label"]) - 1 for r in records] == npz["labels"].tolist()
        z = synth.shard_latents(index, len(records), 60, 0.75, seed=11)
        images = module.signatures["default"](z=z, y=tf.one_hot(npz["labels"], 10),
                                              truncation=tf.constant(0.75))["default"].numpy()
        assert np.abs(np.round((images + 1) * 127.5) - npz["images"]).max() <= 1
        for r, image in zip(records, npz["images"]):
            assert r["image/encoded"].numpy() == tf.io.encode_jpeg(image, format="rgb", quality=95).numpy()
    # Shard 0's latents are the module's own sample_latents(n, seed, truncation).
    n0 = manifest["images_per_shard"][0]
    np.testing.assert_array_equal(
        synth.shard_latents(0, n0, 60, 0.75, seed=11).numpy(),
        module.signatures["sample_latents"](batch_size=tf.constant(n0), seed=tf.constant(11, tf.int64),
                                            truncation=tf.constant(0.75))["z"].numpy())


# Which flags are given (exactly one source, --output_dir, --module without --checkpoint): main.py's
# tables, through the CLI in tests/test_cli.py and tests/test_requests.py.
@pytest.mark.parametrize("flags, message", [
    (dict(model_dir="x", output_dir="o", images_per_class=0), "--images_per_class=0"),
    (dict(model_dir="x", output_dir="o", jpeg_quality=101), "--jpeg_quality=101"),
    (dict(model_dir="x", output_dir="o", num_shards=0), "--num_shards=0"),
    (dict(model_dir="x", output_dir="o", truncation=-1.0), "--truncation=-1: must be >= 0"),
    (dict(module="/no/such/module", output_dir="o"), "--module=/no/such/module"),
    (dict(model_dir="/no/such/run", output_dir="o"), "has no hparams.yaml"),
    (dict(model_dir="x", output_dir="o", num_workers=2, worker_index=2), "--worker_index=2"),
])
def test_bad_flags_are_user_errors(flags, message, tmp_path):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(".", r"\.")):
        synth.run_synthesize(None, make_request(**{k: (str(tmp_path / v) if k == "output_dir" else v)
                                                   for k, v in flags.items()}))


def test_user_errors_that_need_the_source(module_dir, tmp_path, monkeypatch):
    out = str(tmp_path / "o")
    with pytest.raises(UserError, match="--num_shards=1024"):  # 20 images cannot fill 1024 shards
        synth.run_synthesize(None, make_request(module=module_dir, output_dir=out, images_per_class=2))
    bad = tmp_path / "synsets.txt"
    bad.write_text("n01440764\nn01443537\n")
    with pytest.raises(UserError, match="--synsets_file=.*2 non-empty lines.*10 classes"):
        synth.run_synthesize(None, make_request(module=module_dir, output_dir=out, images_per_class=1,
                                                num_shards=1, synsets_file=str(bad)))
    synth.run_synthesize(None, make_request(module=module_dir, output_dir=out, images_per_class=1, num_shards=2))
    with pytest.raises(UserError, match="--output_dir=.*different synthesis.*seed: 0 there, 1 now"):
        synth.run_synthesize(None, make_request(module=module_dir, output_dir=out, images_per_class=1, num_shards=2,
                                                seed=1))
    with pytest.raises(UserError, match="--images_per_class is required for data.kind=tfrecord"):
        synth.default_counts("tfrecord")
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"], "ps": ["p:1"]},
                                                "task": {"type": "ps", "index": 0}}))
    with pytest.raises(UserError, match="TF_CONFIG task type 'ps'"):
        synth.worker_split()
