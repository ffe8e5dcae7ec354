"""Speed of the published generators on this CPU: import, export and sampling of the official modules.

For each kind (default: biggan-deep-128/1 at ch 128 and biggan-128/2 at ch 96, the official widths) this
  1. writes a random-weight module in the OFFICIAL TF-Hub layout (tests/official_hub_layout.py: the
     published modules' variable names, shapes and graph statistics; the weights are random, which does
     not change the work a forward pass does);
  2. imports it through the real CLI, `python3 -m tf_biggan.main --mode=import_hub` (the `tf-biggan`
     command runs the same function) in a fresh process: wall seconds and the process's peak resident
     memory (its own ru_maxrss, read with os.wait4);
  3. exports the run the same way (`--mode=export`): seconds and peak memory, with a time limit
     (--export_timeout: an export that runs standing-statistics passes can take hours on a CPU);
  4. samples the imported run's EMA generator as `--mode=synthesize` does (synthesis.generators.CheckpointSource:
     the run's hparams, the module's statistics at truncation t in the hub_notebook convention, one traced
     function with a free batch dimension), G forward at --batch, t = --truncation (biggan-*/2: t = 1, where
     the module's one stored set applies; at other t a /2 run computes standing statistics first);
  5. for the deep kind, times pytorch-pretrained-BigGAN's `BigGAN` forward of the same configuration
     (BigGANConfig, channel width ch, 128 px, random weights: nothing is downloaded) at the same batch and
     truncation, in its own python (--peer_python: a virtualenv with torch and pytorch-pretrained-biggan,
     no TensorFlow), under torch.no_grad() as its README samples.
Sampling runs in alternating rounds (ours, peer, ours, peer, ...), each side in a fresh process at its
default thread count; a round's figure is images/s over --calls timed calls after two untimed ones, and
the table shows the best round of each side and their ratio. The machine (lscpu's model name, cores) and
the load average before and after are printed beside the figures: on a shared machine, rerun when idle.

Setup of the peer (once, outside the repository; TensorFlow stays out of it):
    python3 -m venv /work/torchenv && /work/torchenv/bin/pip install torch numpy scipy pytorch-pretrained-biggan
(scipy: pytorch_pretrained_biggan imports it, its package does not declare it)
Run (about 10 minutes on 2 cores, longer while the export still runs standing-statistics passes):
    python3 benchmarks/bench_hub.py --json /tmp/bench_hub.json
    python3 benchmarks/bench_hub.py --kinds biggan-deep-128/1 --skip_import --skip_export   # sampling only
Modules and runs go to --work_dir (default: a fresh temporary directory, removed at the end; a given one
is kept, and its modules are reused by later runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import workers
from hub_kinds import KINDS, slug
from machine import cpu_model, load_average, usable_cores

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_KINDS = {"biggan-deep-128/1": 128, "biggan-128/2": 96}
GIB = 1024.0 ** 3


# ------------------------------------------------------------------------------------------------
# The driver's side: processes, timings, the table. Standard library only (it runs no TensorFlow).


def machine() -> dict:
    """lscpu's model name, the cores this process may use, and the load average now."""
    return {"cpu": cpu_model(), "cores": usable_cores(), "load_average": load_average()}


