"""Atomic writes: the ONE way tf_biggan puts a file or a directory where a reader may look.

Nothing a run writes is ever seen half-written (a killed process leaves the old file, or none):
the content goes to a temporary name beside the target, then one rename puts it in place.
Local paths use `os.replace` (atomic on POSIX); remote paths (`gs://...`) go through
`tf.io.gfile` with `rename(overwrite=True)`, the closest an object store offers.

    write_bytes(path, data)      write_text(path, text)      write_json(path, obj)
    save_npz(path, **arrays)     with directory(path) as tmp: ...  (a whole directory)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import uuid


def _is_remote(path: str) -> bool:
    return "://" in str(path)


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` atomically (temp file in the same directory + rename)."""
    path = str(path)
    if _is_remote(path):
        import tensorflow as tf

        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with tf.io.gfile.GFile(tmp, "wb") as f:
            f.write(data)
        tf.io.gfile.rename(tmp, path, overwrite=True)
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj, indent: int = 2) -> None:
    """JSON with sorted keys (stable diffs between runs), written atomically."""
    write_text(path, json.dumps(obj, indent=indent, sort_keys=True, default=_json_default) + "\n")


def _json_default(value):
    # numpy scalars and arrays appear in reports; they serialise as plain numbers / lists.
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def save_npz(path: str, **arrays) -> None:
    """numpy `savez` to `path`, atomically."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


@contextlib.contextmanager
def directory(path: str):
    """Yields a fresh temporary directory beside `path`; on success it replaces `path` whole.

    An existing `path` is moved aside, the new one renamed in, the old one deleted, so a reader
    sees either the complete old directory or the complete new one. On an exception the
    temporary directory is removed and `path` is untouched. Local paths only (SavedModels and
    caches are written locally, then copied if needed).
    """
    path = os.path.abspath(str(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}-")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}-old-")
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old:
        shutil.rmtree(old, ignore_errors=True)
