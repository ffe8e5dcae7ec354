"""What a CAS classifier trains and is scored on: `--train_data` / `--eval_data` sources and mixtures.

A source spec is one comma-separated entry of the flag:

    GLOB                 ImageNet-layout TFRecords (1-based image/class/label, JPEG image/encoded), as
                         the ImageNet converter and `--mode=synthesize` write them. "synthetic" if the
                         files' directory holds synthesize's manifest.json / plan, else "real";
    real:GLOB, synthetic:GLOB   the same with the kind stated;
    digits:train, digits:test   the embedded digits (tf_biggan/data/digits.py), real, in memory.

Every record's label is read once (labels only, no image decode) into an index, cached under
MODEL_DIR/cas_index/ (keyed by the files' paths and sizes) so a resumed run does not read it again.
The scan is where bad data is caught, with the file named: a file that is not TFRecord or is cut
short, a record that is not an Example, has no JPEG, no label, several labels, or a label outside
1..data.num_classes as stored.

Mixtures (Azizi et al. 2023 Table A.3: the real training set plus k synthetic images): with
`cas.synthetic_images` = k or `cas.synthetic_fraction` = f (k = round(f x real / (1 - f))) every real
image is kept and k synthetic images are drawn, class-balanced (k // C per class, the k % C extra
images to classes picked at random), without replacement, from the seeded stream "cas_mixture".
Without real sources, k synthetic images are drawn alone (a smaller synthetic training set).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_biggan import atomic, paths, seeds
from tf_biggan.data import digits, tfrecord
from tf_biggan.errors import UserError

KINDS = ("real", "synthetic")
SYNTHESIS_MARKERS = ("manifest.json", ".synthesize_plan.json")
SCAN_BATCH = 4096
SCAN_THREADS = 16


@dataclasses.dataclass
class Source:
    """One --train_data / --eval_data entry: its records' labels and which of them are used."""

    spec: str
    kind: str  # "real" | "synthetic"
    files: List[str]  # TFRecord files (empty for digits)
    labels: np.ndarray  # int64 [N] 0-based, every record in file order
    offsets: np.ndarray  # int64 [len(files) + 1]: records of file i are offsets[i]:offsets[i+1]
    digits_split: Optional[str] = None
    keep: Optional[np.ndarray] = None  # bool [N]; None = all

    @property
    def kept(self) -> np.ndarray:
        return np.ones(len(self.labels), bool) if self.keep is None else self.keep

    def count(self) -> int:
        return int(self.kept.sum())

    def per_class(self, num_classes: int) -> List[int]:
        return np.bincount(self.labels[self.kept], minlength=num_classes).astype(int).tolist()


def _is_synthesis_marker(path: str) -> bool:
    # --mode=prepare_data writes a manifest.json beside REAL images too; it says so ("origin").
    if not tf.io.gfile.exists(path):
        return False
    if os.path.basename(path) != "manifest.json":
        return True
    try:
        with tf.io.gfile.GFile(path) as f:
            return json.load(f).get("origin") != "image_folder"
    except (ValueError, AttributeError, tf.errors.OpError):
        return True


def _is_synthetic(files: Sequence[str]) -> bool:
    dirs = {os.path.dirname(f) for f in files}
    return all(any(_is_synthesis_marker(os.path.join(d, m)) for m in SYNTHESIS_MARKERS) for d in dirs)


def _scan_file(path: str, num_classes: int, flag: str) -> np.ndarray:
    """0-based labels of every record of one file; UserError naming the file and record if bad."""
    def parse(serialized):
        encoded, labels = tfrecord.parse_record(serialized)
        first = tf.cond(tf.size(labels) > 0, lambda: labels[0], lambda: tf.constant(-2, tf.int64))
        return tf.size(labels), first, tf.io.is_jpeg(encoded)

    ds = tf.data.TFRecordDataset(path).map(parse).batch(SCAN_BATCH)
    counts, labels, jpeg = [], [], []
    try:
        for c, l, j in ds:
            counts.append(c.numpy()), labels.append(l.numpy()), jpeg.append(j.numpy())
    except tf.errors.DataLossError as exc:
        raise UserError(f"{flag}: file {path} is not a TFRecord file or is truncated/damaged "
                        f"({exc.message.splitlines()[0][:200]})") from None
    except tf.errors.InvalidArgumentError:
        raise UserError(f"{flag}: file {path} holds a record that is not a tf.train.Example "
                        f"(not an ImageNet-layout TFRecord)") from None
    if not counts:
        return np.zeros([0], np.int64)
    counts, labels, jpeg = np.concatenate(counts), np.concatenate(labels), np.concatenate(jpeg)
    for problem, what in ((counts == 0, "has no image/class/label"),
                          (counts > 1, "has several labels (CAS trains on single-label records)"),
                          (~jpeg, "has no JPEG image/encoded")):
        if problem.any():
            raise UserError(f"{flag}: record {int(np.argmax(problem))} of {path} {what}")
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise UserError(f"{flag}: record {i} of {path} has label {int(labels[i]) + tfrecord.LABEL_OFFSET} "
                        f"outside 1..{num_classes} (labels as stored; ImageNet TFRecords are 1-based). "
                        f"Check data.num_classes={num_classes} and the file")
    return labels.astype(np.int64)


