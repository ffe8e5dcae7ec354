"""The truncation sweep as the paper reports it: Table 2's three points (Section 5.1), Appendix D's
IS-vs-FID curve, and the sweep's files (sweep_report.json, sweep_report.csv, sweep_is_fid.png).
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from typing import Dict, Optional, Sequence

from tf_biggan import atomic
from tf_biggan.evaluation.scoring import Evaluator, truncation_label
from tf_biggan.evaluation.real_data import no_validation_message
from tf_biggan.images import pyplot, write_figure

SWEEP_REPORT = "sweep_report.json"
SWEEP_CSV = "sweep_report.csv"
SWEEP_PLOT = "sweep_is_fid.png"
POINT_FIELDS = ("truncation", "fid", "is", "is_std", "kid", "kid_std", "class_accuracy")


def table2_points(points: Sequence[dict], validation_is: Optional[float]) -> Dict[str, Optional[dict]]:
    """Table 2's three columns from a sweep (Section 5.1):

    best_fid  the point with the lowest FID ("the truncation setting which attains the best FID");
    valid_is  the point whose IS is closest to `validation_is`, the IS of real validation data
              ("the truncation setting for which our model's IS is the same as that attained by
              the real validation data"), None without validation data;
    max_is    the point with the highest IS ("FID at the maximum IS achieved by each model").

    Points with a non-finite FID or IS are skipped; ties go to the earlier point in the list.
    Each chosen point is returned as a copy; valid_is also carries `target_is`.
    """
    usable = [p for p in points if math.isfinite(p.get("fid", float("nan"))) and math.isfinite(p.get("is", float("nan")))]
    if not usable:
        return {"best_fid": None, "valid_is": None, "max_is": None}
    best_fid = min(usable, key=lambda p: p["fid"])
    max_is = max(usable, key=lambda p: p["is"])  # max keeps the first of equal maxima
    valid = None
    if validation_is is not None and math.isfinite(validation_is):
        valid = dict(min(usable, key=lambda p: abs(p["is"] - validation_is)), target_is=float(validation_is))
    return {"best_fid": dict(best_fid), "valid_is": valid, "max_is": dict(max_is)}


def plot_is_vs_fid(points: Sequence[dict], path: str, table2: Optional[dict] = None,
                   validation_is: Optional[float] = None, title: str = "") -> None:
    """Appendix D's curve (Figures 17-19): IS on x, FID on y, one point per truncation labelled with
    its threshold, Table 2's points circled, the real validation IS as a dashed line. PNG, atomic."""
    plt = pyplot()

    pts = [p for p in points if math.isfinite(p["fid"]) and math.isfinite(p["is"])]
    # Along the curve the threshold runs from untruncated (0 = infinity) down to the smallest.
    pts.sort(key=lambda p: -p["truncation"] if p["truncation"] > 0 else -math.inf)
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=100)
    ax.plot([p["is"] for p in pts], [p["fid"] for p in pts], "o-", color="tab:blue", label="EMA G")
    for p in pts:
        ax.annotate(truncation_label(p["truncation"]), (p["is"], p["fid"]), textcoords="offset points",
                    xytext=(5, 5), fontsize=8)
    markers = {"best_fid": ("s", "tab:green", "best FID"), "valid_is": ("D", "tab:orange", "IS of validation data"),
               "max_is": ("^", "tab:red", "max IS")}
    for name, (marker, color, label) in markers.items():
        p = (table2 or {}).get(name)
        if p:
            ax.scatter([p["is"]], [p["fid"]], s=140, marker=marker, facecolors="none", edgecolors=color,
                       linewidths=2, label=f"{label} (t={truncation_label(p['truncation'])})", zorder=3)
    if validation_is is not None and math.isfinite(validation_is):
        ax.axvline(validation_is, linestyle="--", color="gray", label=f"real validation IS {validation_is:.2f}")
    ax.set_xlabel("Inception Score (higher: fidelity)")
    ax.set_ylabel("FID (lower: better)")
    ax.set_title(title or "IS vs FID over truncation thresholds")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    write_figure(fig, path)


def write_points_csv(points: Sequence[dict], path: str) -> None:
    """One row per truncation, columns POINT_FIELDS + num_samples (atomic)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    fields = list(POINT_FIELDS) + ["num_samples"]
    writer.writerow(fields)
    for p in points:
        writer.writerow(["" if isinstance(p.get(k), float) and not math.isfinite(p[k]) else p.get(k) for k in fields])
    atomic.write_text(path, buf.getvalue())


def sweep_report(evaluator: Evaluator, generator, truncations: Sequence[float], step: int,
                 checkpoint: Optional[str], out_dir: str) -> dict:
    """Runs the sweep and writes sweep_report.json, sweep_report.csv and sweep_is_fid.png to
    `out_dir` (Table 2's three points, Appendix D's curve); returns the report."""
    t0 = time.time()
    points = evaluator.sweep(generator, truncations)
    valid_is = evaluator.validation_is
    chosen = table2_points(points, valid_is)
    report = {"step": step, "checkpoint": checkpoint, "extractor": evaluator.extractor.name,
              "num_samples": evaluator.num_samples, "seed": evaluator.seed,
              "standing_stats": {"passes": evaluator.hp.eval.standing_stats_passes,
                                 "batch": evaluator.hp.eval.standing_stats_batch},
              "real": evaluator.real_summary(), "points": points, **chosen,
              "seconds": time.time() - t0}
    if chosen["valid_is"] is None:
        report["valid_is_note"] = "no real validation IS: " + no_validation_message(evaluator.hp)
    atomic.write_json(os.path.join(out_dir, SWEEP_REPORT), report)
    write_points_csv(points, os.path.join(out_dir, SWEEP_CSV))
    plot_is_vs_fid(points, os.path.join(out_dir, SWEEP_PLOT), chosen, valid_is,
                   title=f"IS vs FID, step {step} ({evaluator.extractor.name})")
    return report
