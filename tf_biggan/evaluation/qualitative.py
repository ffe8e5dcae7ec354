"""The paper's qualitative analyses as modes that write PNG grids and a JSON report beside each.

* `--mode=interpolate` (Appendix A, Figures 8-9): rows that interpolate linearly between two
  (z, c) pairs (`interpolate_zc.png`), and rows that keep z fixed and interpolate the class vector
  between two classes (`interpolate_class.png`). G takes class vectors, so the in-between samples
  are conditioned on class mixtures exactly as the paper's "class-wise interpolations" are.
* `--mode=neighbors` (Section 5, Appendix A, Figures 10-14: "class-wise nearest neighbors analysis in
  pixel space and the feature space of pre-trained classifier networks"): each row is a generated
  sample followed by its k nearest REAL TRAINING images of the same class, in pixel space
  (`neighbors_pixel.png`, Figure 12) and in the evaluation extractor's pool-feature space
  (`neighbors_feature.png`; Inception pool_3 with --inception_path, else the project's classifier;
  the paper used VGG-16 fc7 and ResNet-50 avgpool, Figures 10-11, 13-14).
* `--mode=memorization` (Section 4.2): the share of real training images and of real held-out
  images the run's D calls real (logit > 0, the sign the hinge loss separates at). A D that has
  memorised its training set calls nearly all training images real and about half of the
  held-out ones (the paper: > 98% vs 50-55%). Writes `memorization.png` (histograms of D's outputs)
  and `memorization_report.json`.

Samples come from the EMA generator with standing statistics at `--truncation` (Appendix C.1,
Section 3.1; default the run's eval.truncation, 0 = untruncated; an imported TF-Hub run's is 1.0 and
its hub_notebook convention refuses 0); their latents are the evaluation's batch-independent ones, drawn
from the `qualitative` seed stream (`tf_biggan.seeds`), so a figure is reproducible from
(checkpoint, --seed, --truncation) and never shows the samples a sweep scored at any seed.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Optional, Tuple

import numpy as np
import tensorflow as tf

from tf_biggan import atomic, seeds
from tf_biggan.errors import UserError
from tf_biggan.progress import Progress
from tf_biggan.requests import InterpolateRequest, MemorizationRequest, NeighborsRequest
from tf_biggan.evaluation.scoring import eval_latents, inference_fn
from tf_biggan.evaluation.features import feature_extractor
from tf_biggan.evaluation.real_data import no_validation_message, real_batches, real_data_config, real_dataset_id
from tf_biggan.images import png_bytes, pyplot, tile, write_figure
from tf_biggan.runs import load_run, require_model_dir, run_hparams, run_truncation
from tf_biggan.sampling.standing_stats import apply_standing_stats

INTERPOLATE_ZC_PNG = "interpolate_zc.png"
INTERPOLATE_CLASS_PNG = "interpolate_class.png"
INTERPOLATE_REPORT = "interpolate_report.json"
NEIGHBORS_PIXEL_PNG = "neighbors_pixel.png"
NEIGHBORS_FEATURE_PNG = "neighbors_feature.png"
NEIGHBORS_REPORT = "neighbors_report.json"
MEMORIZATION_PNG = "memorization.png"
MEMORIZATION_REPORT = "memorization_report.json"

# Which draw of the `qualitative` seed stream each figure's latents and class pairs use: figures
# never share z by accident.
INTERP_ZC, INTERP_CLASS, NEIGHBORS = 0, 1, 2
FIGURE_ROWS = 1 << 20


def _pick_class_pairs(num_classes: int, rows: int, seed: int, counter: int) -> np.ndarray:
    """[rows, 2] distinct (from, to) class pairs, seeded; every row's two classes differ."""
    rng = seeds.numpy_rng("qualitative", seed, counter)
    a = rng.integers(0, num_classes, size=rows)
    if num_classes == 1:
        return np.stack([a, a], 1)
    b = (a + rng.integers(1, num_classes, size=rows)) % num_classes
    return np.stack([a, b], 1).astype(np.int32)


