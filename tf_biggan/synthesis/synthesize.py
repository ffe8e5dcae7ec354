"""Synthetic training sets as ImageNet-layout TFRecord shards, for Classification Accuracy Score.

CAS (Ravuri & Vinyals, 2019) trains a classifier *only* on generated images and tests it on real
ones; its Appendix B feeds the synthetic data to the standard Cloud TPU ResNet-50 code unchanged
(`TRAIN_DIR=gs://<BUCKET-NAME>/<synthetic data>`: "TFRecords of your synthetic data"). So the
output here is exactly what the ImageNet converter writes: shards `train-%05d-of-%05d` (or
`validation-...`), one `tf.train.Example` per image with `image/encoded` (JPEG), `image/format`,
`image/class/label` (1-BASED, like the real shards: the ResNet pipeline subtracts 1),
`image/class/synset` (from --synsets_file), `image/height`, `image/width`, `image/channels`,
`image/colorspace` and `image/filename`; records are built by `tf_biggan.data.tfrecord`.

What is sampled (BigGAN paper, Brock et al. 2019):
  * a source of `tf_biggan.synthesis.generators`: the EMA generator of a checkpoint with standing
    statistics at the requested truncation (Appendix C.1), or an exported TF-Hub module (`--module`);
  * z from the truncation trick of Section 3.1: N(0, I) with entries beyond the threshold resampled
    (`latent_convention: paper_resample`, `tf_biggan.sampling.latents`). CAS states its sweep (0.2,
    0.42, 0.5, 0.8, 1.0, 1.5, 2.0, Appendix A.1 footnote 5) as the same resampling outside [-2τ, 2τ]:
    `latent_convention: cas_resample` (what `--mode=cas_sweep` uses). `hub_notebook` draws
    τ · TruncNormal(-2, 2) (tensorflow/hub#214), the TF-Hub notebook's way with the official modules;
  * class-balanced labels: by default as many images per class as the real training set has
    (CAS replaces the real training set one for one), or `--images_per_class` each.

Layout of the work, chosen so any shard can be regenerated alone and bit-identically:
  * the labels of all N images are ordered by a fixed stratified interleave (class c's j-th image
    sits at position (j + 1/2) / n_c of the sequence; ties by class id) and cut into `num_shards`
    contiguous runs, so every shard, and every subset of shards, is class-balanced up to one image
    per class; no random generator is involved;
  * shard i's latents are one draw for the whole shard from the stateless key (synthesize, seed, i)
    (`tf_biggan.seeds`), so they depend neither on the batch size nor on which host writes the
    shard; shard 0's z is what an exported module's `sample_latents(n, seed, truncation)` returns;
  * the standing statistics come from their own stream (`tf_biggan.sampling.standing_stats`);
  * shard i belongs to worker i % num_workers (TF_CONFIG's chief + workers, or --num_workers / --worker_index).

Crash safety comes from the sharded writer `--mode=prepare_data` uses too (`tf_biggan.data.shards`):
a shard is written to a hidden temporary name and renamed when complete, then its npz and a hidden
`.NAME.done` marker (record count and size). A rerun skips every shard whose marker matches the
file, removes stale temporaries of its own shards and writes only the missing ones. SIGTERM /
SIGINT abandon the shard in hand between two generator batches (its temporary file is removed) and
exit 143 / 130 (training/preemption.py). A hidden plan file (`.synthesize_plan.json`) pins what
the directory holds (source, counts, shards, truncation, seed, JPEG quality, ...): a rerun with
different settings is refused rather than mixing two syntheses. `manifest.json` is written
atomically once every shard of every worker is present (by whichever worker finishes last).

`--also_write_npz` adds `npz/NAME.npz` per shard (images uint8 [n, R, R, 3], labels int64 0-based):
outside the shard directory's `train-*` glob, so the TFRecord reader never picks them up.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tf_biggan import atomic, paths, seeds
from tf_biggan.data import tfrecord
from tf_biggan.data.shards import MANIFEST, Shard, ShardWriter, plan_shards
from tf_biggan.errors import UserError
from tf_biggan.synthesis.generators import CheckpointSource, ModuleSource
from tf_biggan.images import to_uint8
from tf_biggan.progress import Progress, format_seconds
from tf_biggan.requests import SynthesizeRequest
from tf_biggan.sampling.labels import interleaved_labels
from tf_biggan.sampling.latents import check_convention, convention_z, z_bound
from tf_biggan.training import preemption

PLAN = ".synthesize_plan.json"
NPZ_DIR = "npz"
# Standing-statistics passes draw from (seed, STATS_STREAM + pass): disjoint from the shard streams
# (seed, shard index) for any realistic number of shards.
STATS_STREAM = 2 ** 40
# Within a long shard, a progress line at most this often (seconds).
LOG_EVERY_SECONDS = 30.0


# ------------------------------------------------------------------------------------------------
# Latents and labels.


def shard_latents(index: int, size: int, dim_z: int, truncation: float, seed: int,
                  convention: str = "paper_resample") -> tf.Tensor:
    """Shard `index`'s z [size, dim_z]: one draw from key (synthesize, seed, index) in `convention`
    (`tf_biggan.sampling.latents.convention_z`)."""
    return convention_z((size, dim_z), truncation, seeds.key("synthesize", seed, index), convention)


# ------------------------------------------------------------------------------------------------
# Per-class counts, synsets, workers.


def default_counts(kind: str, split: str = "train", flag: str = "--images_per_class") -> List[int]:
    """The real training set's per-class counts, where they are cheap to know (the embedded digits).

    For ImageNet-size TFRecord or TFDS data counting means reading every label (1.28M records), so
    the caller must say how many images per class it wants.
    """
    if kind == "digits":
        from tf_biggan.data.digits import NUM_CLASSES, load_digits_split

        _, labels = load_digits_split(split or "train")
        return [int(n) for n in np.bincount(labels, minlength=NUM_CLASSES)]
    raise UserError(
        f"{flag} is required for data.kind={kind}: the real training set's per-class counts are not "
        f"known without reading all of it. Pass e.g. {flag}=1300 (ImageNet's train split has 732-1300 images "
        f"per class, 1,281,167 in all)")


def read_synsets(path: str, num_classes: int) -> Tuple[List[str], List[str]]:
    """(synsets, texts) from a file with one class per line, in class-id order.

    A line is a WordNet id, optionally followed by whitespace and a human-readable name (the layouts
    of `imagenet_lsvrc_2015_synsets.txt` and `imagenet_metadata.txt`).
    """
    if not tf.io.gfile.exists(path):
        raise UserError(f"--synsets_file={path}: no such file; give a text file with one synset per line "
                        f"in class order (e.g. imagenet_lsvrc_2015_synsets.txt)")
    with tf.io.gfile.GFile(path) as f:
        lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    if len(lines) != num_classes:
        raise UserError(f"--synsets_file={path}: {len(lines)} non-empty lines, but the generator has "
                        f"{num_classes} classes; give exactly one synset per class, in class order")
    synsets, texts = [], []
    for line in lines:
        parts = line.split(None, 1)
        synsets.append(parts[0])
        texts.append(parts[1] if len(parts) > 1 else "")
    return synsets, texts


def worker_split(num_workers: Optional[int] = None, worker_index: Optional[int] = None) -> Tuple[int, int]:
    """(this worker's index, number of workers): --worker_index / --num_workers (checked by
    `requests.SynthesizeRequest`), else TF_CONFIG.

    TF_CONFIG counts the chief (if any) as worker 0 and `worker` tasks after it; other task types
    (ps, evaluator) write nothing.
    """
    if num_workers:
        return int(worker_index or 0), int(num_workers)
    from tf_biggan.training.strategy import worker_position  # the one TF_CONFIG reader

    return worker_position("synthesize")


# ------------------------------------------------------------------------------------------------
# Files.


def _npz_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, NPZ_DIR, f"{name}.npz")


def _writer(output_dir: str, prefix: str, num_shards: int, total: int, also_write_npz: bool) -> ShardWriter:
    """The synthesis's shards (`tf_biggan.data.shards`); each shard's npz travels with it, and is required
    for completeness with --also_write_npz."""
    return ShardWriter(output_dir, plan_shards(prefix, total, num_shards),
                       companions=lambda name: [f"{NPZ_DIR}/{name}.npz"], companions_required=also_write_npz)


# ------------------------------------------------------------------------------------------------
# The synthesis.


@dataclasses.dataclass
class Timer:
    """Seconds spent generating vs JPEG-encoding + serialising, and images done, for the progress lines."""

    images: int = 0
    generate: float = 0.0
    encode: float = 0.0
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def rates(self) -> str:
        wall = max(time.perf_counter() - self.start, 1e-9)
        gen = self.images / self.generate if self.generate > 0 else float("nan")
        enc = self.images / self.encode if self.encode > 0 else float("nan")
        return f"{self.images / wall:.1f} images/s (generate {gen:.1f}/s, JPEG {enc:.1f}/s)"


def synthesize(source, output_dir: str, counts: Sequence[int], *, num_shards: int, truncation: float = 0.0,
               seed: int = 0, prefix: str = "train", jpeg_quality: int = 95,
               synsets: Optional[Tuple[List[str], List[str]]] = None, synsets_file: Optional[str] = None,
               also_write_npz: bool = False, worker_index: int = 0, num_workers: int = 1,
               latent_convention: str = "paper_resample", batch_size: Optional[int] = None,
               log: Optional[Callable[[str], None]] = None) -> dict:
    """Writes this worker's missing shards of the synthesis; the manifest once all shards exist.

    `source` has dim_z, num_classes, resolution, description, standing_stats, prepare() and
    generate(z, labels) -> images in [-1, 1] (GeneratorSource, CheckpointSource, ModuleSource).
    `counts[c]` images of 0-based class c. Returns {"written", "skipped", "manifest" (dict or None),
    "images", "seconds", "generate_seconds", "encode_seconds"}.
    """
    log = log or Progress("synthesize").log
    counts = [int(n) for n in counts]
    _check_request(source, counts, num_shards=num_shards, truncation=truncation, prefix=prefix,
                   jpeg_quality=jpeg_quality, latent_convention=latent_convention)
    batch_size = int(batch_size or source.batch_size)
    if isinstance(source, CheckpointSource):
        source.configure(counts, truncation, seed, latent_convention)

    plan = _plan(source, counts, num_shards=num_shards, truncation=truncation, seed=seed, prefix=prefix,
                 jpeg_quality=jpeg_quality, synsets=synsets, synsets_file=synsets_file,
                 latent_convention=latent_convention)
    writer = _writer(output_dir, prefix, num_shards, sum(counts), also_write_npz)
    writer.pin(PLAN, plan, "synthesis", " (e.g. --checkpoint=... of that run)")
    mine = [s for s in writer.shards if s.index % num_workers == worker_index]
    todo, removed = writer.resume(mine)
    skipped = [s.name for s in mine if s not in todo]
    lo, hi = min(counts), max(counts)
    log(f"{plan['num_images']} images ({source.num_classes} classes, {lo if lo == hi else f'{lo}-{hi}'} per class) "
        f"at truncation {truncation:g} ({latent_convention}), seed {seed}, into {num_shards} shards "
        f"{prefix}-*-of-{num_shards:05d} in {output_dir}; worker {worker_index}/{num_workers} owns {len(mine)} "
        f"shard(s): {len(skipped)} complete, {len(todo)} to write ({sum(s.size for s in todo)} images)"
        + (f"; removed {removed} stale temporary file(s)" if removed else ""))

    timer, written = Timer(), []
    if todo:
        encoder = _Encoder(source, jpeg_quality, synsets)
        timer, written = _write_shards(source, writer, todo, counts, encoder, truncation=truncation, seed=seed,
                                       latent_convention=latent_convention, batch_size=batch_size, log=log)
    manifest = _finish(writer, plan, f"worker {worker_index}/{num_workers}", log)
    return {"written": written, "skipped": skipped, "manifest": manifest, "images": timer.images,
            "seconds": time.perf_counter() - timer.start, "generate_seconds": timer.generate,
            "encode_seconds": timer.encode}


def _check_request(source, counts: List[int], *, num_shards: int, truncation: float, prefix: str,
                   jpeg_quality: int, latent_convention: str) -> None:
    """One-line UserErrors for a synthesis that cannot be planned."""
    total = sum(counts)
    if len(counts) != source.num_classes:
        raise UserError(f"{len(counts)} per-class counts for a generator of {source.num_classes} classes")
    if total < 1:
        raise UserError("--images_per_class: nothing to synthesize (0 images in all)")
    if num_shards < 1 or num_shards > total:
        raise UserError(f"--num_shards={num_shards}: must be between 1 and the number of images ({total}), so "
                        f"that no shard is empty; pass --num_shards={min(max(total // 1250, 1), total)} or raise "
                        f"--images_per_class")
    if not 1 <= jpeg_quality <= 100:
        raise UserError(f"--jpeg_quality={jpeg_quality}: must be in 1..100 (the ImageNet converter's JPEGs are "
                        f"about 90-95)")
    if truncation < 0:
        raise UserError(f"--truncation={truncation}: must be >= 0 (0 = untruncated N(0, I))")
    check_convention(latent_convention, "--latent_convention")
    if latent_convention == "hub_notebook" and truncation <= 0:
        raise UserError("--truncation must be > 0 with latent_convention=hub_notebook (z = truncation · "
                        "TruncNormal(-2, 2))")
    if prefix not in ("train", "validation"):
        raise UserError(f"--shard_prefix={prefix}: use train or validation")


def _plan(source, counts: List[int], *, num_shards: int, truncation: float, seed: int, prefix: str,
          jpeg_quality: int, synsets, synsets_file: Optional[str], latent_convention: str) -> dict:
    """Everything that fixes the bytes of the shards: a rerun must find the same plan on disk."""
    return {
        "format": "imagenet_tfrecord",
        "label_offset": tfrecord.LABEL_OFFSET,
        "count_per_class": {str(c): n for c, n in enumerate(counts)},
        "num_images": sum(counts),
        "num_classes": source.num_classes,
        "resolution": source.resolution,
        "truncation": float(truncation),
        "latent_convention": latent_convention,
        "seed": int(seed),
        "source": source.description,
        "standing_stats": source.standing_stats,
        "jpeg_quality": int(jpeg_quality),
        "shard_prefix": prefix,
        "num_shards": num_shards,
        "synsets_file": paths.absolute(synsets_file) if synsets_file else None,
        "synsets": synsets[0] if synsets else None,
    }


class _Encoder:
    """uint8 images + 0-based labels -> serialized ImageNet-layout Examples (JPEG, 1-based label)."""

    def __init__(self, source, jpeg_quality: int, synsets):
        self.resolution, self.jpeg_quality, self.synsets = source.resolution, jpeg_quality, synsets

    def __call__(self, images, labels, first: int):
        """`first`: the synthesis-wide index of images[0], for the file names."""
        for k, (image, label) in enumerate(zip(images, labels)):
            jpeg = tf.io.encode_jpeg(image, format="rgb", quality=self.jpeg_quality).numpy()
            synset = self.synsets[0][label] if self.synsets else ""
            text = self.synsets[1][label] if self.synsets else ""
            filename = f"{synset or f'class{int(label):04d}'}_synthetic_{first + k:08d}.JPEG"
            # deterministic=True: an Example's features are a protobuf map, which
            # otherwise serialises in a per-process order (reruns would differ in bytes).
            example = tfrecord.make_example(jpeg, int(label), height=self.resolution, width=self.resolution,
                                            synset=synset, text=text, filename=filename)
            yield example.SerializeToString(deterministic=True)


def _write_shards(source, writer: ShardWriter, todo: Sequence[Shard], counts: List[int], encoder: _Encoder, *,
                  truncation: float, seed: int, latent_convention: str, batch_size: int,
                  log: Callable[[str], None]) -> Tuple[Timer, List[str]]:
    """Prepares the source, then writes shards `todo` (plus markers and npz); (timer, names written)."""
    t0 = time.perf_counter()
    source.prepare()
    if source.standing_stats and "passes" in source.standing_stats:
        log(f"standing statistics at truncation {truncation:g}: {source.standing_stats['passes']} passes of "
            f"{source.standing_stats['batch_size']} ({time.perf_counter() - t0:.1f}s)")
    elif source.standing_stats:
        log(f"the module's own BN statistics at truncation {truncation:g} (no standing-statistics pass)")
    all_labels = interleaved_labels(counts)
    timer, written = Timer(), []
    todo_images = sum(s.size for s in todo)

    def eta() -> str:
        left = todo_images - timer.images
        return format_seconds(left * (time.perf_counter() - timer.start) / max(timer.images, 1))

    last_log = time.perf_counter()
    with preemption.graceful("synthesis"):  # a signal drops the shard in hand (training/preemption.py)
        for done, shard in enumerate(todo):
            labels = all_labels[shard.start:shard.end]
            z = shard_latents(shard.index, shard.size, source.dim_z, truncation, seed, latent_convention)
            kept = [] if writer.companions_required else None

            def examples(shard=shard, labels=labels, z=z, kept=kept):
                nonlocal last_log
                for b in range(0, len(labels), batch_size):
                    if preemption.requested() is not None:  # between two batches: abandon this shard
                        raise _abandoned(shard.name, done, len(todo))
                    t = time.perf_counter()
                    batch_labels = labels[b:b + batch_size]
                    images = to_uint8(source.generate(z[b:b + batch_size], batch_labels.astype(np.int32)))
                    timer.generate += time.perf_counter() - t
                    t = time.perf_counter()
                    if kept is not None:
                        kept.append(images)
                    yield from encoder(images, batch_labels, shard.start + b)
                    timer.encode += time.perf_counter() - t
                    timer.images += len(batch_labels)
                    if time.perf_counter() - last_log > LOG_EVERY_SECONDS:
                        last_log = time.perf_counter()
                        log(f"  {shard.name}: {b + len(batch_labels)}/{len(labels)} images; {timer.rates()}; "
                            f"ETA {eta()}")

            records = _write_shard(writer, shard, examples(), kept, labels)
            written.append(shard.name)
            last_log = time.perf_counter()
            log(f"{shard.name} ({done + 1}/{len(todo)}): {records} images; {timer.rates()}; ETA {eta()}")
    return timer, written


def _abandoned(name: str, done: int, todo: int) -> BaseException:
    """The stop of a signal between two batches: `tfrecord.write_shard` removes the shard's temporary file."""
    signum = preemption.requested()
    return preemption.Preempted(
        f"stopped by {preemption.signal_name(signum)}: synthesis wrote {done} of this worker's {todo} missing "
        f"shard(s) and abandoned {name} (its temporary file is removed); the rerun writes the rest",
        preemption.exit_code(signum))


