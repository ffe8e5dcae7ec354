"""One entry point for real images: `make_dataset(data_cfg, resolution, batch_size, ...)`.

It dispatches on `data.kind`:

    tfrecord  ImageNet-layout TFRecord shards matching `data.pattern` (local or gs://), tfrecord.py
    tfds      a prepared TFDS dataset `data.name` / `data.split` / `data.data_dir`, tfds.py
    digits    the embedded scikit-learn digits, digits.py

and yields batches of (images float32 [B, R, R, 3] in [-1, 1], labels int32 [B], 0-based),
preprocessed as in the paper (Appendix C: "cropping along the long edge and rescaling to a given
resolution with area resampling", preprocess.py).

Shape of the pipeline (record sources):

    files of this host (InputContext: host i of n reads files i, i+n, ...; shuffled per epoch)
      -> interleave: read up to 16 files in parallel, records tagged (file, record index)
      -> parallel map: parse, check, decode, crop, area-resize, uint8
      -> bad-record check (data.on_corrupt) -> [data.cache: in memory, per host] -> shuffle -> repeat
      -> map: random flip (data.random_flip), pick one label of a multi-label record, [-1, 1]
      -> batch (per-replica size under an InputContext) -> prefetch

Bad data. A record is bad if it cannot be parsed, has no image, its image is not a JPEG (TFRecord
layout; TFDS also allows PNG/GIF/BMP), it cannot be decoded (e.g. truncated), or it has no label.
A file is damaged if its TFRecord framing breaks before its end (a truncated copy). With
`data.on_corrupt: fail` (default) reading stops with an error naming the file and the record
index; `with data_errors():` around the loop that pulls batches turns it into a `CorruptDataError`
(a UserError). With `skip` bad records are dropped, each logged with file and index and a running
total, and counted in an optional `ReadStats`. A label outside 0..num_classes-1 (1..num_classes as
stored in ImageNet shards), or several labels without `data.multi_label`, is a configuration error
and always fails.

How failures are found without a try/except inside the graph: every file's records are numbered
before decoding, decoding errors are dropped with `ignore_errors`, and a sequential check after
it sees the gap in the numbers (and a per-file end marker that catches a bad last record and a
file that ends early: its byte count, or for TFDS its record count, must come out exact).

Determinism: the file order, the shuffle, flips and multi-label draws all derive from `seed`
(default `data.seed`) and the host index; flips and draws use stateless RNG keyed by the
element's position in the stream, so they do not depend on thread scheduling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import sys
from typing import Callable, List, Optional, Sequence

import tensorflow as tf

from tf_biggan.data import digits, preprocess, tfrecord
from tf_biggan.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE
READ_BUFFER_BYTES = 8 << 20  # per open file, as in the Cloud TPU ImageNet input pipelines
MAX_OPEN_FILES = 16
_RECORD_FRAMING_BYTES = 16  # uint64 length + uint32 CRC + data + uint32 CRC
_MESSAGE_MARK = "tf_biggan.data: "

# The dataset functions here use tf.cond explicitly, never Python control flow on tensors:
# skipping AutoGraph's conversion makes building a pipeline several times faster.
_plain_graph = tf.autograph.experimental.do_not_convert

# Record status codes computed in the graph before decoding.
_OK, _NOT_IMAGE, _NO_IMAGE, _NO_LABEL, _BAD_LABEL, _MANY_LABELS, _END = range(7)


class CorruptDataError(UserError):
    """A bad record or damaged file under data.on_corrupt=fail, or a label that does not fit."""


@contextlib.contextmanager
def data_errors():
    """Turns the pipeline's in-graph data errors into `CorruptDataError` (a UserError).

    Wrap the code that pulls batches (a training loop, an evaluation) in it; other errors
    pass through unchanged.
    """
    try:
        yield
    except tf.errors.InvalidArgumentError as exc:
        match = re.search(re.escape(_MESSAGE_MARK) + r"([^\]\n]*)", exc.message or "")
        if not match:
            raise
        raise CorruptDataError(match.group(1).strip()) from None


class ReadStats:
    """Counters the reader updates under data.on_corrupt=skip (tf.Variables, int64).

    Create it outside any `strategy.scope()` (it is host-side bookkeeping, not a model variable).
    """

    def __init__(self):
        with tf.init_scope(), tf.device("/cpu:0"):
            self.skipped_records = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_records")
            self.damaged_files = tf.Variable(0, dtype=tf.int64, trainable=False, name="damaged_files")

    def as_dict(self) -> dict:
        return {"skipped_records": int(self.skipped_records.numpy()),
                "damaged_files": int(self.damaged_files.numpy())}


@dataclasses.dataclass(frozen=True)
class FileEntry:
    """One file to read: all records (take=-1, size = byte count) or records [skip, skip+take)."""

    path: str
    skip: int = 0
    take: int = -1
    size: int = -1


@dataclasses.dataclass
class RecordSource:
    """What the reader needs to know about a set of record files."""

    files: List[FileEntry]
    parse: Callable  # serialized -> (encoded image bytes, int64 vector of 0-based labels)
    decode: Callable  # (encoded, resolution) -> uint8 [R, R, 3]
    is_image: Callable  # encoded -> bool: worth trying to decode
    label_offset: int  # how labels are stored: stored = 0-based + offset (for messages)
    description: str
    image_kind: str = "a JPEG image"  # what is_image accepts, for messages


def _looks_like_image(encoded):
    head = tf.strings.substr(encoded, 0, 4)
    return (tf.io.is_jpeg(encoded) | tf.equal(head, b"\x89PNG") | tf.equal(head, b"GIF8")
            | tf.equal(tf.strings.substr(encoded, 0, 2), b"BM"))


def tfrecord_source(pattern: str) -> RecordSource:
    return RecordSource(
        files=[FileEntry(p, size=s) for p, s in tfrecord.list_files_with_sizes(pattern)],
        parse=tfrecord.parse_record, decode=preprocess.decode_jpeg_crop_and_resize,
        is_image=tf.io.is_jpeg, label_offset=tfrecord.LABEL_OFFSET,
        description=f"data.pattern={pattern!r}")


def tfds_record_source(data_cfg) -> RecordSource:
    from tf_biggan.data import tfds as tfds_data

    src = tfds_data.tfds_source(data_cfg.name, data_cfg.split, data_cfg.data_dir)
    if src.num_classes is not None and src.num_classes > data_cfg.num_classes:
        raise UserError(f"data.num_classes={data_cfg.num_classes} but TFDS {src.name!r} has "
                        f"{src.num_classes} classes: set data.num_classes={src.num_classes}")
    return RecordSource(
        files=[FileEntry(p, skip, take) for p, skip, take in src.files], parse=src.parse,
        decode=preprocess.decode_image_crop_and_resize, is_image=_looks_like_image, label_offset=0,
        description=f"data.name={src.name!r} split {src.split!r}",
        image_kind="an image (JPEG, PNG, GIF or BMP)")


def shard_for_host(files: Sequence, input_context: Optional[tf.distribute.InputContext],
                   description: str = "the data") -> list:
    """The files host `input_pipeline_id` of `num_input_pipelines` reads: every n-th, from i."""
    if input_context is None or input_context.num_input_pipelines <= 1:
        return list(files)
    n, i = input_context.num_input_pipelines, input_context.input_pipeline_id
    if len(files) < n:
        raise UserError(
            f"{description} has {len(files)} file(s) but there are {n} input pipelines (hosts); each "
            f"host reads whole files, so write the data as at least {n} shards (ImageNet: 1024)")
    return list(files[i::n])


def _read_records(source: RecordSource, entries: List[FileEntry], *, resolution: int, num_classes: int,
                  multi_label: bool, on_corrupt: str, training: bool, seed: int,
                  stats: Optional[ReadStats]) -> tf.data.Dataset:
    """Decoded, checked examples {"image": uint8 [R, R, 3], "labels": int64 [k], "ok": True}.

    Three stages (module docstring): read every file's records, numbered, with an end marker;
    decode them, dropping what fails; validate the sequence, which sees the drops as gaps.
    """
    files = _FileTable.of(entries)
    records = _numbered_records(files, training=training, seed=seed)
    records = _decode_records(records, source, resolution=resolution, num_classes=num_classes,
                              multi_label=multi_label)
    validator = _Validator(files, source.label_offset, source.image_kind, num_classes=num_classes,
                           skip=on_corrupt == "skip", stats=stats)
    return records.scan(validator.initial_state(), _plain_graph(validator.check)).filter(_is_ok)


@dataclasses.dataclass(frozen=True)
class _FileTable:
    """The files to read as tensors indexed by file id (int64): path, first record, record count
    (-1 = to the end) and byte size (-1 = unknown)."""

    count: int
    paths: tf.Tensor
    skips: tf.Tensor
    takes: tf.Tensor
    sizes: tf.Tensor

    @classmethod
    def of(cls, entries: Sequence[FileEntry]) -> "_FileTable":
        return cls(len(entries), tf.constant([e.path for e in entries]),
                   tf.constant([e.skip for e in entries], tf.int64),
                   tf.constant([e.take for e in entries], tf.int64),
                   tf.constant([e.size for e in entries], tf.int64))


def _numbered_records(files: _FileTable, *, training: bool, seed: int) -> tf.data.Dataset:
    """(fid, index, real, record, consumed bytes) of every record of every file, then one end marker
    per file (real = False); files shuffled per epoch when training, up to MAX_OPEN_FILES at once."""
    n = files.count
    ids = tf.data.Dataset.from_tensor_slices(tf.range(n, dtype=tf.int64))
    if training:
        ids = ids.shuffle(n, seed=seed, reshuffle_each_iteration=True)

    @_plain_graph
    def read_file(fid):
        # Framing errors (a truncated or overwritten file) end the file early: the end marker's
        # byte / record count then comes out short and the validation reports the file.
        raw = tf.data.TFRecordDataset(files.paths[fid], buffer_size=READ_BUFFER_BYTES).ignore_errors()
        raw = raw.skip(files.skips[fid]).take(files.takes[fid])
        raw = raw.map(_plain_graph(lambda r: (r, True))).concatenate(
            tf.data.Dataset.from_tensors((tf.constant(b""), False)))
        raw = raw.enumerate(start=files.skips[fid])

        @_plain_graph
        def count_bytes(consumed, element):
            index, (record, real) = element
            size = tf.cast(tf.strings.length(record), tf.int64) + _RECORD_FRAMING_BYTES
            consumed += tf.where(real, size, tf.constant(0, tf.int64))
            return consumed, (fid, index, real, record, consumed)

        return raw.scan(tf.constant(0, tf.int64), count_bytes)

    return ids.interleave(read_file, cycle_length=max(1, min(n, MAX_OPEN_FILES)),
                          num_parallel_calls=AUTOTUNE, deterministic=True)


def _decode_records(records: tf.data.Dataset, source: RecordSource, *, resolution: int, num_classes: int,
                    multi_label: bool) -> tf.data.Dataset:
    """Numbered records -> {"fid", "index", "consumed", "status", "image", "labels", "head"}; records
    that cannot be parsed or decoded are dropped (the validation sees the gap in "index")."""
    blank = tf.zeros([resolution, resolution, 3], tf.uint8)

    @_plain_graph
    def decode(fid, index, real, record, consumed):
        def real_record():
            encoded, labels = source.parse(record)
            status, image_ok = _record_status(source, encoded, labels, num_classes, multi_label)
            image, head = tf.cond(image_ok, lambda: (source.decode(encoded, resolution), tf.constant("")),
                                  lambda: (blank, _hex(tf.strings.substr(encoded, 0, 8))))
            return image, labels, status, head

        def end_marker():
            return blank, tf.zeros([0], tf.int64), tf.constant(_END), tf.constant("")

        image, labels, status, head = tf.cond(real, real_record, end_marker)
        return {"fid": fid, "index": index, "consumed": consumed, "status": status,
                "image": image, "labels": labels, "head": head}

    records = records.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
    return records.ignore_errors()  # decode / parse errors: seen as gaps in "index" by the validation


def _record_status(source: RecordSource, encoded, labels, num_classes: int, multi_label: bool):
    """(status code, whether the image is worth decoding) of a parsed record; the last matching
    problem wins: no image, then not an image, bad label, several labels, no label."""
    count = tf.size(labels)
    has_image = tf.strings.length(encoded) > 0
    image_ok = has_image & source.is_image(encoded)
    status = tf.constant(_OK)
    status = tf.where(count == 0, _NO_LABEL, status)
    status = tf.where((count > 1) & tf.constant(not multi_label), _MANY_LABELS, status)
    status = tf.where(tf.reduce_any((labels < 0) | (labels >= num_classes)), _BAD_LABEL, status)
    status = tf.where(has_image & ~image_ok, _NOT_IMAGE, status)
    status = tf.where(~has_image, _NO_IMAGE, status)
    return status, image_ok


def _fmt(template, *values):
    """`template` with each {} replaced by a value (tf.strings.format would quote the strings)."""
    pieces = template.split("{}")
    parts = [pieces[0]]
    for value, piece in zip(values, pieces[1:]):
        value = tf.convert_to_tensor(value)
        parts += [value if value.dtype == tf.string else tf.strings.as_string(value), piece]
    return tf.strings.join(parts)


@_plain_graph
def _is_ok(ex):
    return ex["ok"]


class _Validator:
    """The sequential check after decoding: finds dropped records (gaps in a file's numbering), bad
    records, files that end early and labels that do not fit, then fails or skips and counts.

    `check` is a `tf.data.Dataset.scan` function over the decoded records; its state is (next record
    index per file, records skipped, files damaged).
    """

    def __init__(self, files: _FileTable, label_offset: int, image_kind: str, *, num_classes: int, skip: bool,
                 stats: Optional[ReadStats]):
        self.files, self.image_kind = files, image_kind
        self.offset = tf.constant(label_offset, tf.int64)
        self.num_classes, self.skip, self.stats = num_classes, skip, stats

    def initial_state(self):
        return tf.zeros([self.files.count], tf.int64), tf.constant(0, tf.int64), tf.constant(0, tf.int64)

    def check(self, state, ex):
        next_index, skipped, damaged = state
        fid, index, status = ex["fid"], ex["index"], ex["status"]
        path = self.files.paths[fid]
        expected = tf.maximum(next_index[fid], self.files.skips[fid])
        gap = index - expected
        new_skipped, new_damaged = tf.cond(
            (gap == 0) & (status == _OK), lambda: (skipped, damaged),
            lambda: self._something_wrong(ex, path, gap, expected, skipped, damaged))
        next_index = tf.tensor_scatter_nd_update(next_index, [[fid]], [index + 1])
        keep = tf.equal(status, _OK)
        return (next_index, new_skipped, new_damaged), {"image": ex["image"], "labels": ex["labels"], "ok": keep}

    def _something_wrong(self, ex, path, gap, expected, skipped, damaged):
        # Off the common path (one cheap tf.cond per good record); the messages are selected
        # with tf.where rather than nested conds, which keeps the graph small and quick to build.
        fid, index, status = ex["fid"], ex["index"], ex["status"]
        takes, skips, sizes = self.files.takes, self.files.skips, self.files.sizes
        is_end = tf.equal(status, _END)
        short = is_end & tf.where(takes[fid] >= 0, index != skips[fid] + takes[fid],
                                  (sizes[fid] >= 0) & (ex["consumed"] != sizes[fid]))
        corrupt = (status == _NOT_IMAGE) | (status == _NO_IMAGE) | (status == _NO_LABEL)
        checks = [self._label_check(ex, path)]
        ends_early = tf.where(
            takes[fid] >= 0,
            _fmt("file {} ends early: {} of the {} records it should hold could be read; the "
                 "file is truncated or damaged.", path, index - skips[fid], takes[fid]),
            _fmt("file {} ends early after record {} ({} of its {} bytes read): the file is "
                 "truncated or damaged.", path, index - 1, ex["consumed"], sizes[fid]))
        if not self.skip:
            checks.append(self._fail_check(ex, path, gap, expected, corrupt, short, ends_early))
            new_skipped, new_damaged = skipped, damaged
        else:
            lost = gap + tf.cast(corrupt, tf.int64)
            new_skipped = skipped + lost
            new_damaged = damaged + tf.cast(short, tf.int64)
            checks += self._count_and_log(ex, path, gap, expected, lost, short, ends_early, new_skipped, new_damaged)
        with tf.control_dependencies(checks):
            return tf.identity(new_skipped), tf.identity(new_damaged)

    def _label_check(self, ex, path):
        """Assert: the labels fit data.num_classes and data.multi_label (a configuration error, always fatal)."""
        index, status, offset, num_classes = ex["index"], ex["status"], self.offset, self.num_classes
        stored = tf.strings.reduce_join(tf.strings.as_string(ex["labels"] + offset), separator=",")
        config_msg = tf.where(
            status == _BAD_LABEL,
            _fmt("record {} of {} has label(s) {} outside {}..{} (labels as stored in the file; "
                 "ImageNet TFRecords are 1-based). Check data.num_classes={}",
                 index, path, stored, offset, offset + num_classes - 1, num_classes),
            _fmt("record {} of {} has several labels ({}) but data.multi_label is false: set "
                 "data.multi_label=true to sample one label per read", index, path, stored))
        config_ok = (status != _BAD_LABEL) & (status != _MANY_LABELS)
        return tf.debugging.Assert(config_ok, [tf.strings.join([_MESSAGE_MARK, config_msg])])

    def _fail_check(self, ex, path, gap, expected, corrupt, short, ends_early):
        """Assert (data.on_corrupt=fail): no dropped or bad record, no file cut short."""
        index, status = ex["index"], ex["status"]
        reasons = [
            (gap > 0, _fmt("record {} of {} could not be read: not a tf.train.Example, or its "
                           "image could not be decoded (truncated or damaged).", expected, path)),
            (status == _NOT_IMAGE, _fmt("record {} of {} is not " + self.image_kind +
                                        " (its image bytes start with {}).", index, path, ex["head"])),
            (status == _NO_IMAGE, _fmt("record {} of {} has no image (empty or missing "
                                       "image/encoded).", index, path)),
            (status == _NO_LABEL, _fmt("record {} of {} has no label.", index, path)),
        ]
        message = ends_early
        for condition, text in reversed(reasons):
            message = tf.where(condition, text, message)
        message = tf.strings.join([_MESSAGE_MARK, message,
                                   " Set data.on_corrupt=skip to skip and count bad records."])
        return tf.debugging.Assert(~((gap > 0) | corrupt | short), [message])

    def _count_and_log(self, ex, path, gap, expected, lost, short, ends_early, new_skipped, new_damaged):
        """Ops (data.on_corrupt=skip) that add to the ReadStats and print one line per loss."""
        ops = []
        if self.stats is not None:
            ops += [self.stats.skipped_records.assign_add(lost),
                    self.stats.damaged_files.assign_add(tf.cast(short, tf.int64))]
        what = tf.where(short, ends_early, _fmt("skipped {} bad record(s) at record {} of {}.",
                                                 lost, tf.where(gap > 0, expected, ex["index"]), path))
        line = tf.strings.join([_MESSAGE_MARK, what, _fmt(
            " So far {} bad record(s) skipped and {} damaged file(s) cut short.", new_skipped, new_damaged)])

        def log():
            with tf.control_dependencies([tf.print(line, output_stream=sys.stderr)]):
                return tf.constant(0)

        ops.append(tf.cond((lost > 0) | short, log, lambda: tf.constant(0)))
        return ops


def _hex(data):
    """Bytes -> "ff d8 ff e0" (for messages about what a record holds instead of a JPEG)."""
    digits_ = tf.strings.bytes_split(b"0123456789abcdef")
    values = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int32)
    pairs = tf.strings.join([tf.gather(digits_, values // 16), tf.gather(digits_, values % 16)])
    return tf.strings.reduce_join(pairs, separator=" ")


def examples(data_cfg, resolution: int, input_context: Optional[tf.distribute.InputContext] = None,
             training: bool = True, seed: Optional[int] = None,
             stats: Optional[ReadStats] = None) -> tf.data.Dataset:
    """Unbatched, un-shuffled examples {"image": uint8 [R, R, 3], "labels": int64 [k] 0-based, ...}."""
    seed = data_cfg.seed if seed is None else seed
    if data_cfg.kind == "digits":
        ds = digits.digits_dataset(data_cfg.split, resolution, data_cfg.max_per_class, data_cfg.classes)
        if data_cfg.num_classes < digits.NUM_CLASSES and not data_cfg.classes:  # config.py checks a subset's count
            raise UserError(f"data.num_classes={data_cfg.num_classes} but the digits have "
                            f"{digits.NUM_CLASSES} classes: set data.num_classes=10")
        if input_context is not None and input_context.num_input_pipelines > 1:
            ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        return ds
    if data_cfg.max_per_class:
        raise UserError(f"data.max_per_class={data_cfg.max_per_class} is supported for data.kind=digits only; "
                        "for TFRecords write a subset of the shards instead, or set data.max_per_class=0")
    if data_cfg.kind == "tfrecord":
        source = tfrecord_source(data_cfg.pattern)
    elif data_cfg.kind == "tfds":
        source = tfds_record_source(data_cfg)
    else:
        raise UserError(f"data.kind={data_cfg.kind!r}: expected tfrecord, tfds or digits")
    entries = shard_for_host(source.files, input_context, source.description)
    return _read_records(source, entries, resolution=resolution, num_classes=data_cfg.num_classes,
                         multi_label=data_cfg.multi_label, on_corrupt=data_cfg.on_corrupt,
                         training=training, seed=_host_seed(seed, input_context), stats=stats)


def _host_seed(seed: int, input_context) -> int:
    host = input_context.input_pipeline_id if input_context is not None else 0
    return (int(seed) * 1_000_003 + host) % (2 ** 31 - 1)


def finish(index, ex, *, random_flip: bool, seed: int):
    """(stream position, example) -> (image float32 [-1, 1], label int32): flip, pick one label."""
    base = tf.constant(seed, tf.int64)
    image = ex["image"]
    if random_flip:
        image = preprocess.random_flip(image, tf.stack([base, 2 * index]))
    labels = ex["labels"]
    pick = tf.random.stateless_uniform([], seed=tf.stack([base, 2 * index + 1]), minval=tf.constant(0, tf.int64),
                                       maxval=tf.size(labels, out_type=tf.int64), dtype=tf.int64)
    return preprocess.to_model_range(image), tf.cast(labels[pick], tf.int32)


def make_dataset(data_cfg, resolution: int, batch_size: int,
                 input_context: Optional[tf.distribute.InputContext] = None, training: bool = True,
                 seed: Optional[int] = None, stats: Optional[ReadStats] = None) -> tf.data.Dataset:
    """Batches of (images float32 [b, R, R, 3] in [-1, 1], labels int32 [b] 0-based).

    Args:
      data_cfg: `hp.data` (config.DataConfig).
      resolution: `hp.model.resolution`.
      batch_size: the GLOBAL batch; under an `input_context` (from
        `strategy.distribute_datasets_from_function`) each pipeline yields per-replica batches.
      input_context: host sharding: pipeline i of n reads every n-th file starting at i.
      training: True: shuffled, repeated forever, full batches only, random flip if
        data.random_flip. False: one sweep in file order, no flip, last batch may be short.
        Either way a multi-label record gives one of its labels, drawn afresh at every read.
      seed: defaults to data.seed.
      stats: optional ReadStats counting what data.on_corrupt=skip dropped.
    """
    seed = data_cfg.seed if seed is None else seed
    ds = examples(data_cfg, resolution, input_context, training, seed, stats)
    if data_cfg.cache:
        ds = ds.cache()
    host_seed = _host_seed(seed, input_context)
    if training:
        ds = ds.shuffle(data_cfg.shuffle_buffer, seed=host_seed, reshuffle_each_iteration=True).repeat()
    flip = bool(data_cfg.random_flip and training)
    ds = ds.enumerate().map(_plain_graph(lambda i, ex: finish(i, ex, random_flip=flip, seed=host_seed)),
                            num_parallel_calls=AUTOTUNE, deterministic=True)
    per_replica = input_context.get_per_replica_batch_size(batch_size) if input_context else batch_size
    ds = ds.batch(per_replica, drop_remainder=training).prefetch(AUTOTUNE)
    if input_context is not None:
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        ds = ds.with_options(options)
    return ds