def run_timed(cmd: list, log_path: str, timeout: float, env=None) -> dict:
    """Runs `cmd` (its output to `log_path`) and returns {seconds, peak_gib, returncode, timed_out}.

    Peak memory is the process's own ru_maxrss from os.wait4 (the driver imports no TensorFlow, so the
    few MB the child inherits from it at fork do not matter); past `timeout` the process group is
    stopped and the seconds are a lower bound."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    timed_out = False
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() - start > timeout and not timed_out:
            timed_out = True
            os.killpg(proc.pid, signal.SIGTERM)
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    return {"seconds": round(seconds, 1), "peak_gib": round(usage.ru_maxrss * 1024 / GIB, 2),
            "returncode": code, "timed_out": timed_out}


def cli(mode: str, *flags) -> list:
    return [sys.executable, "-m", "tf_biggan.main", f"--mode={mode}", *flags]


def worker(python: str, name: str, args: argparse.Namespace, *extra) -> list:
    return [python, os.path.abspath(__file__), f"--_worker={name}", f"--batch={args.batch}", f"--calls={args.calls}",
            *extra]


def worker_result(cmd: list, label: str, repo: str = REPO) -> dict:
    """Runs a worker with `repo`'s tf_biggan and returns the JSON of its last `RESULT ` line, with the
    load average after it."""
    result = workers.run(cmd, label, cwd=repo, env=dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="2"))
    result["load_after"] = round(os.getloadavg()[0], 2)
    return result


def module_dir(args, kind: str, ch: int) -> str:
    """The module of `kind` at width `ch` in the work directory, written first if it is not there."""
    path = os.path.join(args.work_dir, f"{slug(kind)}_ch{ch}_module")
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
        shutil.rmtree(path, ignore_errors=True)
        print(f"  writing a random {kind} module at ch {ch} (official layout) ...", flush=True)
        worker_result(worker(sys.executable, "write", args, f"--kind={kind}", f"--ch={ch}", f"--path={path}"),
                      "module writer")
    return path


def cli_stages(args, kind: str, module: str, run: str) -> dict:
    """Import (always, unless skipped and the run exists) and export through the CLI, fresh processes."""
    out = {}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if not (args.skip_import and os.path.exists(os.path.join(run, "hparams.yaml"))):
        shutil.rmtree(run, ignore_errors=True)
        out["import"] = run_timed(cli("import_hub", f"--module={module}", f"--model_dir={run}"),
                                  run + ".import.log", timeout=3600, env=env)
        if out["import"]["returncode"]:
            raise SystemExit(f"import of {kind} failed: see {run}.import.log")
        print(f"  import: {out['import']}", flush=True)
    if not args.skip_export:
        export = run + "_export"
        shutil.rmtree(export, ignore_errors=True)
        flags = [f"--hparams_overrides={args.export_overrides}"] if args.export_overrides else []
        out["export"] = run_timed(cli("export", f"--model_dir={run}", f"--export_dir={export}", *flags),
                                  run + ".export.log", timeout=args.export_timeout, env=env)
        if out["export"]["returncode"] and not out["export"]["timed_out"]:
            raise SystemExit(f"export of {kind} failed: see {run}.export.log")
        print(f"  export: {out['export']}", flush=True)
    return out


def sampling_rounds(args, kind: str, ch: int, run: str) -> dict:
    """Alternating rounds of our sampling and the peer's (deep kinds), each in a fresh process."""
    deep = kind.startswith("biggan-deep")
    truncation = args.truncation if deep else 1.0
    rounds = {"ours": [], "peer": [], "baseline": []}
    ours_cmd = worker(sys.executable, "ours", args, f"--run={run}", f"--truncation={truncation}")
    for r in range(args.rounds):
        ours = worker_result(ours_cmd, "ours")
        rounds["ours"].append(ours)
        line = f"  round {r + 1}: ours {ours['images_per_s']:.2f} img/s (load {ours['load_after']})"
        if args.baseline_repo:
            base = worker_result(ours_cmd, "baseline", repo=os.path.abspath(args.baseline_repo))
            rounds["baseline"].append(base)
            line += f", baseline {base['images_per_s']:.2f} img/s (load {base['load_after']})"
        if deep and not args.skip_peer:
            peer = worker_result(worker(args.peer_python, "peer", args, f"--ch={ch}", f"--truncation={truncation}"),
                                 "peer")
            rounds["peer"].append(peer)
            line += f", peer {peer['images_per_s']:.2f} img/s (load {peer['load_after']})"
        print(line, flush=True)
    best = {side: max((x["images_per_s"] for x in results), default=None) for side, results in rounds.items()}
    ratio = best["ours"] / best["peer"] if best["peer"] else None
    # The fastest single call of each side: less sensitive to other jobs on a shared machine than a round.
    call = {side: max((args.batch / min(x["seconds_per_call"]) for x in results), default=None)
            for side, results in rounds.items()}
    print("  fastest single call: " + ", ".join(f"{side} {v:.2f} img/s" for side, v in call.items() if v), flush=True)
    return {"truncation": truncation, "rounds": rounds, "best": best, "ratio": ratio, "fastest_call": call}