def _write_shard(writer: ShardWriter, shard: Shard, serialized, kept: Optional[list], labels) -> int:
    """The shard from its serialized Examples, then its npz (if `kept`) and its marker; the record count."""

    def npz() -> None:
        atomic.save_npz(_npz_path(writer.output_dir, shard.name), images=np.concatenate(kept),
                        labels=labels.astype(np.int64))

    return writer.write(shard, serialized, marker=lambda: {"npz": kept is not None},
                        companions=npz if kept is not None else None)


def _finish(writer: ShardWriter, plan: dict, worker: str, log: Callable[[str], None]) -> Optional[dict]:
    """The manifest, written if every shard of every worker is complete (else None, and a line saying so)."""
    npz, names = writer.companions_required, [s.name for s in writer.shards]
    manifest, missing = writer.finish(lambda markers: dict(
        plan, pattern=f"{plan['shard_prefix']}-*", shards=names,
        images_per_shard=[s.size for s in writer.shards],
        npz=[f"{NPZ_DIR}/{n}.npz" for n in names] if npz else None,
        npz_labels="0-based" if npz else None))
    if missing:
        log(f"{worker} done; waiting for {len(missing)} shard(s) of other workers "
            f"(e.g. {missing[0]}): the last worker to finish writes {MANIFEST}")
        return None
    log(f"all {len(names)} shards complete; wrote {os.path.join(writer.output_dir, MANIFEST)}")
    return manifest


