"""`--mode=prepare_data`: a folder of images (`DIR/<class>/<image>`) -> ImageNet-layout TFRecord shards.

The input is the ImageFolder layout torchvision and TFDS read: one sub-folder per class (searched
recursively), class ids 0..K-1 in sorted order of the folder names (torchvision's rule), files
with the extensions .jpg .jpeg .jpe .png .bmp .gif. The output is what `tfrecord.py` reads (the
layout of the ImageNet converter): `train-%05d-of-%05d` and, with a validation split,
`validation-%05d-of-%05d`, one `tf.train.Example` per image with the JPEG in image/encoded and the
class id + 1 in image/class/label (1-BASED, as ImageNet shards store it), the folder name in
image/class/synset; beside them `labels.txt` (class names in label order, line k = class k, 0-based)
and `manifest.json` (counts per class and split, image sizes, source formats, skipped files with
the reason, and the `--hparams_overrides` that train on the shards).

Pixels. RGB and grayscale JPEGs are stored byte for byte (no second JPEG loss), as the ImageNet
converter does; every other image (PNG, BMP, GIF's first frame, CMYK JPEG) is converted to RGB the
way torchvision's default loader does, PIL's `convert("RGB")`: grayscale repeated, alpha dropped,
palettes looked up, CMYK as (255 - C)(255 - K) / 255; 16-bit grayscale is scaled to 8 bits. It is
then encoded as JPEG at --jpeg_quality without chroma subsampling. With --resolution R each image
is instead stored as the R x R square the training pipeline would make of it (`preprocess.
crop_and_resize`: the centred crop along the long edge and area resampling of the paper's Appendix
C, on the pixels TF's own JPEG decoder gives), then JPEG-encoded: training then decodes, and its
crop and resize are the identity, so the only difference from resizing on the fly is the JPEG
quantisation of the small image.

Validation split. With --validation_fraction f each class keeps round(f x n_c) of its n_c images
apart (at most n_c - 1): a permutation of the class's files (sorted by path) drawn from the seeded
stream ("data_split", --seed, a hash of the class name), so a class's split depends neither on
the other classes nor on the order the file system lists files in. Without it, a `val` folder
beside DIR (`DIR/../val/<class>/...`, the layout of ImageNet's train/ and val/) is the validation
split. Shards hold the classes interleaved in proportion (`sampling.labels.interleaved_labels`),
so any shard, or any few shards read first, show every class.

Crash safety comes from the sharded writer `--mode=synthesize` uses too (`tf_biggan.data.shards`):
each shard goes to a hidden temporary name and is renamed when complete, then a hidden `.NAME.done`
marker records its record count, size and (here) what it skipped and the statistics the manifest
sums; a rerun keeps every shard whose marker matches, removes stale temporaries and writes only the
missing shards. A hidden plan (`.prepare_data_plan.json`) pins the files and settings: a rerun over
a changed folder or with other flags is refused rather than mixing two imports. `manifest.json` is
written last, once every shard is there.

Work is spread over the CPU's cores by a thread pool: PIL's and TF's decoders and encoders release
Python's lock while they run, and reading is I/O (gs:// round trips). Every file goes through
`tf.io.gfile`, so DIR and the output may be gs:// paths.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import os
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tf_biggan import atomic, seeds
from tf_biggan.data import preprocess, tfrecord
from tf_biggan.data.shards import MANIFEST, Shard, ShardWriter, plan_shards
from tf_biggan.errors import UserError
from tf_biggan.progress import Progress
from tf_biggan.requests import PrepareDataRequest

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif")
LABELS = "labels.txt"
PLAN = ".prepare_data_plan.json"
VAL_FOLDER = "val"
# ImageNet's train split: 1,281,167 images in 1,024 shards, ~1,250 per shard. Without --num_shards
# a split gets as many shards as that density asks (at least one).
IMAGES_PER_SHARD = 1250
ON_CORRUPT = ("skip", "fail")
LOG_EVERY_SECONDS = 10.0


# ------------------------------------------------------------------------------------------------
# The folder.


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def _parent(directory: str) -> str:
    # os.path.dirname is a string operation, correct for gs:// too once the trailing "/" is gone.
    return os.path.dirname(directory.rstrip("/"))


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@dataclasses.dataclass
class FolderScan:
    """One ImageFolder tree: classes (sorted), each class's image files (sorted relative paths),
    and the files that are not images (relative path, reason)."""

    root: str
    classes: List[str]
    files: Dict[str, List[str]]
    ignored: List[Tuple[str, str]]


def scan_folder(root: str, flag: str = "--image_dir", require_all: bool = True) -> FolderScan:
    """Walks `root/<class>/...`. UserError (one line naming the folder) for a missing folder, a folder
    without class sub-folders, or (with `require_all`) a class folder without images."""
    root = root.rstrip("/") or "/"
    if not tf.io.gfile.isdir(root):
        raise UserError(f"{flag}={root}: no such folder; give a folder with one sub-folder of images per class "
                        f"(DIR/<class>/<image>.jpg)")
    entries = sorted(e.rstrip("/") for e in tf.io.gfile.listdir(root))
    classes = [e for e in entries if not e.startswith(".") and tf.io.gfile.isdir(_join(root, e))]
    ignored = [(e, "not inside a class folder") for e in entries
               if not e.startswith(".") and e not in classes]
    if not classes:
        loose = sum(_is_image_name(e) for e in entries)
        raise UserError(f"{flag}={root} has no class sub-folders"
                        + (f" ({loose} image(s) lie directly in it)" if loose else "")
                        + ": put each class's images in its own folder, DIR/<class>/<image>.jpg "
                          "(the ImageFolder layout)")
    files: Dict[str, List[str]] = {}
    for name in classes:
        found = []
        for directory, subdirs, names in tf.io.gfile.walk(_join(root, name)):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")]
            rel_dir = directory.rstrip("/")[len(root.rstrip("/")) + 1:]
            for n in names:
                if n.startswith("."):  # .DS_Store, temporaries of other tools
                    continue
                rel = f"{rel_dir}/{n}"
                if _is_image_name(n):
                    found.append(rel)
                else:
                    ignored.append((rel, f"not an image file name (expected one of {' '.join(IMAGE_EXTENSIONS)})"))
        if not found and require_all:
            raise UserError(f"{flag}={root}: class folder {_join(root, name)} holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")
        files[name] = sorted(found)
    return FolderScan(root, classes, files, sorted(ignored))


def split_class(files: Sequence[str], fraction: float, seed: int, class_name: str) -> Tuple[List[str], List[str]]:
    """(train, validation) of one class: round(fraction x n) files (at most n - 1) held out, picked by a
    permutation of the sorted files drawn from ("data_split", seed, hash of the class name)."""
    files = sorted(files)
    n = len(files)
    n_val = min(int(round(fraction * n)), max(n - 1, 0)) if fraction > 0 else 0
    counter = int.from_bytes(hashlib.sha256(class_name.encode("utf-8")).digest()[:7], "big")
    order = seeds.numpy_rng("data_split", seed, counter).permutation(n)
    held = set(order[:n_val].tolist())
    return [f for i, f in enumerate(files) if i not in held], [f for i, f in enumerate(files) if i in held]


def interleave(per_class: Sequence[Sequence[str]]) -> List[Tuple[str, int]]:
    """(file, class id) of every file, the classes interleaved in proportion (any contiguous run,
    a shard, holds each class in proportion up to one image); each class's files keep their order."""
    from tf_biggan.sampling.labels import interleaved_labels

    labels = interleaved_labels([len(f) for f in per_class])
    taken = [0] * len(per_class)
    out = []
    for c in labels.tolist():
        out.append((per_class[c][taken[c]], c))
        taken[c] += 1
    return out