def _index(files: Sequence[str], num_classes: int, flag: str, cache_dir: Optional[str]):
    sizes = [int(tf.io.gfile.stat(f).length) for f in files]
    key = hashlib.sha256(json.dumps([list(files), sizes, num_classes]).encode()).hexdigest()[:24]
    path = os.path.join(cache_dir, f"{key}.npz") if cache_dir else None
    if path and tf.io.gfile.exists(path):
        cached = paths.load_npz(path)
        return cached["labels"], cached["offsets"]
    # Files are scanned in parallel: on gs:// each is mostly waiting for bytes (ImageNet: 1,024 shards).
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(SCAN_THREADS, len(files)))) as pool:
        per_file = list(pool.map(lambda f: _scan_file(f, num_classes, flag), files))
    labels = np.concatenate(per_file) if per_file else np.zeros([0], np.int64)
    offsets = np.cumsum([0] + [len(p) for p in per_file]).astype(np.int64)
    if path:
        atomic.save_npz(path, labels=labels, offsets=offsets)
    return labels, offsets


def parse_sources(text: str, flag: str, num_classes: int, cache_dir: Optional[str] = None) -> List[Source]:
    """`--train_data` / `--eval_data` text -> sources with their label index (module docstring)."""
    entries = [e.strip() for e in (text or "").split(",") if e.strip()]
    if not entries:
        raise UserError(f"{flag} is empty: pass TFRecord globs (e.g. /data/synthetic/train-*), "
                        f"or digits:train / digits:test for the embedded digits")
    out = []
    for entry in entries:
        kind = None
        body = entry
        head, sep, rest = entry.partition(":")
        if sep and head in KINDS:
            kind, body = head, rest
        if body.startswith("digits:"):
            split = body.split(":", 1)[1]
            if split not in digits.SPLITS:
                raise UserError(f"{flag}: {entry!r}: the digits have splits {', '.join(digits.SPLITS)}")
            if num_classes != digits.NUM_CLASSES:
                raise UserError(f"{flag}: {entry!r}: the digits have 10 classes; set data.num_classes=10")
            _, labels = digits.load_digits_split(split)
            out.append(Source(entry, kind or "real", [], labels.astype(np.int64), np.zeros([1], np.int64),
                              digits_split=split))
            continue
        files = tfrecord.list_files(body, key=flag)
        labels, offsets = _index(files, num_classes, flag, cache_dir)
        if not len(labels):
            raise UserError(f"{flag}: {body!r} matches files with no records")
        out.append(Source(entry, kind or ("synthetic" if _is_synthetic(files) else "real"), files, labels, offsets))
    return out


def balanced_targets(total: int, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """total // C per class, plus one for total % C classes chosen by `rng`."""
    targets = np.full(num_classes, total // num_classes, np.int64)
    targets[rng.permutation(num_classes)[:total % num_classes]] += 1
    return targets


def select_mixture(sources: List[Source], cas, num_classes: int) -> Dict:
    """Sets `keep` on the synthetic sources for cas.synthetic_images / _fraction; returns the counts."""
    real = [s for s in sources if s.kind == "real"]
    synthetic = [s for s in sources if s.kind == "synthetic"]
    if cas.synthetic_images or cas.synthetic_fraction:
        n_real = sum(s.count() for s in real)
        if cas.synthetic_fraction and not n_real:
            raise UserError("cas.synthetic_fraction needs real --train_data to be a fraction of (e.g. "
                            "real:/data/imagenet/train-*,synthetic:/data/synthetic/train-*); use "
                            "cas.synthetic_images for a synthetic-only subset")
        if not synthetic:
            raise UserError("cas.synthetic_images / cas.synthetic_fraction: --train_data has no synthetic "
                            "source (prefix one glob with synthetic:)")
        k = cas.synthetic_images or int(round(cas.synthetic_fraction * n_real / (1 - cas.synthetic_fraction)))
        rng = seeds.numpy_rng("cas_mixture", cas.seed)
        targets = balanced_targets(k, num_classes, rng)
        # One pool over all synthetic sources: (source index, record index) per class.
        which = np.concatenate([np.full(len(s.labels), i) for i, s in enumerate(synthetic)])
        record = np.concatenate([np.arange(len(s.labels)) for s in synthetic])
        labels = np.concatenate([s.labels for s in synthetic])
        for s in synthetic:
            s.keep = np.zeros(len(s.labels), bool)
        for c in range(num_classes):
            pool = np.nonzero(labels == c)[0]
            if len(pool) < targets[c]:
                raise UserError(f"cas.synthetic_images: {targets[c]} synthetic images of class {c} requested but "
                                f"the synthetic sources hold {len(pool)}; synthesize more (--images_per_class) "
                                f"or ask for fewer")
            chosen = rng.choice(pool, size=int(targets[c]), replace=False)
            for i in chosen:
                synthetic[which[i]].keep[record[i]] = True
    n_real = sum(s.count() for s in real)
    n_syn = sum(s.count() for s in synthetic)
    return {
        "real_images": n_real, "synthetic_images": n_syn,
        "synthetic_fraction": n_syn / max(n_real + n_syn, 1),
        "sources": [{"spec": s.spec, "kind": s.kind, "files": len(s.files) or None, "records": len(s.labels),
                     "used": s.count(), "per_class": s.per_class(num_classes)} for s in sources],
    }