def run_synthesize(hp, request: SynthesizeRequest) -> dict:
    """`--mode=synthesize`: from `--model_dir` (EMA-G of the run at --checkpoint, the run's hparams
    with eval.* of --hparams / --hparams_overrides on top) or `--module` (its own metadata); without
    --truncation, at the run's (the export's) eval.truncation. main.py's tables and the request have
    checked the flags (exactly one source, --output_dir, the bounds)."""
    worker_index, num_workers = worker_split(request.num_workers, request.worker_index)
    given = request.latent_convention
    default_truncation = request.truncation is None  # then the run's / export's eval.truncation
    truncation = 0.0 if default_truncation else float(request.truncation)
    if request.module:
        source = ModuleSource(request.module, truncation)
        if default_truncation:
            truncation = source.truncation = float(((source.metadata.get("hparams") or {}).get("eval") or {})
                                                   .get("truncation", 0.0))
        convention = given or source.metadata.get("latent_convention") or "paper_resample"
        if convention == "cas_resample" and source.metadata.get("latent_convention") == "paper_resample":
            # Our modules pick their statistics by BigGAN's threshold; CAS's τ resamples at 2τ.
            source.truncation = z_bound(truncation, convention) or 0.0
        data = ((source.metadata.get("hparams") or {}).get("data") or {})
        kind, split = data.get("kind", "unknown (a module without our metadata)"), data.get("split", "train")
    else:
        source = CheckpointSource(request.model_dir, request.checkpoint, hp, request.hparams, request.hparams_overrides)
        truncation = source.hp.eval.truncation if default_truncation else truncation
        convention = given or source.hp.eval.latent_convention
        kind, split = source.hp.data.kind, source.hp.data.split
    if request.images_per_class is not None:
        counts = [request.images_per_class] * source.num_classes
    else:
        counts = default_counts(kind, split)
        if len(counts) != source.num_classes:
            raise UserError(f"the real training set has {len(counts)} classes but the generator {source.num_classes}; "
                            f"pass --images_per_class")
    synsets_file = request.synsets_file
    synsets = read_synsets(synsets_file, source.num_classes) if synsets_file else None
    return synthesize(source, request.output_dir, counts, num_shards=request.num_shards, truncation=truncation,
                      seed=request.seed, prefix=request.shard_prefix, jpeg_quality=request.jpeg_quality,
                      synsets=synsets, synsets_file=synsets_file, also_write_npz=request.also_write_npz,
                      worker_index=worker_index, num_workers=num_workers, latent_convention=convention,
                      batch_size=request.batch_size)
