"""`data.class_map`: which ImageNet class each of the user's classes starts from when fine-tuning.

Fine-tuning an imported official generator (`--mode=import_hub`) on N classes of one's own keeps
G's trained weights, but the shared class embedding (Section 3: one 128-d row per class, projected
by every BN gain and bias) has the module's 1000 ImageNet rows. A user's class usually has an
obvious ImageNet neighbour (a dog breed, a bird, a car model); starting its row from that class's
row starts G on images of the neighbour instead of on an untrained conditioning vector.

The map is a small text file, written against `--mode=prepare_data`'s `labels.txt` (line k = the
name of class k, folders in sorted order), one line per mapped class:

    # my class          ImageNet index (0-based, as the modules' y / pytorch-pretrained-BigGAN)
    golden_retriever    207
    tabby cat           281

The name is everything before the last field (so folder names with spaces work); blank lines and
lines starting with '#' are skipped. Without a labels.txt beside the shards (data.kind digits or
tfds, or shards written by other tools) the names are the class ids 0 .. N-1. Classes left out of
the map start from the fresh initialiser's row (a seeded random direction) rescaled to the mean
norm of the module's rows, the scale every BN projection of G was trained on; several classes may
share one ImageNet class. Every problem is a one-line UserError naming the file and the line.

Reading is TF-free for local files (validated before TensorFlow starts); the start rows are numpy.
"""

from __future__ import annotations

import difflib
import os
from typing import Dict, List, Optional

import numpy as np

from tf_biggan import paths
from tf_biggan.errors import UserError

LABELS = "labels.txt"  # data/image_folder.py writes it beside the shards


def labels_path(data_cfg) -> Optional[str]:
    """`labels.txt` beside the run's TFRecord shards (the directory of data.pattern), or None."""
    if data_cfg.kind != "tfrecord" or not data_cfg.pattern:
        return None
    path = os.path.join(os.path.dirname(data_cfg.pattern), LABELS)
    return path if paths.existing_file(path) else None


def read_labels(path: str) -> List[str]:
    """Class names in label order, one per line (prepare_data's labels.txt)."""
    return [line.rstrip("\r") for line in paths.read_text(path).split("\n") if line.strip()]


def _class_index(name: str, names: Optional[List[str]], num_classes: int, where: str, labels: Optional[str]) -> int:
    if names is not None:
        if name in names:
            return names.index(name)
        close = difflib.get_close_matches(name, names, n=1)
        raise UserError(f"{where}: class {name!r} is not in {labels}"
                        + (f" (did you mean {close[0]!r}?)" if close else "")
                        + ": name the classes as labels.txt does (its folder names)")
    if name.isdigit() and int(name) < num_classes:
        return int(name)
    raise UserError(f"{where}: class {name!r}: without a labels.txt beside data.pattern's shards the classes are "
                    f"the ids 0..{num_classes - 1}; write a class id, or point data.pattern at prepare_data's shards")


def parse_class_map(text: str, path: str, num_classes: int, names: Optional[List[str]] = None,
                    labels: Optional[str] = None, module_classes: int = 1000) -> Dict[int, int]:
    """{user class id: ImageNet index} from the map's `text` (read from `path`, named in errors)."""
    mapping: Dict[int, int] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"data.class_map={path} line {number}"
        fields = line.rsplit(None, 1)
        if len(fields) != 2:
            raise UserError(f"{where}: {line!r} is not 'CLASS IMAGENET_INDEX' (a class name, then its ImageNet index)")
        name, index_text = fields
        try:
            index = int(index_text)
        except ValueError:
            raise UserError(f"{where}: {index_text!r} is not an ImageNet class index (an integer "
                            f"0..{module_classes - 1})") from None
        if not 0 <= index < module_classes:
            raise UserError(f"{where}: ImageNet index {index} is out of range: the module has classes 0..{module_classes - 1}")
        k = _class_index(name, names, num_classes, where, labels)
        if k in mapping:
            raise UserError(f"{where}: class {name!r} is mapped twice (to {mapping[k]} and {index}); keep one line per class")
        mapping[k] = index
    if not mapping:
        raise UserError(f"data.class_map={path} maps no class: write one 'CLASS IMAGENET_INDEX' line per class")
    return mapping


def read_class_map(data_cfg, module_classes: int = 1000) -> Dict[int, int]:
    """The run's data.class_map, validated against its labels.txt and data.num_classes ({} without one)."""
    path = data_cfg.class_map
    if not path:
        return {}
    if not paths.existing_file(path):
        raise UserError(f"data.class_map={path}: no such file; write one 'CLASS IMAGENET_INDEX' line per class")
    labels = labels_path(data_cfg)
    names = read_labels(labels) if labels else None
    if names is not None and len(names) != data_cfg.num_classes:
        raise UserError(f"data.class_map={path}: {labels} names {len(names)} classes but data.num_classes is "
                        f"{data_cfg.num_classes}; set data.num_classes={len(names)}")
    return parse_class_map(paths.read_text(path), path, data_cfg.num_classes, names, labels, module_classes)


def start_rows(module_rows: np.ndarray, fresh_rows: np.ndarray, mapping: Dict[int, int]) -> np.ndarray:
    """The class embedding a fine-tune starts from: row k = the module's row mapping[k] for a mapped
    class, else fresh row k (the run's seeded initialiser) rescaled to the mean norm of the module's rows."""
    module_rows = np.asarray(module_rows, np.float64)
    fresh_rows = np.asarray(fresh_rows, np.float64)
    mean_norm = float(np.mean(np.linalg.norm(module_rows, axis=1)))
    norms = np.linalg.norm(fresh_rows, axis=1, keepdims=True)
    rows = fresh_rows * (mean_norm / np.where(norms > 0, norms, 1.0))
    for k, index in mapping.items():
        rows[k] = module_rows[index]
    return rows.astype(np.float32)
