"""Where a training iteration's time goes, by kind of op, beside each kind's share of the FLOPs: ours
and (with --peer_dir / --peer_python) BigGAN-PyTorch's train_fns.GAN_training_function.

The iteration is bench_memory_speed.py's (BigGAN-128 ch 96, batch 8, fp32, 2 D steps + 1 G step + the
EMA update, random in-memory images), each side in a fresh process: one warm-up iteration, then
--iters iterations under the framework's profiler (TF: tf.profiler's trace of the compiled step, each
op's execution on the executor's threads; torch: torch.profiler, each op's self CPU time). An op's time
is its wall time on its thread; TF runs independent ops side by side on the inter-op threads, so the
op times of ours add up to more than the wall time: the table gives each kind's share of the summed
op time, and the wall time per iteration beside it.

Kinds (from the op type and the layer scope; `tf_kind` / `torch_kind`): convolution forward and
backward (data and filter gradients); spectral norm (the power-iteration products, σ and W / σ and
their gradients; ours: every non-convolution op of an SN layer, the peer: its matrix-vector products
only, its W / σ division is in "elementwise"); batch norm (ours: the conditional BN layer's ops and
their gradients, the gain / bias linears included); attention (its batched products, softmax, pooling;
its 1x1 convolutions are convolutions); linear / embedding products; Adam; the orthogonal regulariser
(Eq. 3; the peer's launch script has it off); copies / layout (reshape, concat, slice, tile,
transpose, casts, oneDNN layout conversions, nearest upsampling); elementwise (activations, adds,
reductions); other (variable reads, random draws, control).
FLOPs: ours from TF's per-op statistics (tf.compat.v1.profiler) of the traced D update and G update
(backward included, as the graph has it), times 2 D updates + 1 G update; the peer's from
torch.profiler's counts (forward convolutions and products; a convolution's backward is counted as
2 x its forward, as torch does not count it).

Run:  python3 benchmarks/profile_step.py [--iters 2] [--peer_dir /work/refs/BigGAN-PyTorch
          --peer_python /work/torchenv/bin/python] [--json out.json]
Results: docs/performance.md ("Where a training iteration's time goes").
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import tempfile
import time

import workers  # noqa: E402  (standard library only)
from machine import cpu_model, load_average

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
KINDS = ("conv forward", "conv backward", "spectral norm", "batch norm", "attention", "linear / embedding", "Adam",
         "ortho reg", "copies / layout", "elementwise", "other")
COPIES = {"Reshape", "ConcatV2", "Concat", "Slice", "StridedSlice", "StridedSliceGrad", "Pack", "Unpack", "Tile",
          "Transpose", "Cast", "Identity", "IdentityN", "Split", "SplitV", "Pad", "DepthToSpace", "SpaceToDepth",
          "ToTf", "InputConversion", "Fill", "ZerosLike", "OnesLike", "BroadcastTo", "GatherV2", "ExpandDims",
          "Squeeze", "Snapshot", "TensorScatterUpdate", "UnsortedSegmentSum"}
ELEMENTWISE = {"Mul", "Add", "AddV2", "AddN", "Sub", "RealDiv", "Relu", "ReluGrad", "Square", "Sqrt", "Rsqrt",
               "RsqrtGrad", "Maximum", "Minimum", "Sum", "Mean", "Neg", "Select", "SelectV2", "BiasAdd", "BiasAddGrad",
               "Exp", "Log", "Tanh", "TanhGrad", "Greater", "GreaterEqual", "Less", "LessEqual", "Equal",
               "SquaredDifference", "Reciprocal", "Abs", "Sign", "Relu6", "Softplus", "Sigmoid", "DivNoNan",
               "AssignAddVariableOp", "AssignSubVariableOp", "Pow", "Prod", "Max", "Min", "FloorMod", "LeakyRelu",
               "AvgPool", "AvgPoolGrad"}
LAYER = re.compile(r"^(conv\d*|conv_sc|linear|embed|theta|phi|g|o|bn\d*|out_bn|attention\d+)(_\d+)?$")


# ------------------------------------------------------------------------------------------ ours
def tf_kind(op_type: str, name: str) -> str:
    """The kind (KINDS) of a TF op from its type (oneDNN's _Mkl / _MklNative names included) and its
    name's scopes (the layer names of models/ and layers/)."""
    base = re.sub(r"^_Mkl(Native)?|^_", "", op_type)
    low = name.lower()
    if "Conv2D" in base:
        return "conv backward" if "Backprop" in base else "conv forward"
    if "adam" in low or base.startswith("ResourceApplyAdam"):
        return "Adam"
    if "ortho_reg" in low:
        return "ortho reg"
    layers = [LAYER.match(s).group(1) for s in low.split("/") if LAYER.match(s)]
    if base.startswith("BatchMatMul") or "Softmax" in base or "MaxPool" in base or any(
            s.startswith("attention") for s in layers[-1:]):
        return "attention"
    if any(s.startswith(("bn", "out_bn")) for s in layers) or "BatchNorm" in base:
        return "batch norm"
    if base in ("BiasAdd", "BiasAddGrad"):
        return "elementwise"
    if layers and layers[-1] in ("linear", "embed") and ("MatMul" in base or "Gather" in base):
        return "linear / embedding"
    if layers:
        return "spectral norm"
    if base in COPIES or "Conversion" in base or "ToTf" in base:
        return "copies / layout"
    if base in ELEMENTWISE or base.startswith("Fused") and "MatMul" not in base:
        return "elementwise"
    return "linear / embedding" if "MatMul" in base else "other"


def xplane_op_seconds(logdir: str) -> dict:
    """{(op name, op type): seconds} summed over the executor threads of tf.profiler's trace in `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))[-1], "rb") as f:
        space.ParseFromString(f.read())
    seconds = {}
    for plane in space.planes:
        names = {k: v.name for k, v in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's op executions (name:type)
                continue
            for event in line.events:
                full = names[event.metadata_id]
                name, _, op_type = full.rpartition(":")
                if name and "::" not in full:  # not the executor's own regions (ExecutorState::Process)
                    key = (name, op_type)
                    seconds[key] = seconds.get(key, 0.0) + event.duration_ps * 1e-12
    return seconds


def graph_flops(fn, *specs) -> dict:
    """{kind: FLOPs} of the traced graph of fn(*specs) (TF's registered per-op statistics)."""
    import tensorflow as tf

    graph = tf.function(fn, autograph=False).get_concrete_function(*specs).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    root = tf.compat.v1.profiler.profile(graph=graph, options=opts)
    flops = dict.fromkeys(KINDS, 0.0)
    for node in root.children:
        op = graph.get_operation_by_name(node.name)
        flops[tf_kind(op.type, node.name)] += node.total_float_ops
    return flops


def ours_flops(trainer) -> dict:
    """{kind: FLOPs} of one iteration: disc_steps D updates + one G update."""
    import tensorflow as tf

    ts, hp = trainer.train_step, trainer.hp
    b, r = ts.local_batch, hp.model.resolution
    x, z = tf.TensorSpec((b, r, r, 3), tf.float32), tf.TensorSpec((b, hp.model.dim_z), tf.float32)
    y = tf.TensorSpec((b,), tf.int32)

    def g_update(z, y):
        grads, _ = ts.g_gradients(z, y, trainer.step)
        ts.g_opt.apply_gradients(zip(grads, trainer.g.trainable_variables))

    d = graph_flops(lambda x, yr, z, yf: ts.d_update(x, yr, z, yf, trainer.step, 0), x, y, z, y)
    g = graph_flops(g_update, z, y)
    return {k: ts.disc_steps * d[k] + g[k] for k in KINDS}


def _scope_ortho_reg(tf) -> None:
    """Puts the step's orthogonal regulariser under one name scope, here only: the profile finds its ops by
    it. The package has no such scope because op names reach the optimised graph's order, and a scope
    there moved the main job's 3,000-step trajectory (same maths, other rounding)."""
    from tf_biggan.training import step as step_lib

    plain = step_lib.ortho_reg

    def scoped(kernels, beta):
        with tf.name_scope("ortho_reg"):
            return plain(kernels, beta)

    step_lib.ortho_reg = scoped


def ours_worker(args) -> dict:
    sys.path[:0] = [REPO, HERE]
    import tf_biggan

    tf_biggan.configure_process()
    import tensorflow as tf

    from bench_memory_speed import CONFIGS
    from bench_train import random_data
    from tf_biggan.config import load_hparams
    from tf_biggan.training.trainer import GANTrainer

    _scope_ortho_reg(tf)
    hp = load_hparams(*CONFIGS["biggan_128"])
    trainer = GANTrainer(hp, dataset_fn=random_data(hp), verbose=False)
    trainer.train_steps(1)  # trace, graph optimisation, first iteration
    logdir = tempfile.mkdtemp(prefix="profile_step_")
    tf.profiler.experimental.start(logdir)
    start = time.time()
    for _ in range(args.iters):
        trainer.train_steps(1)
    wall = (time.time() - start) / args.iters
    tf.profiler.experimental.stop()
    seconds = dict.fromkeys(KINDS, 0.0)
    for (name, op_type), s in xplane_op_seconds(logdir).items():
        seconds[tf_kind(op_type, name)] += s / args.iters
    return {"wall_per_iteration": wall, "op_seconds": seconds, "flops": ours_flops(trainer),
            "load_average": load_average()}


# ------------------------------------------------------------------------------------------ peer
def torch_kind(event, chain: list) -> str:
    """The kind (KINDS) of a torch.profiler event from its name, input shapes and its ancestors' names."""
    name = event.name
    if any(n.startswith("Optimizer.step") for n in chain):
        return "Adam"
    if any("ConvolutionBackward" in n for n in chain) or "convolution_backward" in name:
        return "conv backward"
    if "conv" in name:
        return "conv forward"
    if "batch_norm" in name or any("BatchNormBackward" in n for n in chain):
        return "batch norm"
    if name in ("aten::bmm", "aten::_softmax", "aten::_softmax_backward_data", "aten::max_pool2d_with_indices",
                "aten::max_pool2d_with_indices_backward") or any(
            re.search("BmmBackward|SoftmaxBackward|MaxPool2DWithIndicesBackward", n) for n in chain):
        return "attention"
    if name in ("aten::mm", "aten::mv", "aten::addmm", "aten::dot", "aten::linear", "aten::matmul"):
        shapes = [s for s in event.input_shapes if s]
        small = any(len(s) == 2 and 1 in s for s in shapes) or any(len(s) == 1 for s in shapes[:2])
        return "spectral norm" if small else "linear / embedding"
    if "embedding" in name:
        return "linear / embedding"
    if re.search(r"copy_|clone|contiguous|cat|stack|_unsafe_view|reshape|view|transpose|permute|expand|"
                 r"as_strided|empty|zero|fill|index|slice|select|upsample|split|chunk|narrow|\bt\b|to_copy", name):
        return "copies / layout"
    if name.startswith("aten::"):
        return "elementwise"
    return "other"


def peer_worker(args) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from bench_memory_speed import peer_iteration

    iteration = peer_iteration(args.peer_dir)[0]
    iteration()  # warm-up
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True, with_flops=True) as prof:
        start = time.time()
        for _ in range(args.iters):
            iteration()
        wall = (time.time() - start) / args.iters
    seconds, flops = dict.fromkeys(KINDS, 0.0), dict.fromkeys(KINDS, 0.0)
    for event in prof.events():
        chain, parent = [], event.cpu_parent
        while parent is not None:
            chain.append(parent.name)
            parent = parent.cpu_parent
        kind = torch_kind(event, chain)
        seconds[kind] += event.self_cpu_time_total * 1e-6 / args.iters
        count = (event.flops or 0) / args.iters
        flops[kind] += count
        if kind == "conv forward":
            flops["conv backward"] += 2 * count  # not counted by torch: data + filter gradients
    return {"wall_per_iteration": wall, "op_seconds": seconds, "flops": flops, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "load_average": load_average()}


# ------------------------------------------------------------------------------------------ driver
def table(results: dict) -> str:
    """A markdown table: per kind and side, its share of op time, seconds per iteration, share of FLOPs."""
    sides = list(results)
    head = "| kind | " + " | ".join(f"{s}: op time | {s}: FLOPs" for s in sides) + " |"
    rows = [head, "| --- |" + " --- | --- |" * len(sides)]
    for kind in KINDS:
        cells = []
        for s in sides:
            r = results[s]
            t, f = sum(r["op_seconds"].values()), sum(r["flops"].values())
            cells.append(f"{100 * r['op_seconds'][kind] / t:.1f}% ({r['op_seconds'][kind]:.2f} s) | "
                         f"{100 * r['flops'][kind] / f:.1f}%")
        rows.append(f"| {kind} | " + " | ".join(cells) + " |")
    rows.append("| sum of op times / wall per iteration | " + " | ".join(
        f"{sum(results[s]['op_seconds'].values()):.1f} s / {results[s]['wall_per_iteration']:.1f} s | "
        f"{sum(results[s]['flops'].values()) / 1e9:.0f} GFLOP" for s in sides) + " |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=2, help="profiled iterations after one warm-up")
    parser.add_argument("--peer_dir", default="", help="a BigGAN-PyTorch checkout (profiles its iteration too)")
    parser.add_argument("--peer_python", default=sys.executable, help="a python that imports torch")
    parser.add_argument("--json", default="", help="also write the results here")
    parser.add_argument("--_worker", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._worker:
        sys.path.insert(0, HERE)
        workers.report((ours_worker if args._worker == "ours" else peer_worker)(args))
        return 0
    print(f"[profile] {cpu_model()}, {os.cpu_count()} cores, load {load_average()}", flush=True)
    results = {}
    sides = [("ours", sys.executable)] + ([("BigGAN-PyTorch", args.peer_python)] if args.peer_dir else [])
    for label, python in sides:
        cmd = [python, os.path.abspath(__file__), f"--_worker={'ours' if label == 'ours' else 'peer'}",
               f"--iters={args.iters}", f"--peer_dir={args.peer_dir}"]
        env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
        results[label] = workers.run(cmd, label, cwd=REPO, env=env)
        print(f"[profile] {label}: {results[label]['wall_per_iteration']:.1f} s/iteration, load "
              f"{results[label]['load_average']}", flush=True)
    print(table(results), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
