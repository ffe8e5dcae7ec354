"""A miniature of Table 1 and of the Section 4 interventions on the embedded digits.

Every row trains the embedded default (hparams/digits.yaml, 16 px) from the same seed for the same
number of steps, changing only its row's hparams, then scores EMA-G (standing statistics first,
Appendix C.1, z ~ N(0, I) untruncated) with the project's classifier (tf_biggan.evaluation: FID on
its features, IS of its logits, sample class accuracy; one classifier for every row, trained once on
the real training digits). σ0 of G's last layer (out_conv) and first layer (linear; Section 4.1:
"typically the first layer in G [...] is ill-behaved") is read every --sv_every steps and drawn to
a PNG, one line per row.

Table 1 rows (cumulative, as in the paper): baseline (no shared embedding, no skip-z, no ortho
reg) -> + shared embedding -> + skip-z -> + ortho reg (= the embedded default).
Section 4 rows (each on top of the default): σ0 regularised towards 1, σ0 clamped to 2 x sg(σ1),
R1 γ = 1, dropout 0.2 on D's last feature layer, hinge margin x 2, D's Adam β1 = 0.5.

A miniature: a few hundred steps at batch 32 on digits say which knobs cost or help early
training at this scale, not what they do at ImageNet scale after 100k+ steps.

`--record_traces DIR` instead records two traces for tests/test_stability.py (σ0 of every G layer,
D's and G's loss every --sv_every steps): the default run for 2 x --steps steps (healthy), and the
same run with D frozen after --steps steps (Appendix G.1: "when D is frozen, G immediately and
dramatically collapses").

Run:  python benchmarks/bench_stability.py [--steps 300] [--rows baseline,r1] [--out DIR]
      python benchmarks/bench_stability.py --steps 150 --record_traces tests/data
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


from tf_biggan.config import load_hparams  # noqa: E402

ROWS = [
    ("baseline", "model.shared_embedding=false,model.skip_z=false,model.ortho_reg=0.0"),
    ("+shared", "model.skip_z=false,model.ortho_reg=0.0"),
    ("+skip-z", "model.ortho_reg=0.0"),
    ("+ortho (default)", ""),
    ("sigma0 reg -> 1", "stability.g_sigma0_reg=0.1,stability.sigma0_target=fixed,stability.sigma_reg=1.0"),
    ("sigma0 clamp 2 sg(s1)", "stability.g_sigma0_clamp=true,stability.sigma0_target=ratio,stability.sigma_ratio=2.0"),
    ("R1 gamma=1", "train.r1_gamma=1.0"),
    ("D dropout 0.2", "stability.d_dropout=0.2"),
    ("hinge margin x2", "stability.hinge_margin=2.0"),
    ("D beta1=0.5", "stability.d_beta1=0.5"),
]


def short(name: str) -> str:
    return name.split()[0].strip("+").replace("(", "")


def train_row(overrides: str, steps: int, sv_every: int):
    from tf_biggan.training.trainer import GANTrainer

    hp = load_hparams(None, ",".join(x for x in (f"train.train_steps={steps},train.steps_per_loop={sv_every}",
                                                 overrides) if x))
    trainer = GANTrainer(hp, verbose=False)
    trace, t0 = [], time.time()
    for step in range(sv_every, steps + 1, sv_every):
        metrics = trainer.train_steps(sv_every)
        sv = trainer.singular_values()
        last = next(v for k, v in sv.items() if k.startswith("G/") and "out_conv" in k)
        first = next(v for k, v in sv.items() if k.startswith("G/") and "/linear/" in k)
        trace.append({"step": step, "last_sigma0": float(last[0]), "first_sigma0": float(first[0]),
                      "d_loss": metrics["d_loss"], "g_loss": metrics["g_loss"]})
    return hp, trainer, trace, time.time() - t0


def record_traces(steps: int, sv_every: int, directory: str) -> None:
    """healthy_trace.json and freeze_d_trace.json (see the module docstring)."""
    from tf_biggan.training.stability import _Optimizer
    from tf_biggan.training.trainer import GANTrainer

    os.makedirs(directory, exist_ok=True)
    for name, freeze in (("healthy_trace.json", False), ("freeze_d_trace.json", True)):
        hp = load_hparams(None, f"train.train_steps={2 * steps},train.steps_per_loop={sv_every}")
        trainer = GANTrainer(hp, verbose=False)
        records = []
        for step in range(sv_every, 2 * steps + 1, sv_every):
            if freeze and step == steps + sv_every:  # from step `steps` on, D takes no update
                trainer.train_step.d_opt = _Optimizer(trainer.d_opt, True, 0.0, 0.0, 1)
                trainer.train_step._loop_fn = None  # re-trace the step without D's update
            metrics = trainer.train_steps(sv_every)
            sigma0 = {k[len("G/"):]: float(v[0]) for k, v in trainer.singular_values().items() if k.startswith("G/")}
            records.append({"step": step, "g_sigma0": sigma0, "d_loss": metrics["d_loss"], "g_loss": metrics["g_loss"]})
            print(name, records[-1]["step"], round(metrics["d_loss"], 3), round(metrics["g_loss"], 3), flush=True)
        with open(os.path.join(directory, name), "w") as f:
            json.dump({"hparams": "hparams/digits.yaml", "frozen_d_from": steps if freeze else None,
                       "records": records}, f, indent=0)


def plot(rows, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, result in rows:
        steps = [t["step"] for t in result["trace"]]
        axes[0].plot(steps, [t["last_sigma0"] for t in result["trace"]], label=name)
        axes[1].plot(steps, [t["first_sigma0"] for t in result["trace"]], label=name)
    axes[0].set_title("σ0 of G's last layer (out_conv), before SN")
    axes[1].set_title("σ0 of G's first layer (linear), before SN")
    for ax in axes:
        ax.set_xlabel("step")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--sv_every", type=int, default=25)
    parser.add_argument("--rows", default="", help="comma-separated first words of row names (default: all)")
    parser.add_argument("--out", default="/tmp/bench_stability")
    parser.add_argument("--record_traces", default="")
    args = parser.parse_args()
    if args.record_traces:
        record_traces(args.steps, args.sv_every, args.record_traces)
        return 0
    os.makedirs(args.out, exist_ok=True)

    from tf_biggan.evaluation.features import feature_extractor
    from tf_biggan.evaluation.scoring import Evaluator

    base = load_hparams(None, "")
    extractor = feature_extractor(base, args.out)  # trained once, cached in OUT/eval_classifier
    wanted = {w.strip() for w in args.rows.split(",") if w.strip()}
    results = []
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"{args.steps} steps per row, batch {base.train.batch_size}, {base.model.resolution} px", flush=True)
    print(f"{'row':24s} {'FID':>8s} {'IS':>6s} {'acc':>6s} {'σ0 last':>8s} {'σ0 first':>8s} {'train s':>8s}", flush=True)
    for name, overrides in ROWS:
        if wanted and short(name) not in wanted:
            continue
        hp, trainer, trace, seconds = train_row(overrides, args.steps, args.sv_every)
        evaluator = Evaluator.for_run(hp, args.out, extractor=extractor, log=lambda m: None)
        point = evaluator.evaluate(trainer.ema_g, 0.0)
        result = {"overrides": overrides, "fid": point["fid"], "is": point["is"],
                  "class_accuracy": point["class_accuracy"], "train_seconds": seconds, "trace": trace}
        results.append((name, result))
        print(f"{name:24s} {point['fid']:8.2f} {point['is']:6.2f} {point['class_accuracy']:6.3f} "
              f"{trace[-1]['last_sigma0']:8.3f} {trace[-1]['first_sigma0']:8.3f} {seconds:8.1f}", flush=True)
        with open(os.path.join(args.out, "results.json"), "w") as f:
            json.dump(dict(results), f, indent=1)
        plot(results, os.path.join(args.out, "sigma0.png"))
    print(f"σ0 traces: {os.path.join(args.out, 'sigma0.png')}; numbers: {os.path.join(args.out, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
