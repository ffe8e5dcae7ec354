"""The main job's report: MODEL_DIR/report.json, report.md (sample grid, IS-vs-FID curve and the CAS
comparison as pictures, linked relatively) and the summary table printed at the end.

`job/stages.py` runs the stages and assembles the report's dictionary; this module only renders it.
"""

from __future__ import annotations

import os

from tf_biggan import atomic, paths

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CAS_PLOT = "cas_top1.png"
SAMPLES_PNG = "report_samples.png"


def _truncation_text(t: float) -> str:
    """"untruncated" for 0 (z ~ N(0, I)), never "truncation 0"."""
    from tf_biggan.evaluation.scoring import truncation_label

    return "untruncated" if t <= 0 else f"truncation {truncation_label(t)}"


def _plot_cas(report: dict, path: str) -> None:
    from tf_biggan.images import pyplot, write_figure  # TF: here, not at import (check_all runs before TF)

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=100)
    names = ["real data", f"synthetic only\n({_truncation_text(report['truncation'])})"]
    values = [100 * report["real_top1"], 100 * report["cas_top1"]]
    bars = ax.bar(names, values, color=["#4c72b0", "#dd8452"])
    for bar, value in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, value + 1, f"{value:.1f}%", ha="center")
    ax.set_ylim(0, 110)
    ax.set_ylabel("top-1 on real held-out images (%)")
    ax.set_title("Classification Accuracy Score")
    write_figure(fig, path)


def _stage_time(stage: dict) -> str:
    if not stage.get("skipped"):
        return f"{stage.get('seconds', 0):.1f} s"
    return f"skipped (complete; ran earlier in {stage['seconds']:.1f} s)" if "seconds" in stage else "skipped (complete)"


def write_report(model_dir: str, report: dict) -> None:
    """report.json and report.md (pictures beside it, linked relatively)."""
    _plot_cas(report, os.path.join(model_dir, CAS_PLOT))
    atomic.write_json(os.path.join(model_dir, REPORT_JSON), report)
    from tf_biggan.evaluation.scoring import truncation_label

    rel = lambda p: paths.relative(p, model_dir) if p else ""  # noqa: E731
    rows = "\n".join(
        f"| {name} | {_stage_time(s)} | {s.get('images_per_sec') or ''} | `{rel(s.get('output', ''))}` |"
        for name, s in report["stages"].items())
    text = f"""# tf_biggan main job: {os.path.basename(paths.absolute(model_dir).rstrip("/"))}

Trained to step {report['step']}; scored with {report['extractor']} features.

| result | value |
| --- | --- |
| truncation (sweep's best FID) | {truncation_label(report['truncation'])} |
| FID | {report['fid']:.3f} |
| IS | {report['is']:.3f} |
| sample class accuracy | {100 * report['sample_class_accuracy']:.1f}% |
| CAS top-1 (synthetic only, {report['cas_train_images']} images) | {100 * report['cas_top1']:.2f}% |
| real-data classifier top-1 ({report['real_train_images']} images) | {100 * report['real_top1']:.2f}% |
| wall time | {report['wall_seconds']:.0f} s |

## Samples (EMA generator, rows = classes)

![samples]({rel(report['outputs']['samples'])})

## Truncation sweep: IS against FID

![IS vs FID]({rel(report['outputs']['sweep_plot'])})

## Classification Accuracy Score

![CAS]({CAS_PLOT})

## Stages

| stage | time | images/s | output |
| --- | --- | --- | --- |
{rows}
"""
    atomic.write_text(os.path.join(model_dir, REPORT_MD), text)


def print_summary(report: dict) -> None:
    from tf_biggan.evaluation.scoring import truncation_label

    lines = [
        ("truncation", f"{truncation_label(report['truncation'])} (best FID of the sweep)"),
        ("FID / IS", f"{report['fid']:.3f} / {report['is']:.3f}  ({report['extractor']})"),
        ("sample class accuracy", f"{100 * report['sample_class_accuracy']:.1f}%"),
        ("CAS top-1 vs real top-1", f"{100 * report['cas_top1']:.2f}% vs {100 * report['real_top1']:.2f}%"),
    ]
    for name, s in report["stages"].items():
        timing = _stage_time(s)
        ips = f", {s['images_per_sec']} img/s" if s.get("images_per_sec") else ""
        lines.append((f"stage {name}", f"{timing}{ips}  -> {s.get('output', '')}"))
    lines.append(("wall time", f"{report['wall_seconds']:.0f} s"))
    lines.append(("report", os.path.join(report["model_dir"], REPORT_MD)))
    width = max(len(k) for k, _ in lines)
    print("\n".join(f"  {k:<{width}}  {v}" for k, v in lines), flush=True)
