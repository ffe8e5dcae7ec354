"""Atomic writes: the ONE way tf_biggan puts a file or a directory where a reader may look.

Nothing a run writes is ever seen half-written (a killed process leaves the old file, or none):
the content goes to a temporary name beside the target, then one rename puts it in place.
Local paths use `os.replace` (atomic on POSIX, no TensorFlow import needed); remote paths
(`gs://...`, `ram://...`) go through `tf.io.gfile` with `rename(overwrite=True)`, the closest an
object store offers.

    write_bytes(path, data)      write_text(path, text)      write_json(path, obj)
    save_npz(path, **arrays)     with directory(path) as tmp: ...  (a whole directory)
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
import uuid


TEMP_MARK = ".tmp-"  # every temporary is ".<final basename>.tmp-<random>", beside its target


from tf_biggan.paths import is_remote as _is_remote  # noqa: E402 (gs://, ram://: through tf.io.gfile)


def temporary_path(path: str) -> str:
    """A fresh temporary name beside `path` (for writers that stream, e.g. TFRecord shards)."""
    directory, base = os.path.split(str(path))
    return os.path.join(directory, f".{base}{TEMP_MARK}{uuid.uuid4().hex}")


def temporary_owner(name: str):
    """The final basename a temporary file name belongs to, or None if `name` is not a temporary:
    lets a resumed job delete the leftovers of its own killed writes."""
    if not name.startswith("."):
        return None
    head, sep, _ = name[1:].partition(TEMP_MARK)
    return head if sep and head else None


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` atomically (temp file in the same directory + rename)."""
    path = str(path)
    if _is_remote(path):
        import tensorflow as tf

        tmp = temporary_path(path)
        tf.io.gfile.makedirs(os.path.dirname(path))  # as locally (and listable on every file system)
        with tf.io.gfile.GFile(tmp, "wb") as f:
            f.write(data)
        tf.io.gfile.rename(tmp, path, overwrite=True)
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}{TEMP_MARK}")
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
    """JSON with sorted keys (stable diffs between runs), written atomically. NaN and inf become
    null (JSON has no NaN: a failed metric must not make a report unreadable)."""
    write_text(path, json.dumps(_finite(obj), indent=indent, sort_keys=True, default=_json_default,
                                allow_nan=False) + "\n")


def _finite(value):
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()  # numpy scalars and arrays
        if isinstance(value, list):
            return _finite(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


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

    Local: an existing `path` is moved aside, the new one renamed in, the old one deleted, so a
    reader sees either the complete old directory or the complete new one. Remote (gs://): object
    stores have no directory rename, so the content is written beside `path` first and moved in
    file by file once complete (a killed writer leaves the old directory whole; the swap itself is
    a few server-side renames). On an exception the temporary directory is removed and `path` is
    untouched.
    """
    if _is_remote(path):
        with _remote_directory(str(path)) as tmp:
            yield tmp
        return
    path = os.path.abspath(str(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}{TEMP_MARK}")
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(path)}{TEMP_MARK}old-")
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _remote_directory(path: str):
    import tensorflow as tf

    gfile = tf.io.gfile
    path = path.rstrip("/")
    tmp = temporary_path(path)
    gfile.makedirs(tmp)
    try:
        yield tmp
    except BaseException:
        with contextlib.suppress(Exception):
            gfile.rmtree(tmp)
        raise
    if gfile.exists(path):
        gfile.rmtree(path)
    gfile.makedirs(path)
    for root, _, files in gfile.walk(tmp):
        target_root = path + root[len(tmp):]
        gfile.makedirs(target_root)
        for name in files:
            gfile.rename(f"{root.rstrip('/')}/{name}", f"{target_root.rstrip('/')}/{name}", overwrite=True)
    gfile.rmtree(tmp)