def table(results: dict, args) -> str:
    """The results as a Markdown table (seconds, GiB, images/s; the best of the rounds)."""
    def cell(stage, key, fmt):
        value = stage.get(key) if stage else None
        if value is None:
            return "-"
        text = fmt.format(value)
        return f"> {text} (stopped)" if stage.get("timed_out") and key == "seconds" else text

    def number(value, fmt="{:.2f}"):
        return "-" if value is None else fmt.format(value)

    baseline = " baseline img/s |" if args.baseline_repo else ""
    rows = [f"| module | ch | import s | import peak GiB | export s | export peak GiB | ours img/s |{baseline} "
            f"pytorch-pretrained-BigGAN img/s | ratio |", "|---" * (9 + bool(baseline)) + "|"]
    for kind, r in results.items():
        best = r["sampling"]["best"]
        base = f" {number(best['baseline'])} |" if baseline else ""
        rows.append(f"| {kind} | {r['ch']} | {cell(r.get('import'), 'seconds', '{:.1f}')} | "
                    f"{cell(r.get('import'), 'peak_gib', '{:.2f}')} | {cell(r.get('export'), 'seconds', '{:.1f}')} | "
                    f"{cell(r.get('export'), 'peak_gib', '{:.2f}')} | {number(best['ours'])} |{base} "
                    f"{number(best['peer'])} | {number(r['sampling']['ratio'], '{:.2f}x')} |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------
# Workers, each in its own process: the module writer and our sampling (TensorFlow), the peer (torch).


def time_calls(call, batch: int, calls: int, extra: dict) -> dict:
    """Two untimed calls (tracing, warm-up), then `calls` timed ones: images/s over their total."""
    for _ in range(2):
        call()
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return dict(extra, images_per_s=batch * calls / sum(seconds), seconds_per_call=[round(s, 3) for s in seconds])


def write_worker(args) -> dict:
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from official_hub_layout import write_official_module

    start = time.perf_counter()
    write_official_module(args.kind, args.path, ch=args.ch, seed=0)
    return {"seconds": time.perf_counter() - start}


def ours_worker(args) -> dict:
    """The imported run's EMA-G as --mode=synthesize samples it (synthesis.generators.CheckpointSource)."""
    import tf_biggan

    tf_biggan.configure_process()  # the CLI's process settings, before TensorFlow loads
    import numpy as np
    import tensorflow as tf

    from tf_biggan.synthesis.generators import CheckpointSource
    from tf_biggan.synthesis.synthesize import shard_latents

    start = time.perf_counter()
    source = CheckpointSource(args.run)
    convention = source.hp.eval.latent_convention
    source.configure([1] * source.num_classes, args.truncation, 0, convention)
    source.prepare()  # the module's statistics at this truncation
    loaded = time.perf_counter() - start
    z = shard_latents(0, args.batch, source.dim_z, args.truncation, 0, convention)
    labels = tf.constant(np.arange(args.batch) * 997 % source.num_classes, tf.int32)
    return time_calls(lambda: source.generate(z, labels).numpy(), args.batch, args.calls,
                      {"load_seconds": round(loaded, 1), "convention": convention,
                       "tf_biggan": os.path.dirname(os.path.dirname(os.path.abspath(tf_biggan.__file__))),
                       "threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
                       "tensorflow": tf.__version__})


def peer_worker(args) -> dict:
    """pytorch-pretrained-BigGAN's BigGAN forward, built from its BigGANConfig with random weights."""
    import numpy as np
    import torch
    from pytorch_pretrained_biggan import BigGAN, BigGANConfig

    torch.manual_seed(0)
    model = BigGAN(BigGANConfig(output_dim=128, channel_width=args.ch)).eval()
    with torch.no_grad():  # its unconditional BN's weight and bias are left uninitialised (torch.Tensor)
        model.generator.bn.weight.fill_(1.0)
        model.generator.bn.bias.zero_()
    rng = np.random.default_rng(0)
    z = rng.standard_normal((args.batch, model.config.z_dim))
    while (np.abs(z) > 2).any():  # the modules' truncated normal on [-2, 2], times t
        z = np.where(np.abs(z) > 2, rng.standard_normal(z.shape), z)
    z = torch.tensor(args.truncation * z, dtype=torch.float32)
    y = torch.nn.functional.one_hot(torch.arange(args.batch) * 997 % model.config.num_classes,
                                    model.config.num_classes).float()

    def call():
        with torch.no_grad():
            return model(z, y, args.truncation).numpy()

    return time_calls(call, args.batch, args.calls, {"threads": torch.get_num_threads(), "torch": torch.__version__})


# ------------------------------------------------------------------------------------------------


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                        help="comma-separated official module names (default: %(default)s)")
    parser.add_argument("--ch", type=int, default=0, help="channel width for every kind (default: the official one)")
    parser.add_argument("--batch", type=int, default=8, help="images per G call (default 8)")
    parser.add_argument("--truncation", type=float, default=0.5, help="deep kinds' truncation (default 0.5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating sampling rounds (default 3)")
    parser.add_argument("--calls", type=int, default=5, help="timed G calls per round (default 5)")
    parser.add_argument("--peer_python", default="/work/torchenv/bin/python",
                        help="a python with torch and pytorch-pretrained-biggan (default %(default)s)")
    parser.add_argument("--skip_peer", action="store_true", help="time our sampling only")
    parser.add_argument("--baseline_repo", default="",
                        help="also time our sampling with the tf_biggan of this checkout (e.g. a `git worktree` of "
                             "an earlier commit), in the same rounds: before / after a change")
    parser.add_argument("--skip_import", action="store_true", help="reuse an imported run in --work_dir")
    parser.add_argument("--skip_export", action="store_true")
    parser.add_argument("--export_timeout", type=float, default=1800.0, help="seconds before the export is stopped")
    parser.add_argument("--export_overrides", default="",
                        help="--hparams_overrides of the exports, e.g. eval.standing_stats_passes=2,"
                             "eval.standing_stats_batch=32 (a biggan-*/2 export computes standing statistics "
                             "at every grid truncation but 1: 11 x 100 passes of 256 by default)")
    parser.add_argument("--work_dir", default="", help="keeps modules and runs (default: a temporary directory)")
    parser.add_argument("--json", default="", help="also write every figure to this file")
    parser.add_argument("--_worker", default="", help=argparse.SUPPRESS)
    for hidden in ("--run", "--kind", "--path"):
        parser.add_argument(hidden, default="", help=argparse.SUPPRESS)
    return parser.parse_args()


