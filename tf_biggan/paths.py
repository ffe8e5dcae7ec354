"""Paths that may name a remote file system: `gs://bucket/run` on Cloud TPU, `ram://run` in tests.

A TPU VM's disk is lost on preemption and the TPU workers read from Cloud Storage, so every file
the project reads or writes goes through `tf.io.gfile` (or `tf_biggan.atomic`, which uses it for
remote paths). The Python built-ins would silently write a local folder named `gs:` instead.
`os.path.join` / `basename` / `dirname` are string operations and stay correct on URLs; `abspath`
and `relpath` are not (they prepend the working directory), hence `absolute` and `relative` here.

tests/test_remote_paths.py fails on a bare `open` / `os.*` file call / `shutil` call in tf_biggan/
outside its short allow-list of places that must be local.
"""

from __future__ import annotations

import json
import os
from typing import Optional


def is_remote(path) -> bool:
    """True for a URL such as gs://bucket/x or ram://x (anything with a scheme)."""
    return "://" in str(path)


def absolute(path: str) -> str:
    """`os.path.abspath` for local paths (with ~ expanded); a remote path is already absolute."""
    path = str(path)
    return path if is_remote(path) else os.path.abspath(os.path.expanduser(path))


def relative(path: str, start: str) -> str:
    """`path` relative to `start` (for links in a report beside its pictures), remote paths too."""
    path, start = str(path), str(start)
    if is_remote(path) or is_remote(start):
        prefix = start.rstrip("/") + "/"
        return path[len(prefix):] if path.startswith(prefix) else path
    return os.path.relpath(path, start)


def exists(path: str) -> bool:
    """`tf.io.gfile.exists`; a local path is answered without importing TensorFlow (hparams are
    validated before TF starts, so a typo fails in a second)."""
    if not is_remote(path):
        return os.path.exists(os.path.expanduser(str(path)))
    import tensorflow as tf

    return tf.io.gfile.exists(path)


def read_text(path: str) -> str:
    """The text at `path`: remote through `tf.io.gfile`; local without importing TensorFlow."""
    if not is_remote(path):
        with open(os.path.expanduser(str(path)), encoding="utf-8") as f:
            return f.read()
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "r") as f:
        return f.read()


def read_json(path: str):
    """The JSON document at `path` (local or remote); exceptions as `json.loads` / gfile raise them."""
    return json.loads(read_text(path))


def read_json_or_none(path: str) -> Optional[dict]:
    """The JSON document at `path`, or None when it is missing or unreadable (a report not yet made)."""
    try:
        return read_json(path)
    except (OSError, ValueError):
        return None
    except Exception as exc:  # noqa: BLE001 -- gfile's NotFoundError / PermissionDenied (tf.errors.OpError)
        if type(exc).__module__.startswith("tensorflow"):
            return None
        raise


def existing_file(path: str) -> bool:
    """True when `path` exists and is not a directory. Local paths are answered without importing
    TensorFlow (main.py checks directory flags before TF starts); remote ones through gfile."""
    if not path:
        return False
    if not is_remote(path):
        path = os.path.expanduser(path)
        return os.path.exists(path) and not os.path.isdir(path)
    import tensorflow as tf

    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def load_npz(path: str) -> dict:
    """The arrays of the .npz at `path` (local or remote), read whole (`np.load` wants a seekable file)."""
    import io

    import numpy as np
    import tensorflow as tf

    with tf.io.gfile.GFile(path, "rb") as f:
        data = f.read()
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        return {k: arrays[k] for k in arrays.files}
