"""Memory, start-up and speed of one training iteration, optionally beside BigGAN-PyTorch.

One iteration = train.disc_steps D steps + 1 G step + the EMA update (paper Section 3), on random
in-memory images so the input pipeline is not measured. Each configuration runs in a FRESH
subprocess (honest start-up and peak resident memory), which prints per stage: seconds and peak
RSS (VmHWM, reset between stages through /proc/self/clear_refs):
  import, build (G, D, EMA-G, Adam slots: orthogonal init), the first call by part (trace, graph
  optimisation, the wait for the deferred orthogonal draws, the first iteration; the peer has only
  its first iteration), iterations (median seconds, images/s), sigma monitoring
  (sigma_0..2 of every G and D kernel, Appendix F), and with --stage_profile one D step, one G step
  and one EMA update as separate functions (their own traces are excluded from their peaks).
FLOPs per iteration come from TF's per-op statistics of the G and D forward graphs with backward =
2 x forward (benchmarks/bench_train.py), and the fraction of a float32 matmul peak measured in the
same process.

--peer_dir DIR (a BigGAN-PyTorch checkout) with --peer_python (a python with torch) times the peer's
same iteration (its train_fns.GAN_training_function: shared embedding, hierarchical z, attention at
64, SN, orthogonal init, Adam, EMA; no ortho reg in its loop) in the same way, alternating
ours / peer --rounds times so that load from other processes hits both alike, and prints ratios.
The peer's dataset and image-saving imports (torchvision, PIL, h5py, tqdm) are stubbed: its training
step does not use them.

Peak RSS is the process's resident high-water mark, the figure that decides whether a host fits the run;
TF's allocator statistics (tf.config.experimental.get_memory_info) would miss fragmentation and what
glibc keeps. Set TF_BIGGAN_MALLOC as the CLI does to measure another malloc (--peer_malloc for the peer).
Results, with machine and date: docs/results.md ("Training step at BigGAN-128"). The levers it measures:
docs/performance.md.

Run:  python benchmarks/bench_memory_speed.py [--config biggan_128|default|both] [--iters 3]
          [--overrides model.dtype=mixed_bfloat16,train.jit_compile=true]
          [--peer_dir /tmp/biggan_pytorch --peer_python /tmp/torchenv/bin/python --rounds 2]
"""

from __future__ import annotations

import time

T0 = time.time()  # process start, before the heavy imports (start-up counts them)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402

