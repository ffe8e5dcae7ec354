"""`--mode=prepare_data` (tf_biggan/data/image_folder.py): an image folder -> ImageNet-layout shards.

Checked against independent references: pixel conversions against numpy on PIL's raw pixel values
(grayscale repeated, alpha dropped, palette looked up, CMYK as (255 - C)(255 - K) / 255, 16 bits / 257),
RGB JPEGs stored byte for byte, --resolution against `preprocess.crop_and_resize` (the training
pipeline's Appendix C preprocessing) up to JPEG quantisation, the seeded per-class split against
its invariants; shards read back through the training pipeline and CAS's label scan; a rerun
after a lost shard writes only that shard (the resume itself: tests/test_shards.py), one with other
flags or files is refused; bad input is a one-line error through the real CLI.
"""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tf_biggan.data import image_folder, preprocess, tfrecord
from tf_biggan.data.image_folder import CorruptImage, convert, decode_rgb, prepare_data, split_class
from tf_biggan.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMATS = ("jpg", "png", "bmp_gray", "gif", "png_rgba", "jpeg_cmyk", "JPG_gray")


def _save(array, kind, path_without_ext):
    """Writes `array` (uint8 [H, W, 3]) in one of FORMATS; returns the path."""
    image = Image.fromarray(array)
    ext, _, variant = kind.partition("_")
    path = f"{path_without_ext}.{ext}"
    if variant == "gray":
        image = image.convert("L")
    elif variant == "rgba":
        alpha = Image.fromarray(array[..., 0])
        image = Image.merge("RGBA", (*image.split(), alpha))
    elif variant == "cmyk":
        image = Image.fromarray(np.concatenate([array, array[..., :1] // 2], -1), "CMYK")
    elif ext == "gif":
        image = image.convert("P")
    image.save(path, format={"jpg": "JPEG", "JPG": "JPEG", "jpeg": "JPEG", "png": "PNG", "bmp": "BMP",
                             "gif": "GIF"}[ext])
    return path


def make_image_folder(root, per_class=(12, 9, 7), seed=0, corrupt=True, classes=("cat", "dog", "fish")):
    """DIR/<class>/<image> with images of mixed formats and sizes (smooth gradients + noise, so JPEG
    errors stay small), a garbage .jpg, an empty .png and a truncated JPEG (when `corrupt`), a
    non-image file and a hidden file. Returns {class: [paths of good images]} and the corrupt paths."""
    rng = np.random.default_rng(seed)
    good, bad = {}, []
    for c, (name, n) in enumerate(zip(classes, per_class)):
        directory = os.path.join(root, name)
        os.makedirs(os.path.join(directory, "nested"), exist_ok=True)
        good[name] = []
        for i in range(n):
            h, w = (int(v) for v in rng.integers(10, 40, 2))
            yy, xx = np.mgrid[0:h, 0:w]
            base = np.stack([yy * 255 // h, xx * 255 // w, np.full((h, w), 60 * c)], -1)
            array = np.clip(base + rng.integers(-8, 8, (h, w, 3)), 0, 255).astype(np.uint8)
            sub = directory if i % 4 else os.path.join(directory, "nested")  # folders are searched recursively
            good[name].append(_save(array, FORMATS[i % len(FORMATS)], os.path.join(sub, f"img{i:03d}")))
        with open(os.path.join(directory, "README.txt"), "w") as f:
            f.write("not an image")
        with open(os.path.join(directory, ".DS_Store"), "wb") as f:
            f.write(b"\0")
    if corrupt:
        paths = [os.path.join(root, classes[0], "garbage.jpg"), os.path.join(root, classes[1], "empty.png"),
                 os.path.join(root, classes[2], "truncated.jpg")]
        with open(paths[0], "wb") as f:
            f.write(b"this is not a JPEG at all")
        open(paths[1], "wb").close()
        jpeg = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(jpeg, "JPEG")
        with open(paths[2], "wb") as f:
            f.write(jpeg.getvalue()[:len(jpeg.getvalue()) // 2])
        bad = paths
    return good, bad


def _read_records(pattern):
    out = []
    for path in sorted(p for p in tf.io.gfile.glob(pattern) if not os.path.basename(p).startswith(".")):
        for raw in tf.data.TFRecordDataset(path):
            ex = tf.train.Example.FromString(raw.numpy())
            f = ex.features.feature
            out.append({"jpeg": f["image/encoded"].bytes_list.value[0],
                        "label": list(f["image/class/label"].int64_list.value),
                        "synset": f["image/class/synset"].bytes_list.value[0].decode(),
                        "filename": f["image/filename"].bytes_list.value[0].decode(),
                        "height": f["image/height"].int64_list.value[0],
                        "width": f["image/width"].int64_list.value[0]})
    return out


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


# ------------------------------------------------------------------------------------------------
# Units: split, interleave, conversions, corrupt files.


def test_split_is_per_class_seeded_and_independent_of_order_and_other_classes():
    files = [f"c/{i:03d}.jpg" for i in range(50)]
    train, val = split_class(files, 0.2, seed=3, class_name="c")
    assert len(val) == 10 and len(train) == 40 and sorted(train + val) == files and not set(train) & set(val)
    assert split_class(list(reversed(files)), 0.2, 3, "c") == (train, val)  # file-system order does not matter
    assert split_class(files, 0.2, 4, "c")[1] != val  # the seed does
    assert split_class(files, 0.2, 3, "other")[1] != val  # each class its own stream
    # round(f * n), but never the whole class; nothing held out at fraction 0
    assert [len(split_class(files[:n], 0.2, 0, "c")[1]) for n in (1, 2, 3, 7, 8)] == [0, 0, 1, 1, 2]
    assert len(split_class(files[:2], 0.9, 0, "c")[1]) == 1
    assert split_class(files, 0.0, 0, "c") == (files, [])


def test_interleave_keeps_every_contiguous_run_class_balanced():
    per_class = [[f"a{i}" for i in range(30)], [f"b{i}" for i in range(10)], [f"c{i}" for i in range(20)]]
    items = image_folder.interleave(per_class)
    assert sorted(f for f, _ in items) == sorted(sum(per_class, []))
    for c, files in enumerate(per_class):
        assert [f for f, k in items if k == c] == files  # each class keeps its order
    for start in range(0, 60, 6):  # any 6 consecutive: 3 / 1 / 2 up to one
        counts = np.bincount([k for _, k in items[start:start + 6]], minlength=3)
        assert np.all(np.abs(counts - np.array([3, 1, 2])) <= 1), counts
    assert image_folder.shard_count(0, None) == 0 and image_folder.shard_count(1, 4) == 1
    assert image_folder.shard_count(2600, None) == 3 and image_folder.shard_count(100, 7) == 7


def _encoded(image, fmt, **kw):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kw)
    return buffer.getvalue()


def test_conversions_to_rgb_match_numpy_references():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    grey = rgb[..., 1]
    # grayscale BMP: the grey level in all three channels
    out, fmt, mode = decode_rgb(_encoded(Image.fromarray(grey), "BMP"))
    assert (fmt, mode) == ("BMP", "L") and np.array_equal(out, np.repeat(grey[..., None], 3, -1))
    # RGBA PNG: alpha dropped (torchvision's convert("RGB")), colour kept exactly
    rgba = np.concatenate([rgb, rng.integers(0, 256, (9, 13, 1), dtype=np.uint8)], -1)
    out, fmt, mode = decode_rgb(_encoded(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert mode == "RGBA" and np.array_equal(out, rgb)
    # LA PNG (grey + alpha)
    out, _, mode = decode_rgb(_encoded(Image.fromarray(np.stack([grey, grey], -1), "LA"), "PNG"))
    assert mode == "LA" and np.array_equal(out, np.repeat(grey[..., None], 3, -1))
    # 16-bit grayscale PNG: scaled to 8 bits (PIL's own conversion would clip it to white)
    deep = rng.integers(0, 65536, (9, 13)).astype(np.uint16)
    out, _, _ = decode_rgb(_encoded(Image.fromarray(deep), "PNG"))
    assert np.array_equal(out[..., 0], np.round(deep / 257.0).astype(np.uint8)) and np.array_equal(out[..., 0], out[..., 2])
    # GIF: the FIRST frame of an animation, through its palette
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    frames = []
    for k in range(2):
        frame = Image.fromarray(rng.integers(0, 256, (9, 13), dtype=np.uint8), "P")
        frame.putpalette(palette.reshape(-1).tolist())
        frames.append(frame)
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:])
    reopened = Image.open(io.BytesIO(gif.getvalue()))
    indices = np.asarray(reopened)  # frame 0's palette indices as stored
    stored_palette = np.asarray(reopened.getpalette(), np.uint8).reshape(-1, 3)
    out, fmt, _ = decode_rgb(gif.getvalue())
    assert fmt == "GIF" and getattr(reopened, "n_frames", 1) == 2
    assert np.array_equal(out, stored_palette[indices])
    # CMYK JPEG: (255 - C)(255 - K) / 255 per channel, rounded, on the CMYK values PIL decodes
    cmyk = np.concatenate([rgb, rgb[..., :1] // 3], -1)
    data = _encoded(Image.fromarray(cmyk, "CMYK"), "JPEG", quality=95)
    raw = np.asarray(Image.open(io.BytesIO(data))).astype(np.int32)
    out, fmt, mode = decode_rgb(data)
    assert (fmt, mode) == ("JPEG", "CMYK")
    product = (255 - raw[..., :3]) * (255 - raw[..., 3:])
    assert np.array_equal(out, np.round(product / 255.0).astype(np.uint8))
    # RGB JPEG: TF's decoder (as training decodes) gives PIL's pixels (libjpeg's accurate integer DCT)
    data = _encoded(Image.fromarray(rgb), "JPEG", quality=90)
    out, _, mode = decode_rgb(data)
    assert mode == "RGB" and np.array_equal(out, np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_convert_stores_jpegs_as_they_are_and_resolution_as_training_crops():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:30, 0:50]
    smooth = np.clip(np.stack([yy * 8, xx * 5, (yy + xx) * 3], -1) + rng.integers(-4, 4, (30, 50, 3)), 0, 255)
    smooth = smooth.astype(np.uint8)
    jpeg = _encoded(Image.fromarray(smooth), "JPEG", quality=92)
    stored = convert(jpeg)
    assert stored.passed_through and stored.jpeg == jpeg and (stored.height, stored.width) == (30, 50)
    grey = convert(_encoded(Image.fromarray(smooth[..., 0]), "JPEG"))
    assert grey.passed_through  # grayscale JPEGs too: TF decodes them to RGB itself
    png = convert(_encoded(Image.fromarray(smooth), "PNG"), jpeg_quality=95)
    assert not png.passed_through and png.jpeg[:2] == b"\xff\xd8"
    decoded = tf.io.decode_jpeg(png.jpeg, channels=3).numpy().astype(int)
    assert np.abs(decoded - smooth).mean() < 3.0  # JPEG quantisation of +-4 noise only
    # --resolution 16: the training pipeline's centred crop + area resize, stored as a 16 x 16 JPEG
    small = convert(jpeg, resolution=16, jpeg_quality=95)
    reference = preprocess.crop_and_resize(tf.constant(decode_rgb(jpeg)[0]), 16).numpy().astype(int)
    pixels = tf.io.decode_jpeg(small.jpeg, channels=3, dct_method=preprocess.JPEG_DCT_METHOD)
    assert (small.height, small.width) == (16, 16) and not small.passed_through
    assert np.abs(pixels.numpy().astype(int) - reference).mean() < 3.0
    # ... and training's crop + resize of the stored square is the identity
    assert np.array_equal(preprocess.crop_and_resize(pixels, 16).numpy(), pixels.numpy())


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"GIF89a-but-not-really", "GIF"),
    (b"hello world", "not a JPEG, PNG, BMP or GIF image (its first bytes: 68 65 6c 6c 6f 20 77 6f)"),
])
def test_unreadable_bytes_are_corrupt_with_a_reason(data, reason):
    with pytest.raises(CorruptImage, match=reason.replace("(", r"\(").replace(")", r"\)")):
        convert(data)


def test_truncated_files_are_corrupt():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8))
    for fmt in ("JPEG", "PNG"):
        data = _encoded(image, fmt)
        with pytest.raises(CorruptImage, match="cannot be decoded|not a readable"):
            convert(data[:len(data) // 2])


# ------------------------------------------------------------------------------------------------
# The import, in process.


def test_import_reads_back_in_the_imagenet_layout_and_through_the_training_pipeline(tmp_path):
    good, bad = make_image_folder(str(tmp_path / "images"))
    out = str(tmp_path / "shards")
    lines = []
    result = prepare_data(str(tmp_path / "images"), out, validation_fraction=0.25, num_shards=2, workers=2,
                          log=lines.append)
    manifest = result["manifest"]
    assert sorted(result["written"]) == ["train-00000-of-00002", "train-00001-of-00002", "validation-00000-of-00001"]
    with open(os.path.join(out, "labels.txt")) as f:
        assert f.read() == "cat\ndog\nfish\n"
    # every good image once, label = sorted class index + 1, the class name as synset
    records = _read_records(os.path.join(out, "*-of-*"))
    by_name = {r["filename"]: r for r in records}
    expected = {os.path.relpath(p, str(tmp_path / "images")): c for c, name in enumerate(("cat", "dog", "fish"))
                for p in good[name]}
    assert set(by_name) == set(expected) and len(records) == len(expected) == 28
    for rel, c in expected.items():
        r = by_name[rel]
        assert r["label"] == [c + 1] and r["synset"] == ("cat", "dog", "fish")[c]
        source = _bytes(os.path.join(str(tmp_path / "images"), rel))
        reference = decode_rgb(source)[0]  # checked against numpy in test_conversions_...
        assert reference.shape == (r["height"], r["width"], 3)
        if rel.lower().endswith(".jpg"):
            assert r["jpeg"] == source  # RGB / grey JPEGs byte for byte
        else:  # the rest: their RGB pixels encoded once, at the default --jpeg_quality, 4:4:4
            assert r["jpeg"] == tf.io.encode_jpeg(reference, quality=95, chroma_downsampling=False).numpy(), rel
    # the split: per class round(0.25 n) held out, and the manifest's counts say so
    val = _read_records(os.path.join(out, "validation-*"))
    assert np.bincount([r["label"][0] - 1 for r in val], minlength=3).tolist() == [3, 2, 2]
    assert manifest["splits"]["train"]["count_per_class"] == {"cat": 9, "dog": 7, "fish": 5}
    assert manifest["splits"]["validation"]["count_per_class"] == {"cat": 3, "dog": 2, "fish": 2}
    # the corrupt files skipped and listed with their reasons; non-images listed apart
    assert sorted(s["file"] for s in manifest["skipped"]) == sorted(bad) and manifest["skipped_count"] == 3
    reasons = {os.path.basename(s["file"]): s["reason"] for s in manifest["skipped"]}
    assert reasons["empty.png"] == "empty file" and "truncated" in reasons["truncated.jpg"].lower()
    assert sorted(os.path.basename(i["file"]) for i in manifest["ignored"]) == ["README.txt"] * 3
    assert manifest["source_formats"]["JPEG/CMYK"] >= 3 and manifest["source_formats"]["GIF/P"] >= 3
    assert 10 <= manifest["source_sizes"]["height"]["min"] <= manifest["source_sizes"]["height"]["max"] < 40
    assert any("skipped" in line and "garbage.jpg" in line for line in lines)
    # the shards train as they are: the pipeline reads them with data.pattern alone
    from tf_biggan.config import load_hparams
    from tf_biggan.data.pipeline import make_dataset

    hp = load_hparams(None, manifest["hparams_overrides"])
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in make_dataset(hp.data, 8, 64, training=False)])
    images, labels = np.concatenate(images), np.concatenate(labels)
    assert images.shape == (21, 8, 8, 3) and np.bincount(labels, minlength=3).tolist() == [9, 7, 5]
    train = _read_records(os.path.join(out, "train-*"))  # file order = pipeline order without shuffling
    first = preprocess.to_model_range(preprocess.crop_and_resize(tf.io.decode_jpeg(
        train[0]["jpeg"], channels=3, dct_method=preprocess.JPEG_DCT_METHOD), 8)).numpy()
    assert np.array_equal(images[0], first)
    # CAS reads them as REAL data although a manifest.json sits beside them
    from tf_biggan.cas.sources import parse_sources

    (source,) = parse_sources(os.path.join(out, "validation-*"), "--eval_data", 3)
    assert source.kind == "real" and source.per_class(3) == [3, 2, 2]


def test_a_rerun_with_other_flags_or_a_changed_folder_is_refused(tmp_path):
    """What the import's plan pins: its flags and its files (the sharded writer's resume itself is
    tested in tests/test_shards.py; test_prepare_data_cli resumes a lost shard through this mode)."""
    images = str(tmp_path / "images")
    make_image_folder(images, per_class=(6, 6, 6), corrupt=False)
    out = str(tmp_path / "shards")
    first = prepare_data(images, out, num_shards=3, workers=1, log=lambda m: None)
    again = prepare_data(images, out, num_shards=3, workers=1, log=lambda m: None)
    assert again["written"] == [] and again["manifest"] == first["manifest"]  # the same plan: nothing to do
    with pytest.raises(UserError, match=r"different import \(resolution: None there, 8 now\)"):
        prepare_data(images, out, num_shards=3, resolution=8, log=lambda m: None)
    _save(np.zeros((12, 12, 3), np.uint8), "png", os.path.join(images, "cat", "new"))
    with pytest.raises(UserError, match="files_fingerprint: .*; the folder's files changed since"):
        prepare_data(images, out, num_shards=3, log=lambda m: None)


def test_a_val_tree_beside_the_folder_is_the_validation_split(tmp_path):
    make_image_folder(str(tmp_path / "data" / "train"), per_class=(4, 4, 4), corrupt=False)
    make_image_folder(str(tmp_path / "data" / "val"), per_class=(2, 1, 0), corrupt=False, seed=1)
    out = str(tmp_path / "shards")
    manifest = prepare_data(str(tmp_path / "data" / "train"), out, log=lambda m: None)["manifest"]
    assert manifest["validation_source"] == str(tmp_path / "data" / "val")
    assert manifest["splits"]["train"]["count_per_class"] == {"cat": 4, "dog": 4, "fish": 4}
    assert manifest["splits"]["validation"]["count_per_class"] == {"cat": 2, "dog": 1, "fish": 0}
    with pytest.raises(UserError, match="pass only one"):
        prepare_data(str(tmp_path / "data" / "train"), str(tmp_path / "o2"), validation_fraction=0.1)


def test_folder_errors_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        prepare_data(str(tmp_path / "missing"), str(tmp_path / "o"))
    flat = tmp_path / "flat"
    flat.mkdir()
    _save(np.zeros((8, 8, 3), np.uint8), "png", str(flat / "a"))
    with pytest.raises(UserError, match=r"no class sub-folders \(1 image\(s\) lie directly in it\)"):
        prepare_data(str(flat), str(tmp_path / "o"))
    make_image_folder(str(tmp_path / "imgs"), per_class=(2, 2, 2), corrupt=False)
    (tmp_path / "imgs" / "empty_class").mkdir()
    with pytest.raises(UserError, match="empty_class holds no images") as info:
        prepare_data(str(tmp_path / "imgs"), str(tmp_path / "o"))
    assert "\n" not in str(info.value)
    os.rmdir(tmp_path / "imgs" / "empty_class")
    with pytest.raises(UserError, match="inside --image_dir"):
        prepare_data(str(tmp_path / "imgs"), str(tmp_path / "imgs" / "out"))
    with pytest.raises(UserError, match="validation_fraction"):
        prepare_data(str(tmp_path / "imgs"), str(tmp_path / "o"), validation_fraction=1.0)


# ------------------------------------------------------------------------------------------------
# Through the real CLI.


def cli(*args, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-m", "tf_biggan.main", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _error_line(proc):
    lines = [l for l in proc.stderr.splitlines() if l.startswith("tf-biggan: error:")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def test_prepare_data_cli(tmp_path):
    """The mode through `python -m tf_biggan.main`: flags reach the import (--validation_fraction,
    --resolution, --seed, --num_shards: a rerun through prepare_data with those values after a lost
    shard writes only it, so the CLI made the same import), bad input is one line."""
    images = str(tmp_path / "images")
    good, bad = make_image_folder(images, per_class=(8, 8, 8))  # + 3 corrupt files, counted until read
    out = str(tmp_path / "shards")
    args = ("--mode=prepare_data", f"--image_dir={images}", f"--output_dir={out}", "--validation_fraction=0.25",
            "--resolution=8", "--seed=5", "--num_shards=2")
    first = cli(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "[prepare_data] 3 classes, 21 training and 6 validation images" in first.stdout
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["resolution"] == 8 and manifest["seed"] == 5 and manifest["shards"] == {"train": 2, "validation": 1}
    assert sorted(s["file"] for s in manifest["skipped"]) == sorted(bad)
    assert all((r["height"], r["width"]) == (8, 8) for r in _read_records(os.path.join(out, "*-of-*")))
    os.remove(os.path.join(out, "validation-00000-of-00001"))
    lines = []
    second = prepare_data(images, out, validation_fraction=0.25, resolution=8, seed=5, num_shards=2, log=lines.append)
    assert second["written"] == ["validation-00000-of-00001"] and second["manifest"] == manifest
    assert any("2 complete, 1 to write" in line for line in lines)

    assert "--image_dir" in _error_line(cli("--mode=prepare_data", f"--output_dir={out}"))
    assert "--on_corrupt" in _error_line(cli(*args, "--on_corrupt=sometimes"))
    failed = _error_line(cli("--mode=prepare_data", f"--image_dir={images}", f"--output_dir={tmp_path / 'o2'}",
                             "--on_corrupt=fail"))
    assert any(p in failed for p in bad) and "--on_corrupt=skip" in failed
    assert not [n for n in os.listdir(tmp_path / "o2") if n.startswith("train-")]
