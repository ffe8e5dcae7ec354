"""CAS over the truncation sweep: `--mode=cas_sweep --model_dir=RUN` (CAS A.1; Azizi et al. Figures A.1-A.4).

The truncations are the CAS paper's τ (A.1 footnote 5: "dimensions of the noise vector z whose values
are outside the range of -2τ to 2τ are resampled"; `latent_convention: cas_resample`), not BigGAN's
threshold, which at the same number truncates far more (std of z at τ = 1: 0.88 against 0.54). For
each τ of cas.sweep_truncations (0 = untruncated), in RUN/cas_sweep/:

    synthetic_tau<τ>/ class-balanced shards from the run's EMA-G (synthesis/synthesize.py: resumes, refuses
                      changed settings), cas.sweep_images_per_class per class (0 = the real training
                      set's counts, CAS's one-for-one replacement);
    cas_tau<τ>/       a CAS classifier trained on them alone (train.run_cas: resumes, skips when done).

The points are joined with the run's FID / IS for the same latents, i.e. BigGAN threshold 2τ, from
RUN/sweep_report.json (`--mode=sweep`), which is run first when it lacks any of them. With real
--train_data, a classifier on the real images (cas_real/) and, for each k of cas.sweep_real_plus, one
on real + k synthetic images of the τ with the best CAS top-1 (cas_real_plus_<k>/, Table A.3's layout)
are added.

Writes RUN/cas_sweep_report.json, cas_sweep_report.csv (`truncation` = τ, `z_bound` = 2τ), cas_vs_is.png
and cas_vs_fid.png (one point per τ, labelled with it).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from typing import Callable, Dict, List, Optional

import tensorflow as tf

from tf_biggan import atomic, paths
from tf_biggan.cas.train import run_cas
from tf_biggan.errors import UserError
from tf_biggan.evaluation.scoring import truncation_label
from tf_biggan.images import pyplot, write_figure
from tf_biggan.progress import Progress
from tf_biggan.requests import CasSweepRequest, SweepRequest
from tf_biggan.sampling.latents import z_bound
from tf_biggan.training import strategy as strategy_lib

REPORT = "cas_sweep_report.json"
CSV = "cas_sweep_report.csv"
PLOTS = {"is": "cas_vs_is.png", "fid": "cas_vs_fid.png"}
CSV_FIELDS = ("truncation", "z_bound", "top1", "top5", "fid", "is", "train_images", "synthetic_dir")
CONVENTION = "cas_resample"  # CAS A.1 footnote 5: z resampled outside [-2τ, 2τ]


def gan_threshold(tau: float) -> float:
    """BigGAN's threshold (Section 3.1) giving the same latents as CAS's τ: 2τ (0: untruncated)."""
    return z_bound(tau, CONVENTION) or 0.0


def label(t: float) -> str:
    """A threshold as the CSV, plots and directory names show it: 0 is "untruncated", not "0"."""
    return truncation_label(t)


def _gan_sweep(run_dir: str, truncations, inception_path: Optional[str], log) -> Dict[float, dict]:
    """FID / IS per threshold from RUN/sweep_report.json, running `--mode=sweep` if any is missing."""
    from tf_biggan.evaluation import evaluate

    path = os.path.join(run_dir, evaluate.SWEEP_REPORT)

    def points():
        report = evaluate_report(path)
        return {round(float(p["truncation"]), 6): p for p in (report or {}).get("points", [])}

    have = points()
    missing = [t for t in truncations if round(float(t), 6) not in have]
    if missing:
        log(f"{path} lacks truncation(s) {', '.join(label(t) for t in missing)}: running --mode=sweep")
        evaluate.run_sweep(None, SweepRequest(
            run_dir, inception_path=inception_path,
            hparams_overrides="eval.truncations=[" + ",".join(f"{float(t)!r}" for t in truncations) + "]"))
        have = points()
    return have


def evaluate_report(path: str) -> Optional[dict]:
    import json

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def _synthesize(run_dir: str, out_dir: str, truncation: float, per_class: int, log) -> str:
    from tf_biggan.synthesis import synthesize as syn
    from tf_biggan.synthesis.generators import CheckpointSource

    source = CheckpointSource(run_dir)
    counts = ([per_class] * source.num_classes if per_class
              else syn.default_counts(source.hp.data.kind, source.hp.data.split, "cas.sweep_images_per_class"))
    total = sum(counts)
    syn.synthesize(source, out_dir, counts, num_shards=max(1, min(total // 1250, 1024)) if total >= 1250 else 1,
                   truncation=truncation, seed=0, latent_convention=CONVENTION,
                   log=lambda m: log(f"synthesize τ={label(truncation)}: {m}"))
    return os.path.join(out_dir, "train-*")


def name_of(cas) -> str:
    return "ResNet-50" if cas.arch == "resnet50" else f"ResNet-{cas.depth}"


def plot_cas(points: List[dict], metric: str, path: str, baseline: Optional[float], title: str) -> None:
    """CAS top-1 against IS or FID, each point labelled with its CAS τ (PNG, atomic)."""
    plt = pyplot()

    pts = [p for p in points if p.get(metric) is not None and math.isfinite(p[metric])]
    pts.sort(key=lambda p: -p["truncation"] if p["truncation"] > 0 else -math.inf)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    ax.plot([p[metric] for p in pts], [100 * p["top1"] for p in pts], "o-", label="CAS top-1 (synthetic only)")
    ax.plot([p[metric] for p in pts], [100 * p["top5"] for p in pts], "s--", alpha=0.6, label="CAS top-5")
    for p in pts:
        ax.annotate(f"τ={label(p['truncation'])}" if p["truncation"] > 0 else "untruncated",
                    (p[metric], 100 * p["top1"]), textcoords="offset points",
                    xytext=(5, 5), fontsize=8)
    if baseline is not None:
        ax.axhline(100 * baseline, linestyle=":", color="gray", label=f"real data top-1 {100 * baseline:.1f}%")
    ax.set_xlabel({"is": "Inception Score (higher: fidelity)", "fid": "FID (lower: better)"}[metric])
    ax.set_ylabel("classification accuracy on real held-out data (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    write_figure(fig, path)


def run_cas_sweep(hp, run_dir: str, eval_data: Optional[str] = None, real_train_data: Optional[str] = None,
                  strategy: Optional[tf.distribute.Strategy] = None, inception_path: Optional[str] = None,
                  log: Optional[Callable[[str], None]] = None) -> Dict:
    """The whole sweep (module docstring); every stage resumes, so a rerun only does what is missing."""
    from tf_biggan.runs import saved_hparams

    log = Progress("cas_sweep", sink=log).log
    if not run_dir or not tf.io.gfile.isdir(run_dir):
        raise UserError(f"--model_dir={run_dir!r}: --mode=cas_sweep needs a training run's directory "
                        f"(train first with --mode=train --model_dir=DIR)")
    run_hp = saved_hparams(run_dir)
    if run_hp.data.num_classes != hp.data.num_classes:
        raise UserError(f"--hparams: data.num_classes={hp.data.num_classes} but the run {run_dir} has "
                        f"{run_hp.data.num_classes} classes")
    if not eval_data:
        if run_hp.data.kind != "digits":
            raise UserError("--mode=cas_sweep needs --eval_data (the real validation TFRecords, e.g. "
                            "/data/imagenet/validation-*)")
        eval_data = "digits:test"
    if not real_train_data and run_hp.data.kind == "digits":
        real_train_data = "digits:train"
    truncations = list(hp.cas.sweep_truncations)
    if not truncations:
        raise UserError("cas.sweep_truncations is empty: list the thresholds, e.g. [0.5, 1.0, 0]")
    gan = _gan_sweep(run_dir, sorted({gan_threshold(t) for t in truncations}), inception_path, log)
    base = os.path.join(run_dir, "cas_sweep")
    pure = dataclasses.replace(hp, cas=dataclasses.replace(hp.cas, synthetic_images=0, synthetic_fraction=0.0))
    points = []
    for t in truncations:
        synth = _synthesize(run_dir, os.path.join(base, f"synthetic_tau{label(t)}"), t,
                            hp.cas.sweep_images_per_class, log)
        report = run_cas(pure, os.path.join(base, f"cas_tau{label(t)}"), f"synthetic:{synth}", eval_data, strategy,
                         log=lambda m, t=t: log(f"cas τ={label(t)}: {m}"))
        g = gan.get(round(gan_threshold(t), 6), {})
        points.append({"truncation": float(t), "z_bound": z_bound(t, CONVENTION), "top1": report["top1"],
                       "top5": report["top5"],
                       "per_class_top1": report["per_class_top1"], "fid": g.get("fid"), "is": g.get("is"),
                       "train_images": report["train_images"], "synthetic_dir": os.path.dirname(synth)})
    result = {"run_dir": paths.absolute(run_dir), "eval_data": eval_data, "latent_convention": CONVENTION,
              "points": points,
              "gan_sweep": os.path.join(run_dir, "sweep_report.json"), "arch": hp.cas.arch}
    baseline = None
    if real_train_data:
        real = run_cas(pure, os.path.join(base, "cas_real"), f"real:{real_train_data}", eval_data, strategy,
                       log=lambda m: log(f"cas real: {m}"))
        baseline = real["top1"]
        result["real"] = {"top1": real["top1"], "top5": real["top5"], "train_images": real["train_images"]}
        best = max(points, key=lambda p: p["top1"])
        rows = [{"synthetic_added": 0, "train_images": real["train_images"], "top1": real["top1"],
                 "top5": real["top5"]}]
        for k in hp.cas.sweep_real_plus:
            mixed = dataclasses.replace(hp, cas=dataclasses.replace(hp.cas, synthetic_images=int(k),
                                                                    synthetic_fraction=0.0))
            r = run_cas(mixed, os.path.join(base, f"cas_real_plus_{k}"),
                        f"real:{real_train_data},synthetic:{best['synthetic_dir']}/train-*", eval_data, strategy,
                        log=lambda m, k=k: log(f"cas real+{k}: {m}"))
            rows.append({"synthetic_added": int(k), "train_images": r["train_images"], "top1": r["top1"],
                         "top5": r["top5"], "synthetic_fraction": r["synthetic_fraction"]})
        result["real_plus_synthetic"] = {"truncation": best["truncation"], "rows": rows}
    atomic.write_json(os.path.join(run_dir, REPORT), result)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_FIELDS)
    for p in points:
        writer.writerow(["" if p.get(f) is None else p.get(f) for f in CSV_FIELDS])
    atomic.write_text(os.path.join(run_dir, CSV), buf.getvalue())
    for metric, name in PLOTS.items():
        plot_cas(points, metric, os.path.join(run_dir, name), baseline,
                 f"CAS ({name_of(hp.cas)}) vs {metric.upper()} over CAS τ (z resampled outside ±2τ)")
    for p in points:
        log(f"τ {label(p['truncation']):>11}: CAS top-1 {p['top1']:.4f} top-5 {p['top5']:.4f}  "
            f"FID {p['fid'] if p['fid'] is None else round(p['fid'], 3)}  IS {p['is'] if p['is'] is None else round(p['is'], 3)}")
    for row in result.get("real_plus_synthetic", {}).get("rows", []):
        log(f"real + {row['synthetic_added']:>6} synthetic ({row['train_images']} images): top-1 {row['top1']:.4f} "
            f"top-5 {row['top5']:.4f}")
    log(f"wrote {os.path.join(run_dir, REPORT)}, {CSV}, {PLOTS['is']}, {PLOTS['fid']}")
    return result


def run_cas_sweep_mode(hp, request: CasSweepRequest) -> Dict:
    """`--mode=cas_sweep --model_dir=RUN [--eval_data=...] [--train_data=REAL]`."""
    return run_cas_sweep(hp, request.model_dir, request.eval_data, request.train_data,
                         strategy_lib.launch_strategy(request.launch), request.inception_path)