import workers  # noqa: E402  (standard library only, as machine)
from machine import cpu_model  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _load_malloc():
    """tf_biggan/host/malloc.py alone (no package import: tf_biggan's own host settings must not reach
    the peer's process)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tf_biggan_malloc", os.path.join(REPO, "tf_biggan", "host", "malloc.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


malloc = _load_malloc()
CONFIGS = {  # name -> (hparams file, overrides): BigGAN-128 ch 96 at batch 8, and the embedded default
    "biggan_128": ("biggan_128", "train.batch_size=8,train.steps_per_loop=1"),
    "default": (None, "train.steps_per_loop=1"),
}


class Stages:
    """Seconds and peak RSS of consecutive stages of this process."""

    def __init__(self):
        self.last = T0
        self.rows = {}
        self._reset_peak()

    @staticmethod
    def _reset_peak():
        # Free heap pages go back to the OS first, so each stage's peak is what it holds, not what
        # an earlier stage left in malloc's free lists.
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except OSError:
            pass
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            pass

    @staticmethod
    def rss_gb(field: str = "VmHWM") -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024 ** 2
        return float("nan")

    def mark(self, name: str, seconds: float = None) -> None:
        now = time.time()
        self.rows[name] = {"seconds": now - self.last if seconds is None else seconds, "peak_gb": self.rss_gb()}
        print(f"STAGE {name} {self.rows[name]['seconds']:.1f}s peak {self.rows[name]['peak_gb']:.2f}GiB",
              file=sys.stderr, flush=True)  # partial results survive a stopped run
        self.last = now
        self._reset_peak()

    def report(self) -> dict:
        return {"stages": self.rows, "peak_gb": max(r["peak_gb"] for r in self.rows.values())}


# ---------------------------------------------------------------------------------------- ours
def ours_worker(args) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path[:0] = [REPO, HERE]
    import tf_biggan

    tf_biggan.configure_process()  # the CLI's process settings, before TF (tf_biggan/__init__.py)
    import tensorflow as tf

    from bench_train import matmul_peak, random_data, step_flops
    from tf_biggan.config import load_hparams
    from tf_biggan.training.trainer import GANTrainer

    stages = Stages()
    stages.mark("import")
    name, overrides = CONFIGS[args.config]
    hp = load_hparams(name, ",".join(x for x in (overrides, args.overrides) if x))
    # defer_init as the train mode has it: the orthogonal draws overlap the first trace, so "build"
    # is the models without their draws and the draws' remainder lands in the first iteration's stage.
    trainer = GANTrainer(hp, dataset_fn=random_data(hp), verbose=False, defer_init=True)
    stages.mark("build")
    first_iteration(trainer, stages)
    start_to_first = time.time() - T0
    times = []
    for _ in range(args.iters if hp.model.resolution > 32 else 10 * args.iters):  # the default: ms each
        t = time.time()
        trainer.train_steps(1)
        times.append(time.time() - t)
    stages.mark("iterations", statistics.median(times))
    trainer.singular_values()
    stages.mark("sigma_monitoring")
    if args.sample_grid:
        trainer.sample_grid()  # the periodic / final picture (train.sample_stats_*, then the grid)
        stages.mark("sample_grid")
    if args.stage_profile:
        profile_steps(trainer, stages)
    out = stages.report()
    out.update(seconds_per_iteration=statistics.median(times), iteration_times=times,
               images_per_sec=hp.train.batch_size / statistics.median(times), start_to_first_iteration=start_to_first)
    if not args.no_flops:
        peak = matmul_peak()
        flops = step_flops(trainer)["step"]
        out.update(gflops_per_iteration=flops / 1e9, matmul_peak_gflops=peak / 1e9,
                   fraction_of_peak=flops / statistics.median(times) / peak)
    out["malloc"] = malloc.active()
    out["config"] = {"hparams": name or "digits (embedded default)", "overrides": args.overrides,
                     "batch_size": hp.train.batch_size,
                     "dtype": hp.model.dtype, "ch": hp.model.ch, "resolution": hp.model.resolution}
    del tf
    return out


def first_iteration(trainer, stages) -> None:
    """The first iteration as `train_steps(1)` runs it, by part: trace (the Python of the step, into a
    graph), graph optimisation (Grappler and the executor's instantiation, by a call of 0 steps, as
    TrainStep.run does it), the wait for the deferred orthogonal draws, the first iteration itself."""
    import tensorflow as tf

    loop, iterator, none = trainer.train_step.compile(), trainer.iterator, tf.constant(0, tf.int64)
    loop.get_concrete_function(iterator, none)
    stages.mark("trace")
    loop(iterator, none)
    stages.mark("graph_optimisation")
    trainer.weights_ready()
    stages.mark("orthogonal_draws_wait")
    trainer.train_steps(1)
    stages.mark("first_iteration")


def profile_steps(trainer, stages) -> None:
    """Peak RSS of one D step, one G step (with ortho reg) and one EMA update, each its own function."""
    import tensorflow as tf

    from tf_biggan.layers.ortho_reg import ortho_reg
    from tf_biggan.training.losses import hinge_d_loss, hinge_g_loss

    hp, g, d = trainer.hp, trainer.g, trainer.d
    b, r = hp.train.batch_size, hp.model.resolution
    z = tf.random.normal((b, hp.model.dim_z))
    y = tf.zeros((b,), tf.int32)
    x = tf.random.uniform((b, r, r, 3), -1.0, 1.0)

    @tf.function
    def d_step():
        x_fake = g((z, y), training=True)
        with tf.GradientTape() as tape:
            logits = d((tf.concat([x, x_fake], 0), tf.concat([y, y], 0)), training=True)
            loss = hinge_d_loss(logits[:b], logits[b:], b)[0]
        trainer.d_opt.apply_gradients(zip(tape.gradient(loss, d.trainable_variables), d.trainable_variables))

    @tf.function
    def g_step():
        with tf.GradientTape() as tape:
            loss = hinge_g_loss(d((g((z, y), training=True), y), training=True), b)
            loss += ortho_reg(g.ortho_reg_kernels(), hp.model.ortho_reg)
        trainer.g_opt.apply_gradients(zip(tape.gradient(loss, g.trainable_variables), g.trainable_variables))

    ema = tf.function(lambda: trainer.ema.update(trainer.step))
    for name, fn in (("d_step", d_step), ("g_step", g_step), ("ema", ema)):
        fn.get_concrete_function()
        stages.mark(f"{name}_trace")
        fn()
        stages.mark(name)


# ---------------------------------------------------------------------------------------- peer
def peer_imports(peer_dir: str):
    """BigGAN-PyTorch's modules (BigGAN, train_fns, utils), its unused imports stubbed."""
    from import_stubs import stub_packages

    stub_packages(("torchvision", "PIL", "h5py", "tqdm"))  # its dataset and image-saving imports
    sys.path.insert(0, os.path.abspath(peer_dir))
    import BigGAN
    import train_fns
    import utils

    return BigGAN, train_fns, utils


