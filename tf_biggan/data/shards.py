"""The one sharded writer: a resumable directory of ImageNet-layout TFRecord shards.

`--mode=prepare_data` (data/image_folder.py) and `--mode=synthesize` (synthesis/synthesize.py) both
write N shards `PREFIX-%05d-of-%05d` (the ImageNet converter's naming, `tfrecord.shard_path`) into
one directory that a killed or preempted run resumes. This module is what they share; each caller
keeps only how it makes its examples (decoding images, or generating them).

  * The plan: shard i of n holds examples [i * T // n, (i + 1) * T // n) of the caller's sequence
    of T (contiguous runs whose sizes differ by at most one, `shard_bounds`).
  * The plan pin: a hidden plan file holds every setting that fixes the shards' bytes; a rerun with
    other settings is refused with one line naming `--output_dir` and each setting that differs
    (`rerun.pin`), rather than mixing two outputs in one directory.
  * Atomic shards: a shard streams to a hidden temporary name and is renamed when complete
    (`tfrecord.write_shard`); its companions (e.g. synthesize's npz) and then a hidden `.NAME.done`
    marker follow, both through `tf_biggan.atomic`. Every file goes through `tf.io.gfile`, so the
    directory may be gs:// or ram://.
  * Resume: a shard is complete when its marker's record count (plus the examples it skipped)
    equals its size, the marker's byte count equals the file's, and its required companions exist;
    a rerun removes the stale temporaries of a killed write of its own shards and writes only the
    incomplete ones. Complete shards are never rewritten.
  * The manifest (`manifest.json`) is written last, atomically, once every shard is complete (with
    several workers, by whichever finishes last).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from tf_biggan import atomic, paths, rerun
from tf_biggan.data import tfrecord
from tf_biggan.errors import UserError

MANIFEST = "manifest.json"


def shard_bounds(total: int, num_shards: int) -> List[Tuple[int, int]]:
    """[start, end) of each shard: contiguous, sizes differing by at most one."""
    return [(i * total // num_shards, (i + 1) * total // num_shards) for i in range(num_shards)]


@dataclasses.dataclass(frozen=True)
class Shard:
    """Shard `index` of a `prefix` split: examples [start, end) of that split's sequence."""

    prefix: str
    index: int
    name: str
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start


def plan_shards(prefix: str, total: int, num_shards: int) -> List[Shard]:
    """The `num_shards` shards of `total` examples named `prefix-%05d-of-%05d` (`shard_bounds`)."""
    return [Shard(prefix, i, os.path.basename(tfrecord.shard_path(prefix, i, num_shards)), start, end)
            for i, (start, end) in enumerate(shard_bounds(total, num_shards))]


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def marker_path(output_dir: str, name: str) -> str:
    """The hidden `.NAME.done` marker beside shard NAME."""
    return _join(output_dir, f".{name}.done")


class ShardWriter:
    """The shards of one output directory: pin, resume, write, finish (module docstring).

    `companions(name)`: paths relative to `output_dir` of files that travel with shard `name` (their
    stale temporaries are removed on resume); with `companions_required` a shard is complete only
    when they exist.
    """

    def __init__(self, output_dir: str, shards: Sequence[Shard], *,
                 companions: Callable[[str], Sequence[str]] = lambda name: (), companions_required: bool = False):
        self.output_dir, self.shards = output_dir, list(shards)
        self.companions, self.companions_required = companions, companions_required

    def path(self, shard: Shard) -> str:
        return _join(self.output_dir, shard.name)

    def pin(self, plan_file: str, plan: dict, what: str, how: str = "",
            notes: Optional[Mapping[str, str]] = None) -> None:
        """Creates the directory and pins `plan` in its hidden `plan_file`; a directory holding another
        plan is refused: "--output_dir=... holds shards of a different WHAT (setting: OLD there, NEW
        now; ...)". `how`: an example of the flags that resume it; `notes[key]`: why `key` may differ."""
        tf.io.gfile.makedirs(self.output_dir)

        def refusal(diffs) -> UserError:
            hints = "".join(f"; {notes[k]}" for k, _, _ in diffs if notes and k in notes)
            return UserError(f"--output_dir={self.output_dir} holds shards of a different {what} "
                             f"({rerun.describe(diffs)[:600]}{hints}). Rerun with the same flags{how} to resume "
                             f"it, or give a new --output_dir")

        rerun.pin(_join(self.output_dir, plan_file), plan, refusal)

    def complete(self, shard: Shard) -> Optional[dict]:
        """The shard's marker if it matches the file (records + skipped = size, bytes) and the required
        companions exist, else None."""
        path = self.path(shard)
        marker = paths.read_json_or_none(marker_path(self.output_dir, shard.name))
        if marker is None or not tf.io.gfile.exists(path):
            return None
        ok = (marker.get("records", -1) + len(marker.get("skipped", [])) == shard.size
              and marker.get("bytes") == tf.io.gfile.stat(path).length)
        if ok and self.companions_required:
            ok = all(tf.io.gfile.exists(_join(self.output_dir, c)) for c in self.companions(shard.name))
        return marker if ok else None

    def resume(self, owned: Optional[Sequence[Shard]] = None) -> Tuple[List[Shard], int]:
        """(the shards of `owned` (default all) still to write, stale temporaries removed): deletes
        the leftovers of killed writes of these shards, their markers and companions."""
        owned = self.shards if owned is None else list(owned)
        names = {s.name for s in owned}
        finals = set(names) | {f".{n}.done" for n in names}
        directories = {self.output_dir}
        for name in names:
            for rel in self.companions(name):
                finals.add(os.path.basename(rel))
                directories.add(_join(self.output_dir, os.path.dirname(rel)) if os.path.dirname(rel)
                                else self.output_dir)
        removed = sum(_remove_temporaries(d, finals) for d in sorted(directories))
        return [s for s in owned if self.complete(s) is None], removed

    def write(self, shard: Shard, serialized: Iterable[bytes], *, marker: Callable[[], dict] = dict,
              companions: Optional[Callable[[], None]] = None) -> int:
        """Writes the shard from its serialized Examples (atomically), then `companions()` (which write
        the shard's companion files), then its marker: `marker()` (called once the examples are
        consumed) with the record count and the file's size. Returns the record count."""
        path = self.path(shard)
        records = tfrecord.write_shard(path, serialized)
        if companions is not None:
            companions()
        atomic.write_json(marker_path(self.output_dir, shard.name),
                          dict(marker(), records=records, bytes=tf.io.gfile.stat(path).length))
        return records

    def finish(self, manifest: Callable[[Dict[str, dict]], dict]) -> Tuple[Optional[dict], List[str]]:
        """(manifest, []) once every shard is complete: `manifest({name: marker})` is written last, as
        `manifest.json`; (None, the incomplete shards' names) otherwise, writing nothing."""
        markers = {s.name: self.complete(s) for s in self.shards}
        missing = [name for name, m in markers.items() if m is None]
        if missing:
            return None, missing
        content = manifest(markers)
        atomic.write_json(_join(self.output_dir, MANIFEST), content)
        return content, []


def _remove_temporaries(directory: str, finals: Iterable[str]) -> int:
    """Deletes the temporaries (`atomic.temporary_owner`) of files named in `finals` from `directory`."""
    if not tf.io.gfile.isdir(directory):
        return 0
    finals, removed = set(finals), 0
    for entry in tf.io.gfile.listdir(directory):
        entry = entry.rstrip("/")
        if atomic.temporary_owner(entry) in finals:
            tf.io.gfile.remove(_join(directory, entry))
            removed += 1
    return removed
