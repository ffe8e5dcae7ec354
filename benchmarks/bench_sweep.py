"""Benchmark of the truncation sweep (paper Section 5.1 / Table 2, Appendix D): how long the first and
a later sweep of a trained embedded-default run take (target: under 3 minutes on 2 cores).

Given a trained run of the embedded default (hparams/digits.yaml), runs `--mode=sweep` with the run's
own eval settings (eval.truncations = 0.2, 0.42, 0.5, 0.8, 1.0, 1.5, 2.0 and untruncated; standing
statistics per truncation; eval.num_samples samples each) twice, on a copy of the run's hparams and
latest checkpoint in a temporary directory so the run itself is not touched:

  cold  nothing cached: includes training the evaluation classifier on the real training digits
        and computing the real statistics (what the first sweep of a run costs);
  warm  classifier and real statistics cached (every later sweep or eval of the run).

Prints the seconds of each, the Table 2 points, and a JSON line; exits 1 if cold > --target seconds.

Run:  python benchmarks/bench_sweep.py MODEL_DIR [--target 180] [--keep DIR]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from tf_biggan.evaluation import evaluate, sweep  # noqa: E402
from tf_biggan.errors import UserError  # noqa: E402
from tf_biggan.requests import SweepRequest  # noqa: E402


def copy_run(model_dir: str, dest: str) -> str:
    """hparams.yaml + the latest checkpoint of `model_dir` into `dest`; returns the checkpoint path."""
    latest = tf.train.latest_checkpoint(model_dir)
    if not latest:
        raise UserError(f"{model_dir} has no checkpoint: train the embedded default first, e.g. "
                        f"tf-biggan --mode=train --model_dir={model_dir}")
    shutil.copy(os.path.join(model_dir, "hparams.yaml"), dest)
    for path in glob.glob(latest + ".*"):
        shutil.copy(path, dest)
    with open(os.path.join(dest, "checkpoint"), "w") as f:
        name = os.path.basename(latest)
        f.write(f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    return os.path.join(dest, os.path.basename(latest))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a trained run of the embedded default (hparams/digits.yaml)")
    parser.add_argument("--target", type=float, default=180.0, help="seconds the cold sweep must stay under")
    parser.add_argument("--keep", default=None, help="also copy the sweep's report, CSV and plot here")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="bench_sweep-")
    try:
        copy_run(args.model_dir, work)
        request = SweepRequest(work)  # --mode=sweep --model_dir=WORK
        timings = {}
        for phase in ("cold", "warm"):
            t0 = time.time()
            report = evaluate.run_sweep(None, request)
            timings[phase] = time.time() - t0
            print(f"[bench_sweep] {phase}: {timings[phase]:.1f} s for {len(report['points'])} truncations x "
                  f"{report['num_samples']} samples", flush=True)
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            for name in (sweep.SWEEP_REPORT, sweep.SWEEP_CSV, sweep.SWEEP_PLOT):
                shutil.copy(os.path.join(work, name), args.keep)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"cold_seconds": round(timings["cold"], 1), "warm_seconds": round(timings["warm"], 1),
              "target_seconds": args.target, "cpu_count": os.cpu_count(), "step": report["step"],
              **{k: {f: report[k][f] for f in ("truncation", "fid", "is")} if report[k] else None
                 for k in ("best_fid", "valid_is", "max_is")},
              "validation_is": report["real"].get("validation_is")}
    print(json.dumps(result))
    return 0 if timings["cold"] <= args.target else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"bench_sweep: error: {exc}", file=sys.stderr)
        sys.exit(2)