def peer_iteration(peer_dir: str, modules=None):
    """(iteration(), G, D): BigGAN-PyTorch's iteration at BigGAN-128 ch 96, batch 8, 2 D steps."""
    import torch

    BigGAN, train_fns, utils = modules or peer_imports(peer_dir)
    config = vars(utils.prepare_parser().parse_args([]))
    # scripts/launch_BigGAN_bs256x8.sh (BigGAN-128, ch 96), at our batch, epsilons and D steps.
    config.update(G_ch=96, D_ch=96, G_attn="64", D_attn="64", G_shared=True, hier=True, dim_z=120, shared_dim=128,
                  G_init="ortho", D_init="ortho", batch_size=8, num_D_steps=2, G_lr=5e-5, D_lr=2e-4, SN_eps=1e-4,
                  BN_eps=1e-4, G_ortho=0.0, ema=True, ema_start=20000, resolution=128, n_classes=1000,
                  G_activation=torch.nn.ReLU(inplace=False), D_activation=torch.nn.ReLU(inplace=False))
    utils.seed_rng(0)
    g = BigGAN.Generator(**config)
    d = BigGAN.Discriminator(**config)
    g_ema = BigGAN.Generator(**{**config, "skip_init": True, "no_optim": True})
    ema = utils.ema(g, g_ema, config["ema_decay"], config["ema_start"])
    gd = BigGAN.G_D(g, d)
    z_, y_ = utils.prepare_z_y(8, g.dim_z, 1000, device="cpu")
    train = train_fns.GAN_training_function(g, d, gd, z_, y_, ema, {"itr": 0}, config)
    x = torch.rand(16, 3, 128, 128) * 2 - 1
    y = torch.randint(0, 1000, (16,))

    def iteration():
        g.train()
        d.train()
        train(x, y)
    return iteration, g, d


def peer_worker(args) -> dict:
    """BigGAN-PyTorch's iteration at BigGAN-128 ch 96, batch 8, 2 D steps (run under --peer_python)."""
    modules = peer_imports(args.peer_dir)
    import torch

    stages = Stages()
    stages.mark("import")
    iteration, g, d = peer_iteration(args.peer_dir, modules)
    stages.mark("build")
    iteration()
    stages.mark("trace_and_first_iteration")
    start_to_first = time.time() - T0
    times = []
    for _ in range(args.iters):
        t = time.time()
        iteration()
        times.append(time.time() - t)
    stages.mark("iterations", statistics.median(times))
    out = stages.report()
    out.update(seconds_per_iteration=statistics.median(times), iteration_times=times,
               images_per_sec=8 / statistics.median(times), start_to_first_iteration=start_to_first,
               torch=torch.__version__, threads=torch.get_num_threads(), malloc=malloc.active(),
               params={"G": sum(p.numel() for p in g.parameters()), "D": sum(p.numel() for p in d.parameters())})
    return out


# ---------------------------------------------------------------------------------------- driver
def run_worker(kind: str, args, python: str, script: str = __file__) -> dict:
    """Runs one measurement in a fresh process; `script`: this benchmark in another checkout (its "ours"
    worker measures that checkout: --baseline_repo)."""
    cmd = [python, os.path.abspath(script), f"--_worker={kind}", f"--config={args.config_now}",
           f"--iters={args.iters}", f"--overrides={args.overrides}"]
    if kind == "peer":
        cmd.append(f"--peer_dir={args.peer_dir}")
    if args.stage_profile:
        cmd.append("--stage_profile")
    if args.no_flops:
        cmd.append("--no_flops")
    if args.sample_grid and kind == "ours":
        cmd.append("--sample_grid")
    # Ours runs on the malloc the CLI re-executes itself with (tf_biggan/host/malloc.py); the peer on
    # --peer_malloc (default: glibc's, as BigGAN-PyTorch ships).
    setting = os.environ.get(malloc.ENV, malloc.DEFAULT) if kind == "ours" else args.peer_malloc
    return launch_worker(cmd, kind, setting)


def launch_worker(cmd: list, label: str, malloc_setting: str) -> dict:
    """Runs a worker process on `malloc_setting` (tf_biggan/host/malloc.py) and returns the JSON of its last
    `RESULT ` stdout line (its stages go to stderr), with the machine's load average added."""
    env = malloc.preload_environ(dict(os.environ, PYTHONPATH=REPO, **{malloc.ENV: malloc_setting}))
    result = workers.run(cmd, label, cwd=REPO, env=env)
    result["load_average"] = os.getloadavg()
    return result