def shard_count(images: int, requested: Optional[int]) -> int:
    """Shards of a split: `requested` (at most one per image), else ~IMAGES_PER_SHARD per shard."""
    if images <= 0:
        return 0
    n = requested if requested else -(-images // IMAGES_PER_SHARD)
    return max(1, min(int(n), images))


# ------------------------------------------------------------------------------------------------
# One image.


@dataclasses.dataclass
class Converted:
    """One image ready for a record: JPEG bytes and what the manifest summarises."""

    jpeg: bytes
    height: int  # of the stored image
    width: int
    source_format: str  # JPEG / PNG / BMP / GIF
    source_mode: str  # PIL's mode of the file: RGB, L, CMYK, RGBA, P, ...
    source_height: int
    source_width: int
    passed_through: bool  # the file's own bytes are stored


class CorruptImage(ValueError):
    """A file that cannot be read as an image; the message is the reason."""


def _open(data: bytes):
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise CorruptImage("empty file")
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise CorruptImage(f"not a JPEG, PNG, BMP or GIF image (its first bytes: {data[:8].hex(' ')})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"not a readable image ({exc})") from None


def pil_to_rgb(image) -> np.ndarray:
    """A PIL image (first frame) -> uint8 RGB [H, W, 3], as torchvision's loader: `convert("RGB")`,
    except 16/32-bit grayscale, which PIL would clip to 255, scaled from 16 bits to 8."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        grey = np.asarray(image).astype(np.float64)
        grey = np.clip(np.round(grey / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's note on palette transparency: dropped, as in torchvision
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def decode_rgb(data: bytes) -> Tuple[np.ndarray, str, str]:
    """File bytes -> (uint8 RGB [H, W, 3], format, PIL mode); `CorruptImage` if unreadable.

    RGB and grayscale JPEGs are decoded by TF's decoder as the training pipeline does
    (`preprocess.JPEG_DCT_METHOD`); everything else by PIL (`pil_to_rgb`), GIF at its first frame.
    """
    image = _open(data)
    fmt, mode = image.format or "?", image.mode
    if fmt == "JPEG" and mode in ("RGB", "L"):
        try:
            pixels = tf.io.decode_jpeg(data, channels=3, dct_method=preprocess.JPEG_DCT_METHOD).numpy()
        except tf.errors.InvalidArgumentError:
            raise CorruptImage("JPEG data cannot be decoded (truncated or damaged)") from None
        return pixels, fmt, mode
    try:
        image.seek(0)
        image.load()
        return pil_to_rgb(image), fmt, mode
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImage(f"{fmt} data cannot be decoded ({exc})") from None


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """uint8 RGB -> JPEG at `quality`, 4:4:4 (no chroma subsampling: small images keep their colour)."""
    return tf.io.encode_jpeg(pixels, format="rgb", quality=int(quality), chroma_downsampling=False).numpy()


def convert(data: bytes, resolution: Optional[int] = None, jpeg_quality: int = 95) -> Converted:
    """One file's bytes -> the JPEG to store (module docstring); `CorruptImage` if unreadable."""
    pixels, fmt, mode = decode_rgb(data)
    h, w = int(pixels.shape[0]), int(pixels.shape[1])
    if h < 1 or w < 1:
        raise CorruptImage(f"{fmt} image of {h} x {w} pixels")
    if resolution:
        square = preprocess.crop_and_resize(tf.constant(pixels), int(resolution)).numpy()
        return Converted(encode_jpeg(square, jpeg_quality), int(resolution), int(resolution), fmt, mode, h, w, False)
    if fmt == "JPEG" and mode in ("RGB", "L"):
        return Converted(bytes(data), h, w, fmt, mode, h, w, True)
    return Converted(encode_jpeg(pixels, jpeg_quality), h, w, fmt, mode, h, w, False)


# ------------------------------------------------------------------------------------------------
# Shards.


@dataclasses.dataclass
class ShardStats:
    """What one shard holds, kept in its marker so the manifest can be made without re-reading."""

    records: int = 0
    per_class: Dict[str, int] = dataclasses.field(default_factory=dict)
    skipped: List[List[str]] = dataclasses.field(default_factory=list)  # [relative path, reason]
    formats: Dict[str, int] = dataclasses.field(default_factory=dict)  # "PNG/RGBA" -> n
    passed_through: int = 0
    min_hw: List[int] = dataclasses.field(default_factory=lambda: [0, 0])
    max_hw: List[int] = dataclasses.field(default_factory=lambda: [0, 0])
    sum_hw: List[int] = dataclasses.field(default_factory=lambda: [0, 0])

    def add(self, class_name: str, c: Converted) -> None:
        self.records += 1
        self.per_class[class_name] = self.per_class.get(class_name, 0) + 1
        key = f"{c.source_format}/{c.source_mode}"
        self.formats[key] = self.formats.get(key, 0) + 1
        self.passed_through += int(c.passed_through)
        hw = [c.source_height, c.source_width]
        first = self.records == 1
        self.min_hw = hw if first else [min(a, b) for a, b in zip(self.min_hw, hw)]
        self.max_hw = hw if first else [max(a, b) for a, b in zip(self.max_hw, hw)]
        self.sum_hw = [a + b for a, b in zip(self.sum_hw, hw)]


def _read_file(path: str) -> bytes:
    with tf.io.gfile.GFile(path, "rb") as f:
        return f.read()


def _summary(stats: Sequence[dict], classes: Sequence[str]) -> dict:
    records = sum(s["records"] for s in stats)
    per_class = {name: sum(s["per_class"].get(name, 0) for s in stats) for name in classes}
    return {"images": records, "count_per_class": per_class}


def prepare_data(image_dir: str, output_dir: str, *, validation_fraction: float = 0.0,
                 resolution: Optional[int] = None, on_corrupt: str = "skip", seed: int = 0,
                 jpeg_quality: int = 95, num_shards: Optional[int] = None, workers: Optional[int] = None,
                 log: Optional[Callable[[str], None]] = None) -> dict:
    """Imports `image_dir` into shards in `output_dir` (module docstring); returns
    {"written": [...], "kept": [...], "manifest": dict, "seconds": float}.

    `num_shards`: the train split's shard count (validation gets proportionally many), None =
    ~IMAGES_PER_SHARD images per shard. `workers`: threads (default: the CPU count).
    """
    log = log or Progress("prepare_data").log
    t_start = time.perf_counter()
    image_dir, output_dir = _check_request(image_dir, output_dir, validation_fraction=validation_fraction,
                                           resolution=resolution, on_corrupt=on_corrupt, seed=seed,
                                           jpeg_quality=jpeg_quality)
    found = _collect(image_dir, validation_fraction, seed)
    shards, jobs = _plan_jobs(found.splits, num_shards)
    fingerprint = hashlib.sha256(json.dumps([[j.name, _items(found, j)] for j in jobs]).encode()).hexdigest()[:16]
    plan = {"image_dir": image_dir, "validation_source": found.validation_source,
            "validation_fraction": float(validation_fraction), "seed": int(seed),
            "resolution": int(resolution) if resolution else None, "jpeg_quality": int(jpeg_quality),
            "classes": found.classes, "shards": {s: shards[s] for s in shards}, "files_fingerprint": fingerprint}
    writer = ShardWriter(output_dir, jobs)
    writer.pin(PLAN, plan, "import", notes={"files_fingerprint": "the folder's files changed since"})
    atomic.write_text(_join(output_dir, LABELS), "".join(f"{c}\n" for c in found.classes))

    todo, removed = writer.resume()
    workers = max(1, int(workers or os.cpu_count() or 1))
    n_train, n_val = len(found.splits["train"]), len(found.splits["validation"])
    source = found.validation_source
    log(f"{len(found.classes)} classes, {n_train} training and {n_val} validation images"
        + (f" (validation from {source})" if source else "")
        + f" from {image_dir} into {shards['train']} train + {shards['validation']} validation shard(s) in "
          f"{output_dir}: {len(jobs) - len(todo)} complete, {len(todo)} to write "
          f"({sum(j.size for j in todo)} images, {workers} threads)"
        + (f"; removed {removed} stale temporary file(s)" if removed else ""))

    converter = _Converter(image_dir, found.classes, resolution=resolution, jpeg_quality=jpeg_quality,
                           on_corrupt=on_corrupt, log=log)
    written = converter.write(writer, found, todo, workers)
    manifest = _finish(writer, plan, found, log)
    log(f"wrote {len(written)} shard(s) in {time.perf_counter() - t_start:.1f}s; {manifest['skipped_count']} file(s) "
        f"skipped; {_join(output_dir, MANIFEST)}. Train with --hparams_overrides {manifest['hparams_overrides']}")
    return {"written": written, "kept": [j.name for j in jobs if j not in todo], "manifest": manifest,
            "seconds": time.perf_counter() - t_start}


def _check_request(image_dir: str, output_dir: str, *, validation_fraction: float, resolution: Optional[int],
                   on_corrupt: str, seed: int, jpeg_quality: int) -> Tuple[str, str]:
    """One-line UserErrors for flags that cannot work; (image_dir, output_dir) without trailing slashes."""
    if on_corrupt not in ON_CORRUPT:
        raise UserError(f"--on_corrupt={on_corrupt}: use skip (leave the file out and list it in {MANIFEST}) or fail")
    if not 0.0 <= validation_fraction < 1.0:
        raise UserError(f"--validation_fraction={validation_fraction}: must be in [0, 1) (e.g. 0.1 holds out 10% "
                        f"of each class)")
    if resolution is not None and resolution < 1:
        raise UserError(f"--resolution={resolution}: must be >= 1 (or omit it to store the images as they are)")
    if not 1 <= jpeg_quality <= 100:
        raise UserError(f"--jpeg_quality={jpeg_quality}: must be in 1..100")
    if not 0 <= int(seed) <= seeds.MAX_SEED:
        raise UserError(f"--seed={seed}: must be in [0, {seeds.MAX_SEED}]")
    image_dir = image_dir.rstrip("/") or "/"
    output_dir = output_dir.rstrip("/") or "/"
    if output_dir == image_dir or output_dir.startswith(image_dir + "/"):
        raise UserError(f"--output_dir={output_dir} lies inside --image_dir={image_dir}: a rerun would find the "
                        f"shards as images; write them elsewhere")
    return image_dir, output_dir


@dataclasses.dataclass
class _Found:
    """What the folder(s) hold: classes, each split's (file, class id) list, ignored files."""

    classes: List[str]
    splits: Dict[str, List[Tuple[str, int]]]  # "train" / "validation" -> interleaved items
    ignored: List[Tuple[str, str]]  # (path, why)
    validation_source: Optional[str]  # the val tree, "validation_fraction" or None


def _collect(image_dir: str, validation_fraction: float, seed: int) -> _Found:
    """Scans `image_dir` (and a `val` tree beside it) and splits each class into train / validation."""
    train_scan = scan_folder(image_dir)
    classes = train_scan.classes
    val_dir = _join(_parent(image_dir), VAL_FOLDER)
    use_val_tree = (os.path.basename(image_dir) != VAL_FOLDER and tf.io.gfile.isdir(val_dir))
    if use_val_tree and validation_fraction > 0:
        raise UserError(f"--validation_fraction={validation_fraction} and a validation tree {val_dir} both give a "
                        f"validation split: pass only one (omit --validation_fraction to use {val_dir})")
    ignored = [(_join(image_dir, rel), why) for rel, why in train_scan.ignored]
    if use_val_tree:
        val_scan = scan_folder(val_dir, flag=f"the validation tree {val_dir} (beside --image_dir)", require_all=False)
        extra = sorted(set(val_scan.classes) - set(classes))
        if extra:
            raise UserError(f"the validation tree {val_dir} has class folder(s) {', '.join(extra[:5])} that "
                            f"--image_dir={image_dir} does not have; both must name the same classes")
        train_files = [[_join(image_dir, f) for f in train_scan.files[c]] for c in classes]
        val_files = [[_join(val_dir, f) for f in val_scan.files.get(c, [])] for c in classes]
        ignored += [(_join(val_dir, rel), why) for rel, why in val_scan.ignored]
        validation_source = val_dir
    else:
        train_files, val_files = [], []
        for c in classes:
            tr, va = split_class(train_scan.files[c], validation_fraction, seed, c)
            train_files.append([_join(image_dir, f) for f in tr])
            val_files.append([_join(image_dir, f) for f in va])
        validation_source = "validation_fraction" if validation_fraction > 0 else None
    splits = {"train": interleave(train_files), "validation": interleave(val_files)}
    return _Found(classes, splits, ignored, validation_source)


def _plan_jobs(splits: Dict[str, List[Tuple[str, int]]], num_shards: Optional[int]) -> Tuple[Dict[str, int], List[Shard]]:
    """({split: shard count}, the shards to write): contiguous runs of each split's interleaved items
    (`shards.plan_shards`)."""
    n_train, n_val = len(splits["train"]), len(splits["validation"])
    shards = {"train": shard_count(n_train, num_shards)}
    shards["validation"] = shard_count(n_val, -(-num_shards * n_val // max(n_train, 1)) if num_shards else None)
    return shards, [s for split, items in splits.items() for s in plan_shards(split, len(items), shards[split])]


def _items(found: _Found, shard: Shard) -> List[Tuple[str, int]]:
    """The (source file, class id) of the images of `shard`."""
    return found.splits[shard.prefix][shard.start:shard.end]


class _Converter:
    """Converts the images of shards on a thread pool; each shard and its marker go through the writer."""

    def __init__(self, image_dir: str, classes: Sequence[str], *, resolution: Optional[int],
                 jpeg_quality: int, on_corrupt: str, log: Callable[[str], None]):
        self.image_dir, self.class_of = image_dir, dict(enumerate(classes))
        self.resolution, self.jpeg_quality, self.on_corrupt, self.log = resolution, jpeg_quality, on_corrupt, log
        self.done_images, self.todo_images = 0, 0
        self.t0 = self.last_log = time.perf_counter()

    def write(self, writer: ShardWriter, found: _Found, todo: Sequence[Shard], workers: int) -> List[str]:
        """Writes the shards `todo`, each with its statistics in its marker; the names written."""
        written = []
        self.done_images, self.todo_images = 0, sum(j.size for j in todo)
        self.t0 = self.last_log = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            for n_job, job in enumerate(todo):
                stats = ShardStats()
                count = writer.write(job, self._records(job.name, _items(found, job), stats, pool),
                                     marker=lambda stats=stats: dataclasses.asdict(stats))
                written.append(job.name)
                elapsed = time.perf_counter() - self.t0
                self.log(f"{job.name} ({n_job + 1}/{len(todo)}): {count} images"
                         + (f", {len(stats.skipped)} skipped" if stats.skipped else "")
                         + f"; {self.done_images / max(elapsed, 1e-9):.1f} images/s")
        return written

    def _convert(self, item):
        """(Converted, None) or (None, why the file cannot be stored)."""
        path, _ = item
        try:
            return convert(_read_file(path), self.resolution, self.jpeg_quality), None
        except CorruptImage as exc:
            return None, str(exc)
        except tf.errors.OpError as exc:
            return None, f"cannot be read ({exc.message.splitlines()[0][:200]})"

    def _records(self, name: str, items: Sequence[Tuple[str, int]], stats: ShardStats, pool):
        """The shard's serialized Examples, in item order; bad files skipped (counted) or fatal."""
        image_dir = self.image_dir
        for (path, label), (converted, error) in zip(items, pool.map(self._convert, items)):
            self.done_images += 1
            rel = path[len(image_dir) + 1:] if path.startswith(image_dir + "/") else path
            if converted is None:
                if self.on_corrupt == "fail":
                    raise UserError(f"{path}: {error}. Remove or replace the file, or give --on_corrupt=skip "
                                    f"to leave it out (it is then listed in {MANIFEST})")
                stats.skipped.append([path, error])
                self.log(f"skipped {path}: {error}")
                continue
            stats.add(self.class_of[label], converted)
            yield tfrecord.make_example(
                converted.jpeg, label, height=converted.height, width=converted.width,
                synset=self.class_of[label], filename=rel).SerializeToString(deterministic=True)
            if time.perf_counter() - self.last_log > LOG_EVERY_SECONDS:
                self.last_log = time.perf_counter()
                rate = self.done_images / max(self.last_log - self.t0, 1e-9)
                self.log(f"  {name}: {self.done_images}/{self.todo_images} images, {rate:.1f} images/s")


def _finish(writer: ShardWriter, plan: dict, found: _Found, log: Callable[[str], None]) -> dict:
    """Writes the manifest once every shard is complete; warns of classes a split lacks."""
    classes, output_dir = found.classes, writer.output_dir
    manifest, missing = writer.finish(lambda markers: _manifest(plan, writer.shards, markers, classes, found.ignored,
                                                                output_dir))
    if missing:  # only if the files changed under us
        raise UserError(f"shard(s) {', '.join(missing[:3])} of {output_dir} are not complete after writing them; "
                        f"rerun --mode=prepare_data")
    for split in ("train", "validation"):
        per_class = manifest["splits"].get(split, {}).get("count_per_class", {})
        empty = [c for c in classes if per_class.get(c, 0) == 0]
        if empty and (split == "train" or manifest["splits"].get(split)):
            log(f"warning: {split} split has no images of class(es) {', '.join(empty[:5])}"
                + (" (all skipped)" if split == "train" else ""))
    return manifest


def _manifest(plan: dict, jobs: Sequence[Shard], markers: Dict[str, dict], classes: Sequence[str],
              ignored: Sequence[Tuple[str, str]], output_dir: str) -> dict:
    stats = [markers[j.name] for j in jobs]
    splits = {}
    for split in ("train", "validation"):
        mine = [markers[j.name] for j in jobs if j.prefix == split]
        if mine:
            splits[split] = dict(_summary(mine, classes), pattern=_join(output_dir, f"{split}-*"),
                                 num_shards=len(mine))
    records = [s for s in stats if s["records"]]
    n = sum(s["records"] for s in records)
    sizes = {}
    if records:
        for axis, key in ((0, "height"), (1, "width")):
            sizes[key] = {"min": min(s["min_hw"][axis] for s in records),
                          "max": max(s["max_hw"][axis] for s in records),
                          "mean": sum(s["sum_hw"][axis] for s in records) / n}
    formats: Dict[str, int] = {}
    for s in stats:
        for k, v in s["formats"].items():
            formats[k] = formats.get(k, 0) + v
    skipped = [{"file": f, "reason": r} for s in stats for f, r in s["skipped"]]
    overrides = [f"data.kind=tfrecord", f"data.num_classes={len(classes)}",
                 f"data.pattern={splits['train']['pattern']}"]
    if "validation" in splits:
        overrides.append(f"eval.validation_pattern={splits['validation']['pattern']}")
    return dict(
        plan, format="imagenet_tfrecord", origin="image_folder", label_offset=tfrecord.LABEL_OFFSET,
        labels_file=LABELS, num_classes=len(classes), splits=splits,
        source_sizes=sizes, source_formats=dict(sorted(formats.items())),
        stored_as_is=sum(s["passed_through"] for s in stats),
        skipped=sorted(skipped, key=lambda d: d["file"]), skipped_count=len(skipped),
        ignored=[{"file": f, "reason": r} for f, r in ignored],
        hparams_overrides=",".join(overrides))


def run_prepare_data(hp, request: PrepareDataRequest) -> dict:
    """`--mode=prepare_data --image_dir=DIR --output_dir=OUT` (main.py has checked both are given;
    `request.num_shards` is None unless --num_shards was typed: its default, 1024, is synthesize's)."""
    del hp  # the import depends on the flags only; the shards then train under any configuration
    return prepare_data(request.image_dir, request.output_dir, validation_fraction=request.validation_fraction,
                        resolution=request.resolution, on_corrupt=request.on_corrupt, seed=request.seed,
                        jpeg_quality=request.jpeg_quality, num_shards=request.num_shards)
