"""The evaluation modes: `--mode=eval` (one truncation) and `--mode=sweep` (every threshold).

`--mode=eval` scores the EMA generator at `--truncation` (default: the run's eval.truncation, 0 =
untruncated; 1.0 for an imported TF-Hub run, whose hub_notebook convention refuses 0) into
MODEL_DIR/eval_report.json; `--mode=sweep` scores every threshold of eval.truncations and writes
Table 2's three points and Appendix D's curve (`tf_biggan.evaluation.sweep`). Both read the run
through `tf_biggan.runs.load_run` (honouring `--checkpoint`, e.g. the best-FID checkpoint
MODEL_DIR/best_fid/ckpt-N) and score it with `tf_biggan.evaluation.scoring.Evaluator`.

Where the pieces live: real images `real_data`, extractors `features` / `classifier`, real
statistics and their cache `real_stats`, sampling and scoring `evaluator`, Table 2 / CSV / plot
`sweep`, the best-FID keeper `best_fid`, figures `qualitative`.
"""

from __future__ import annotations

import os

from tf_biggan import atomic
from tf_biggan.errors import UserError
from tf_biggan.progress import Progress
from tf_biggan.requests import EvalRequest, SweepRequest
from tf_biggan.evaluation.scoring import Evaluator, truncation_label
from tf_biggan.evaluation.sweep import SWEEP_CSV, SWEEP_PLOT, SWEEP_REPORT, sweep_report
from tf_biggan.runs import load_run, require_model_dir, run_hparams, run_truncation

# training/trainer.py imports the keeper from here; its new home is evaluation/best_fid.py (this
# re-export goes when the training loop imports it from there).

EVAL_REPORT = "eval_report.json"


def _hparams(hp, request):
    """The hparams the mode applies to --model_dir, before any network is built."""
    return run_hparams(require_model_dir(request.model_dir), hp, request.hparams, request.hparams_overrides)


def run_eval(hp, request: EvalRequest) -> dict:
    """`--mode=eval`: FID, IS, KID and class accuracy of the EMA-G at one truncation (--truncation,
    default the run's eval.truncation) -> MODEL_DIR/eval_report.json. Section 4 / Table 2 metrics,
    Appendix C.1 standing statistics at that truncation (or an imported module's own, `apply_standing_stats`)."""
    hp = _hparams(hp, request)
    truncation = run_truncation(hp, request.truncation)  # refused before the run is loaded where it is no truncation
    run = load_run(request.model_dir, request.checkpoint, hp=hp)
    evaluator = Evaluator.for_run(run.hp, run.model_dir, request.inception_path, seed=request.seed)
    point = evaluator.evaluate(run.ema_generator, truncation)
    report = dict(point, step=run.step, checkpoint=run.checkpoint, extractor=evaluator.extractor.name,
                  real=evaluator.real_summary(), seed=evaluator.seed,
                  standing_stats={"passes": run.hp.eval.standing_stats_passes,
                                  "batch": run.hp.eval.standing_stats_batch})
    path = os.path.join(run.model_dir, EVAL_REPORT)
    atomic.write_json(path, report)
    Progress("eval").log(f"step {run.step}, truncation {truncation_label(truncation)}: FID {point['fid']:.3f}  "
          f"IS {point['is']:.3f} +- {point['is_std']:.3f}  KID {point['kid']:.4f}  "
          f"class accuracy {point['class_accuracy']:.3f} -> {path}")
    return report


def run_sweep(hp, request: SweepRequest) -> dict:
    """`--mode=sweep`: every threshold of eval.truncations (0 = untruncated) -> per-truncation FID, IS,
    KID, class accuracy; Table 2's best_fid / valid_is / max_is; sweep_report.json, .csv and the
    IS-vs-FID plot in MODEL_DIR."""
    run = load_run(request.model_dir, request.checkpoint, hp=_hparams(hp, request))
    if not run.hp.eval.truncations:
        raise UserError("eval.truncations is empty: give the thresholds to sweep, e.g. "
                        "--hparams_overrides 'eval.truncations=[0.5,1.0,0]'")
    evaluator = Evaluator.for_run(run.hp, run.model_dir, request.inception_path, seed=request.seed,
                                  log=Progress("sweep").log)
    report = sweep_report(evaluator, run.ema_generator, run.hp.eval.truncations, run.step, run.checkpoint,
                          run.model_dir)
    for name in ("best_fid", "valid_is", "max_is"):
        p = report[name]
        if p:
            Progress("sweep").log(f"{name:>8s}: truncation {truncation_label(p['truncation'])}  FID {p['fid']:.3f}  "
                  f"IS {p['is']:.3f}")
    Progress("sweep").log(f"{len(report['points'])} truncations in {report['seconds']:.1f} s -> "
          f"{os.path.join(run.model_dir, SWEEP_REPORT)}, {SWEEP_CSV}, {SWEEP_PLOT}")
    return report