def show(kind: str, r: dict) -> None:
    stages = "  ".join(f"{k} {v['seconds']:.1f}s/{v['peak_gb']:.2f}GiB" for k, v in r["stages"].items())
    extra = ""
    if "gflops_per_iteration" in r:
        extra = (f", {r['gflops_per_iteration']:.1f} GFLOP/iteration, {100 * r['fraction_of_peak']:.1f}% of a "
                 f"{r['matmul_peak_gflops']:.0f} GFLOP/s matmul peak")
    print(f"[{kind}, {r.get('malloc', '?')}] {r['seconds_per_iteration']:.2f} s/iteration ({r['images_per_sec']:.2f} img/s), peak "
          f"{r['peak_gb']:.2f} GiB, start to first iteration {r['start_to_first_iteration']:.1f} s{extra}; "
          f"load {r['load_average'][0]:.1f}\n    {stages}", flush=True)


def ratio(before: list, after: list, key: str) -> float:
    """median of `key` over `before` / its median over `after`."""
    return statistics.median(r[key] for r in before) / statistics.median(r[key] for r in after)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="both", choices=["biggan_128", "default", "both"])
    parser.add_argument("--overrides", default="", help="hparams overrides for ours, e.g. train.jit_compile=true")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1, help="alternating ours/peer rounds")
    parser.add_argument("--stage_profile", action="store_true", help="peak RSS of D step, G step, EMA alone")
    parser.add_argument("--sample_grid", action="store_true", help="also the training sample grid's peak")
    parser.add_argument("--no_flops", action="store_true")
    parser.add_argument("--peer_dir", default="", help="a BigGAN-PyTorch checkout (times its iteration too)")
    parser.add_argument("--peer_python", default=sys.executable, help="a python that imports torch")
    parser.add_argument("--peer_malloc", default="system",
                        help="the peer's malloc, as TF_BIGGAN_MALLOC spells it (ours: TF_BIGGAN_MALLOC, default system)")
    parser.add_argument("--baseline_repo", default="",
                        help="another tf_biggan checkout (e.g. `git worktree add`): its iteration joins the rounds")
    parser.add_argument("--json", default="", help="also write all results here")
    parser.add_argument("--_worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        workers.report((ours_worker if args._worker == "ours" else peer_worker)(args))
        return 0

    model = cpu_model("")
    print(f"[bench] {platform.machine()} {model}, {os.cpu_count()} cores", flush=True)
    results = {"machine": model, "cores": os.cpu_count(), "runs": []}
    for config in (["biggan_128", "default"] if args.config == "both" else [args.config]):
        args.config_now = config
        with_peer = bool(args.peer_dir) and config == "biggan_128"
        ours, peer, base = [], [], []
        for _ in range(args.rounds if with_peer or args.baseline_repo else 1):
            ours.append(run_worker("ours", args, sys.executable))
            show(f"ours {config}", ours[-1])
            results["runs"].append({"kind": "ours", "config": config, **ours[-1]})
            if args.baseline_repo:
                script = os.path.join(args.baseline_repo, "benchmarks", os.path.basename(__file__))
                base.append(run_worker("ours", args, sys.executable, script))
                show(f"baseline {config}", base[-1])
                results["runs"].append({"kind": "baseline", "config": config, **base[-1]})
            if with_peer:
                peer.append(run_worker("peer", args, args.peer_python))
                show("BigGAN-PyTorch", peer[-1])
                results["runs"].append({"kind": "peer", "config": config, **peer[-1]})
        if with_peer:
            med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
            ratios = {"iteration_speedup": med(peer, "seconds_per_iteration") / med(ours, "seconds_per_iteration"),
                      "peak_memory_ratio": med(ours, "peak_gb") / med(peer, "peak_gb"),
                      "start_to_first_ratio": med(ours, "start_to_first_iteration")
                      / med(peer, "start_to_first_iteration")}
            results["ratios"] = ratios
            print(f"[bench] ours vs BigGAN-PyTorch (medians of {len(ours)} alternating rounds): iteration "
                  f"{ratios['iteration_speedup']:.2f}x faster, peak memory {ratios['peak_memory_ratio']:.2f}x, "
                  f"start to first iteration {ratios['start_to_first_ratio']:.2f}x", flush=True)
        if base:
            print(f"[bench] ours vs {args.baseline_repo} (medians of {len(base)} rounds): iteration "
                  f"{ratio(base, ours, 'seconds_per_iteration'):.2f}x faster, start to first iteration "
                  f"{ratio(base, ours, 'start_to_first_iteration'):.2f}x faster, peak memory "
                  f"{1 / ratio(base, ours, 'peak_gb'):.2f}x", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