def figure_latents(dim_z: int, n: int, truncation: float, seed: int, figure: int) -> np.ndarray:
    """z [n, dim_z] of one figure: evaluation's batch-independent latents drawn from the
    `qualitative` stream (so a figure never shows the samples a sweep scored, whatever the two
    seeds), rows starting at figure * FIGURE_ROWS (so two figures never share z)."""
    start = figure * FIGURE_ROWS
    return eval_latents(dim_z, start, start + n, truncation, seed, stream="qualitative").numpy()


# ---------------------------------------------------------------------------------------------
# Figures 8-9: interpolations.


def interpolations(generator, rows: int, steps: int, truncation: float, seed: int = 0) -> dict:
    """Figure 8 and 9 images with the generator's CURRENT BN statistics.

    Returns {"zc": float [rows, steps, H, W, 3] (z and class both interpolated between two
    endpoints), "class": [rows, steps, H, W, 3] (z fixed per row, class interpolated),
    "pairs_zc", "pairs_class": [rows, 2] class pairs, "alphas": [steps]}. Interpolation is linear
    in z (an interpolation between two truncated z stays inside the truncation box) and in the
    one-hot class vectors, which G embeds linearly.
    """
    dim_z, num_classes = generator.dim_z, generator.num_classes
    run = inference_fn(generator)
    alphas = np.linspace(0.0, 1.0, steps, dtype=np.float32)
    a = alphas[None, :, None]
    eye = np.eye(num_classes, dtype=np.float32)

    pairs_zc = _pick_class_pairs(num_classes, rows, seed, INTERP_ZC)
    z_ends = figure_latents(dim_z, 2 * rows, truncation, seed, INTERP_ZC).reshape(rows, 2, dim_z)
    z = (1 - a) * z_ends[:, :1] + a * z_ends[:, 1:]
    y = (1 - a) * eye[pairs_zc[:, 0]][:, None] + a * eye[pairs_zc[:, 1]][:, None]
    zc = run(z.reshape(-1, dim_z), y.reshape(-1, num_classes)).numpy()

    pairs_class = _pick_class_pairs(num_classes, rows, seed, INTERP_CLASS)
    z_fixed = figure_latents(dim_z, rows, truncation, seed, INTERP_CLASS)
    z = np.repeat(z_fixed[:, None], steps, axis=1)
    y = (1 - a) * eye[pairs_class[:, 0]][:, None] + a * eye[pairs_class[:, 1]][:, None]
    cls = run(z.reshape(-1, dim_z), y.reshape(-1, num_classes)).numpy()

    shape = (rows, steps) + zc.shape[1:]
    return {"zc": zc.reshape(shape), "class": cls.reshape(shape), "pairs_zc": pairs_zc,
            "pairs_class": pairs_class, "alphas": alphas}


# ---------------------------------------------------------------------------------------------
# Figures 10-14: nearest neighbours.