def run_benchmark(args) -> dict:
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"--kinds: unknown module {unknown[0]!r}; give official names such as biggan-deep-128/1")
    if not args.skip_peer and not os.path.exists(args.peer_python):
        raise SystemExit(f"--peer_python={args.peer_python} does not exist: set up the peer (see --help) or pass "
                         "--skip_peer")
    results = {"machine_before": machine(), "date": time.strftime("%Y-%m-%d"), "kinds": {}}
    print(f"machine: {results['machine_before']}", flush=True)
    for kind in kinds:
        ch = args.ch or DEFAULT_KINDS.get(kind) or (128 if kind.startswith("biggan-deep") else 96)
        print(f"{kind} at ch {ch}:", flush=True)
        module = module_dir(args, kind, ch)
        run = os.path.join(args.work_dir, f"{slug(kind)}_ch{ch}_run")
        entry = {"ch": ch, **cli_stages(args, kind, module, run)}
        entry["sampling"] = sampling_rounds(args, kind, ch, run)
        results["kinds"][kind] = entry
    results["machine_after"] = machine()
    return results


def main() -> int:
    args = parse_args()
    if args._worker:
        workers.report({"write": write_worker, "ours": ours_worker, "peer": peer_worker}[args._worker](args))
        return 0
    temporary = not args.work_dir
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="bench_hub_")
    os.makedirs(args.work_dir, exist_ok=True)
    try:
        results = run_benchmark(args)
    finally:
        if temporary:
            shutil.rmtree(args.work_dir, ignore_errors=True)
    print(f"\nbatch {args.batch}, {args.calls} timed calls per round, best of {args.rounds} alternating rounds; "
          f"{results['machine_after']['cpu']}, {results['machine_after']['cores']} cores; load average "
          f"{results['machine_before']['load_average']} before, {results['machine_after']['load_average']} after; "
          f"{results['date']}\n")
    print(table(results["kinds"], args))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