def nearest_neighbors(queries: np.ndarray, query_labels: np.ndarray,
                      real: Iterable[Tuple[np.ndarray, np.ndarray]], k: int,
                      embed: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> dict:
    """The k nearest real images of the same class for each query, by Euclidean distance.

    `real` yields (images [b, H, W, C], labels [b]) batches (streamed: the real set need not fit
    in memory); `embed(images) -> [b, D]` maps images to the space distances are taken in (None:
    pixel space, the flattened images). One sweep over `real`; per query a running top-k is kept.

    Returns {"distances": [Q, k] (inf where the class has fewer than k images), "indices": [Q, k]
    positions in the real stream (-1 if missing), "images": [Q, k, H, W, C]}.
    """
    queries = np.asarray(queries, np.float32)
    query_labels = np.asarray(query_labels).reshape(-1)
    q = queries.shape[0]
    flat = lambda x: np.asarray(embed(x) if embed is not None else x.reshape(x.shape[0], -1), np.float64)  # noqa: E731
    q_vec = flat(queries)
    best_d = np.full((q, k), np.inf)
    best_i = np.full((q, k), -1, np.int64)
    best_img = np.zeros((q, k) + queries.shape[1:], np.float32)
    offset = 0
    for images, labels in real:
        images = np.asarray(images, np.float32)
        labels = np.asarray(labels).reshape(-1)
        same = query_labels[:, None] == labels[None, :]  # [Q, b]
        if same.any():
            r_vec = flat(images)
            # ||q - r||^2 = |q|^2 + |r|^2 - 2 q.r ; clipped at 0 against round-off.
            d2 = (np.sum(q_vec ** 2, 1)[:, None] + np.sum(r_vec ** 2, 1)[None, :] - 2.0 * q_vec @ r_vec.T)
            d = np.sqrt(np.clip(d2, 0.0, None))
            d[~same] = np.inf
            cand_d = np.concatenate([best_d, d], 1)
            cand_i = np.concatenate([best_i, offset + np.tile(np.arange(images.shape[0]), (q, 1))], 1)
            # Stable sort: equal distances keep stream order, so the result is deterministic.
            order = np.argsort(cand_d, axis=1, kind="stable")[:, :k]
            new_d = np.take_along_axis(cand_d, order, 1)
            new_i = np.take_along_axis(cand_i, order, 1)
            new_img = np.empty_like(best_img)
            for row in range(q):
                for col in range(k):
                    src = order[row, col]
                    new_img[row, col] = best_img[row, src] if src < k else images[src - k]
            best_d, best_i, best_img = new_d, new_i, new_img
        offset += images.shape[0]
    best_i[~np.isfinite(best_d)] = -1
    return {"distances": best_d, "indices": best_i, "images": best_img}


def _neighbor_queries(generator, rows: int, truncation: float, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """`rows` samples whose classes are spread over all classes (the trainer grid's choice)."""
    num_classes = generator.num_classes
    classes = np.linspace(0, num_classes - 1, rows).round().astype(np.int32)
    z = figure_latents(generator.dim_z, rows, truncation, seed, NEIGHBORS)
    return inference_fn(generator)(z, classes).numpy(), classes


# ---------------------------------------------------------------------------------------------
# Section 4.2: D's memorisation test.


def discriminator_outputs(discriminator, batches: Iterable[Tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """D's logits [N] for (images, labels) batches, in inference mode (no power iteration)."""
    fn = tf.function(lambda x, y: tf.reshape(discriminator((x, y), training=False), [-1]), reduce_retracing=True)
    outs = [fn(tf.convert_to_tensor(x, tf.float32), tf.convert_to_tensor(y, tf.int32)).numpy()
            for x, y in batches]
    if not outs:
        raise UserError("no real images to show D")
    return np.concatenate(outs).astype(np.float64)


def memorization_shares(train_logits: np.ndarray, heldout_logits: np.ndarray) -> dict:
    """Section 4.2's numbers: the share of training and held-out images D calls real (logit > 0)."""
    train_logits = np.asarray(train_logits, np.float64).reshape(-1)
    heldout_logits = np.asarray(heldout_logits, np.float64).reshape(-1)
    train_share = float(np.mean(train_logits > 0))
    heldout_share = float(np.mean(heldout_logits > 0))
    return {"train_real_share": train_share, "heldout_real_share": heldout_share,
            "gap": train_share - heldout_share,
            "train_mean_logit": float(train_logits.mean()), "heldout_mean_logit": float(heldout_logits.mean()),
            "train_examples": int(train_logits.size), "heldout_examples": int(heldout_logits.size)}


def _plot_memorization(train_logits, heldout_logits, shares: dict, path: str, title: str) -> None:
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    lo = float(min(train_logits.min(), heldout_logits.min()))
    hi = float(max(train_logits.max(), heldout_logits.max()))
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 40)
    ax.hist(train_logits, bins=bins, alpha=0.6, density=True,
            label=f"training ({100 * shares['train_real_share']:.1f}% called real)")
    ax.hist(heldout_logits, bins=bins, alpha=0.6, density=True,
            label=f"held-out ({100 * shares['heldout_real_share']:.1f}% called real)")
    ax.axvline(0.0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("D(x, y) logit (> 0: called real)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    write_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# Modes.


def _output_dir(request, model_dir: str) -> str:
    # --output_dir exists for --mode=synthesize; reusing it lets figures go elsewhere than the run.
    return request.output_dir or model_dir


def _run(hp, request, check=None, **networks):
    """The run of --model_dir at --checkpoint, with the networks a mode needs; `check(hp)` runs on the
    run's hparams before any network is built."""
    hp = run_hparams(require_model_dir(request.model_dir), hp, request.hparams, request.hparams_overrides)
    if check is not None:
        check(hp)
    return load_run(request.model_dir, request.checkpoint, hp=hp, **networks)


def _generator_at(hp, request):
    """(run, truncation, seed): EMA-G with standing statistics at --truncation (default the run's
    eval.truncation; refused under hub_notebook at 0, `runs.run_truncation`), Appendix C.1."""
    run = _run(hp, request, check=lambda run_hp: run_truncation(run_hp, request.truncation))
    truncation = run_truncation(run.hp, request.truncation)
    ev = run.hp.eval
    apply_standing_stats(run.ema_generator, truncation, ev.standing_stats_passes, ev.standing_stats_batch,
                         request.seed, convention=ev.latent_convention)
    return run, truncation, request.seed


def _check_heldout(hp) -> None:
    """Section 4.2's test needs held-out images: refused before any network is built without them."""
    if real_data_config(hp, "validation") is None:
        raise UserError("--mode=memorization compares training with held-out images, and " + no_validation_message(hp))


def run_interpolate(hp, request: InterpolateRequest) -> dict:
    """`--mode=interpolate`: Figures 8 and 9 -> interpolate_zc.png, interpolate_class.png and
    interpolate_report.json (eval.qualitative_rows rows of eval.interpolation_steps images)."""
    run, truncation, seed = _generator_at(hp, request)
    generator, step, ckpt, hp, model_dir = run.ema_generator, run.step, run.checkpoint, run.hp, run.model_dir
    ev = hp.eval
    out = interpolations(generator, ev.qualitative_rows, ev.interpolation_steps, truncation, seed)
    out_dir = _output_dir(request, model_dir)
    files = {}
    for key, name in (("zc", INTERPOLATE_ZC_PNG), ("class", INTERPOLATE_CLASS_PNG)):
        grid = tile(out[key])
        atomic.write_bytes(os.path.join(out_dir, name), png_bytes(grid))
        files[key] = {"file": name, "shape": list(grid.shape)}
    report = {"step": step, "checkpoint": ckpt, "truncation": truncation, "seed": seed,
              "rows": ev.qualitative_rows, "steps": ev.interpolation_steps, "alphas": out["alphas"].tolist(),
              "zc": dict(files["zc"], figure="Figure 8: interpolations between (z, c) pairs",
                         class_pairs=out["pairs_zc"].tolist()),
              "class": dict(files["class"], figure="Figure 9: interpolations between classes, z held constant",
                            class_pairs=out["pairs_class"].tolist())}
    atomic.write_json(os.path.join(out_dir, INTERPOLATE_REPORT), report)
    Progress("interpolate").log(f"step {step}: {INTERPOLATE_ZC_PNG}, {INTERPOLATE_CLASS_PNG} in {out_dir}")
    return report


def run_neighbors(hp, request: NeighborsRequest) -> dict:
    """`--mode=neighbors`: Figures 10-14 -> neighbors_pixel.png, neighbors_feature.png and
    neighbors_report.json. Each row: a sample, then its eval.neighbors_k nearest real training images
    of its class (at most eval.real_max_examples real images are searched)."""
    run, truncation, seed = _generator_at(hp, request)
    generator, step, ckpt, hp, model_dir = run.ema_generator, run.step, run.checkpoint, run.hp, run.model_dir
    ev = hp.eval
    extractor = feature_extractor(hp, model_dir, request.inception_path,
                                  log=Progress("neighbors").log)
    samples, classes = _neighbor_queries(generator, ev.qualitative_rows, truncation, seed)
    spaces = {"pixel": (None, NEIGHBORS_PIXEL_PNG, "Figure 12: nearest neighbours in pixel space"),
              "feature": (lambda x: extractor.activations(x, ev.batch_size), NEIGHBORS_FEATURE_PNG,
                          f"Figures 10-11, 13-14: nearest neighbours in {extractor.name} pool-feature space")}
    out_dir = _output_dir(request, model_dir)
    report = {"step": step, "checkpoint": ckpt, "truncation": truncation, "seed": seed, "k": ev.neighbors_k,
              "classes": classes.tolist(), "extractor": extractor.name,
              "layout": "row i: generated sample (column 0), then its k nearest real training images of the same class"}
    for space, (embed, name, figure) in spaces.items():
        nn = nearest_neighbors(samples, classes, real_batches(hp, "train", ev.batch_size, ev.real_max_examples),
                               ev.neighbors_k, embed)
        grid = tile(np.concatenate([samples[:, None], nn["images"]], axis=1))
        atomic.write_bytes(os.path.join(out_dir, name), png_bytes(grid))
        report[space] = {"file": name, "shape": list(grid.shape), "figure": figure,
                         "distances": nn["distances"].tolist(), "indices": nn["indices"].tolist()}
    atomic.write_json(os.path.join(out_dir, NEIGHBORS_REPORT), report)
    Progress("neighbors").log(f"step {step}: {NEIGHBORS_PIXEL_PNG}, {NEIGHBORS_FEATURE_PNG} in {out_dir}")
    return report


def run_memorization(hp, request: MemorizationRequest) -> dict:
    """`--mode=memorization` (Section 4.2): shares of real training and held-out images the run's D
    calls real -> memorization_report.json and memorization.png (at most
    eval.memorization_max_examples images per split; 0 = all)."""
    run = _run(hp, request, check=_check_heldout, ema_generator=False, discriminator=True)
    d, step, ckpt, hp, model_dir = run.discriminator, run.step, run.checkpoint, run.hp, run.model_dir
    ev = hp.eval
    logits = {which: discriminator_outputs(d, real_batches(hp, which, ev.batch_size,
                                                                       ev.memorization_max_examples))
              for which in ("train", "validation")}
    shares = memorization_shares(logits["train"], logits["validation"])
    out_dir = _output_dir(request, model_dir)
    _plot_memorization(logits["train"], logits["validation"], shares, os.path.join(out_dir, MEMORIZATION_PNG),
                       f"D's outputs on real images, step {step} (Section 4.2)")
    report = dict(shares, step=step, checkpoint=ckpt, file=MEMORIZATION_PNG,
                  heldout_data=real_dataset_id(hp, "validation", ev.memorization_max_examples),
                  train_data=real_dataset_id(hp, "train", ev.memorization_max_examples),
                  note="paper (ImageNet, uncollapsed D): > 98% of training vs 50-55% of validation images called real")
    atomic.write_json(os.path.join(out_dir, MEMORIZATION_REPORT), report)
    Progress("memorization").log(f"step {step}: D calls {100 * shares['train_real_share']:.1f}% of training and "
          f"{100 * shares['heldout_real_share']:.1f}% of held-out images real -> {out_dir}")
    return report


__all__ = ["tile", "interpolations", "nearest_neighbors", "figure_latents", "discriminator_outputs",
           "memorization_shares", "run_interpolate", "run_neighbors", "run_memorization"]
