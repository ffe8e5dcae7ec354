"""Random-weight modules in the layout of DeepMind's official TF-Hub BigGAN generators.

`biggan-{128,256,512}/2` and `biggan-deep-{128,256,512}/1` as downloaded and unpacked: `tfhub_module.pb`,
`saved_model.pb` (TF1 SavedModel, signature "default" with inputs z, y, truncation) and
`variables/variables.{index,data-00000-of-00001}`, with every generator variable under the exact name,
shape and dtype the published converters read (BigGAN-PyTorch `TFHub/converter.py` for the `/2` modules,
pytorch-pretrained-BigGAN `convert_tf_to_pytorch.py` for the deep ones; the layout is written up, with
each inference marked, in the project notes' hub spec). The deep modules' 51 truncation-indexed BN
statistics are graph tensors, not variables: `stack_{5n+1}` (means) and `stack_{5n+3}` (variances) of BN
layer n, each [51, C], written as Pack ops of 51 rows (filler Packs take the numbers in between,
so TF's own naming sequence is natural).

The weights are random but shaped like a trained module's in what matters to readers of it: every
spectrally normalised kernel has a top singular value ~30 with a spectral gap, and its `u0` is that exact
top right-singular vector (float64), so one power iteration from `u0` returns it and every reading of SN
at inference (the module's, ours, BigGAN-PyTorch's, pytorch-pretrained-BigGAN's) gives the same sigma to
float32 precision. `accumulation_counter` is 1, so reading the stored statistics as they are or divided
by the counter agree. BN variances are positive.

The graph's output is a dummy of the right shape: this is a layout for importers, not a runnable
generator. Widths can be reduced (`ch`) for CI; the embedding (1000 x 128) and z sizes stay official.

Test helper, not part of the package: tests import it directly, benchmarks via sys.path.
"""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

KINDS = ("biggan-128/2", "biggan-256/2", "biggan-512/2",
         "biggan-deep-128/1", "biggan-deep-256/1", "biggan-deep-512/1")

EMA_V2 = "/ema_b999900"
EMA_DEEP = "/ema_0.9999"
NUM_STATS = 51  # truncation 0, 0.02, ..., 1.0
EMBED_DIM = 128
TOP_SIGMA = 30.0  # large enough that SN epsilon conventions differ by < 1e-7 relative

# (in_mult, out_mult) per block, and the index of the block the attention layer follows.
_V2_BLOCKS = {
    128: [(16, 16), (16, 8), (8, 4), (4, 2), (2, 1)],
    256: [(16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1)],
    512: [(16, 16), (16, 8), (8, 8), (8, 4), (4, 2), (2, 1), (1, 1)],
}
_V2_ATTENTION_AFTER = {128: 3, 256: 4, 512: 3}
_V2_DIM_Z = {128: 120, 256: 140, 512: 128}

# (upsample, in_mult, out_mult) per block (pytorch-pretrained-BigGAN config); attention after block 7.
_DEEP_HEAD = [(False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8)]
_DEEP_BLOCKS = {
    128: _DEEP_HEAD + [(False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1)],
    256: _DEEP_HEAD + [(False, 8, 8), (True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2),
                       (False, 2, 2), (True, 2, 1)],
    512: _DEEP_HEAD + [(False, 8, 8), (True, 8, 8), (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2),
                       (False, 2, 2), (True, 2, 1), (False, 1, 1), (True, 1, 1)],
}
_DEEP_ATTENTION_AFTER = 7
_DEEP_DIM_Z = 128


def parse_kind(kind: str) -> Tuple[bool, int]:
    """(deep, resolution) of an official module name."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind.startswith("biggan-deep"), int(kind.split("-")[-1].split("/")[0])


def default_ch(kind: str) -> int:
    return 128 if parse_kind(kind)[0] else 96


def dim_z(kind: str) -> int:
    deep, res = parse_kind(kind)
    return _DEEP_DIM_Z if deep else _V2_DIM_Z[res]


def _block_name(i: int) -> str:
    return "Generator/GBlock" if i == 0 else f"Generator/GBlock_{i}"


def _layout(kind: str, ch: int, extra_sn_vectors: bool, raw_twins: bool, deep_accumulated_stats: bool):
    """[(name, shape, role)] in creation order. role: 'w' (SN kernel), 'b', 'u', 'gain', 'embed',
    'gamma' (attention), 'mean', 'var', 'count', 'bn_gain', 'bn_offset'."""
    deep, res = parse_kind(kind)
    ema = EMA_DEEP if deep else EMA_V2
    entries: List[Tuple[str, tuple, str]] = []
    u_names = ("u0", "u1", "u2") if extra_sn_vectors else (("u0",) if deep else ("u0", "u1"))

    def add(name, shape, role):
        entries.append((name, tuple(int(d) for d in shape), role))

    def trainable(name, shape, role):
        add(name + ema, shape, role)
        if raw_twins:
            add(name, shape, role)

    def sn(prefix, shape, bias=True, w_role="w"):
        trainable(prefix + "/w", shape, w_role)
        if bias:
            trainable(prefix + "/b", shape[-1:], "b")
        for u in u_names:
            add(f"{prefix}/{u}", (1, shape[-1]), "u")

    def stats(prefix, c):
        add(prefix + "/accumulated_mean", (c,), "mean")
        add(prefix + "/accumulated_var", (c,), "var")
        add(prefix + "/accumulation_counter", (), "count")

    def attention(ca):
        p = "Generator/attention"
        sn(p + "/theta", (1, 1, ca, ca // 8), bias=False)
        sn(p + "/phi", (1, 1, ca, ca // 8), bias=False)
        sn(p + "/g", (1, 1, ca, ca // 2), bias=False)
        sn(p + "/o_conv", (1, 1, ca // 2, ca), bias=False)
        trainable(p + "/gamma", (1,), "gamma")

    trainable("linear/w", (1000, EMBED_DIM), "embed")
    bottom = 4 * 4 * 16 * ch
    if not deep:
        blocks = _V2_BLOCKS[res]
        zc = _V2_DIM_Z[res] // (len(blocks) + 1)
        sn("Generator/G_Z/G_linear", (zc, bottom))
        for i, (mi, mo) in enumerate(blocks):
            cin, cout, p = mi * ch, mo * ch, _block_name(i)
            sn(p + "/conv0", (3, 3, cin, cout))
            sn(p + "/conv1", (3, 3, cout, cout))
            sn(p + "/conv_sc", (1, 1, cin, cout))
            for bn, c in (("HyperBN", cin), ("HyperBN_1", cout)):
                sn(f"{p}/{bn}/gamma", (zc + EMBED_DIM, c), bias=False, w_role="gain")
                sn(f"{p}/{bn}/beta", (zc + EMBED_DIM, c), bias=False, w_role="gain")
            stats(p + "/CrossReplicaBN", cin)
            stats(p + "/CrossReplicaBN_1", cout)
            if i == _V2_ATTENTION_AFTER[res]:
                attention(mo * ch)
        trainable("Generator/ScaledCrossReplicaBN/gamma", (1, 1, 1, ch), "bn_gain")
        trainable("Generator/ScaledCrossReplicaBN/beta", (1, 1, 1, ch), "bn_offset")
        stats("Generator/ScaledCrossReplicaBNbn", ch)
        sn("Generator/conv_2d", (3, 3, ch, 3))
    else:
        cond = _DEEP_DIM_Z + EMBED_DIM
        sn("Generator/GenZ/G_linear", (cond, bottom))
        for i, (_, mi, mo) in enumerate(_DEEP_BLOCKS[res]):
            cin, cout, p = mi * ch, mo * ch, _block_name(i)
            mid = cin // 4
            for j, c in enumerate((cin, mid, mid, mid)):
                bn = f"{p}/BatchNorm" + (f"_{j}" if j else "")
                sn(bn + "/scale", (cond, c), bias=False, w_role="gain")
                sn(bn + "/offset", (cond, c), bias=False, w_role="gain")
                if deep_accumulated_stats:
                    stats(bn, c)
            sn(p + "/conv0", (1, 1, cin, mid))
            sn(p + "/conv1", (3, 3, mid, mid))
            sn(p + "/conv2", (3, 3, mid, mid))
            sn(p + "/conv3", (1, 1, mid, cout))
            if i == _DEEP_ATTENTION_AFTER:
                attention(mo * ch)
        trainable("Generator/BatchNorm/scale", (1, 1, 1, ch), "bn_gain")
        trainable("Generator/BatchNorm/offset", (1, 1, 1, ch), "bn_offset")
        if deep_accumulated_stats:
            stats("Generator/BatchNorm", ch)
        sn("Generator/conv_to_rgb", (3, 3, ch, ch))
    return entries


def expected_layout(kind: str, ch: Optional[int] = None, extra_sn_vectors: bool = False,
                    raw_twins: bool = False, deep_accumulated_stats: bool = False) -> Dict[str, tuple]:
    """{checkpoint variable name: shape} of the module `write_official_module` writes with these options."""
    ch = default_ch(kind) if ch is None else ch
    return {name: shape for name, shape, _ in _layout(kind, ch, extra_sn_vectors, raw_twins, deep_accumulated_stats)}


def bn_layer_channels(kind: str, ch: Optional[int] = None) -> List[Tuple[str, int]]:
    """Deep modules: [(BN variable prefix, channels)] in the stack order n (4 per block, then the final BN)."""
    deep, res = parse_kind(kind)
    if not deep:
        return []
    ch = default_ch(kind) if ch is None else ch
    out = []
    for i, (_, mi, _) in enumerate(_DEEP_BLOCKS[res]):
        cin = mi * ch
        for j, c in enumerate((cin, cin // 4, cin // 4, cin // 4)):
            out.append((f"{_block_name(i)}/BatchNorm" + (f"_{j}" if j else ""), c))
    out.append(("Generator/BatchNorm", ch))
    return out


def expected_stacks(kind: str, ch: Optional[int] = None) -> Dict[str, Tuple[tuple, str, str]]:
    """Deep modules: {graph node name: ((51, C), BN variable prefix, 'mean' | 'var')}; {} for biggan-*/2.
    BN layer n has its means in `stack_{5n+1}` and variances in `stack_{5n+3}`."""
    stacks = {}
    for n, (prefix, c) in enumerate(bn_layer_channels(kind, ch)):
        stacks[f"stack_{5 * n + 1}"] = ((NUM_STATS, c), prefix, "mean")
        stacks[f"stack_{5 * n + 3}"] = ((NUM_STATS, c), prefix, "var")
    return stacks


def _sn_kernel(rng, shape) -> Tuple[np.ndarray, np.ndarray]:
    """(kernel float32, u0 [1, out] float32): a random kernel whose (fan_in, out) matrix has top singular
    value ~TOP_SIGMA, ~3x its second, and u0 its top right-singular vector (converged power iteration)."""
    fan_out = shape[-1]
    fan_in = int(np.prod(shape[:-1]))
    bulk = rng.standard_normal((fan_in, fan_out))
    bulk *= (TOP_SIGMA / 3.0) / (np.sqrt(fan_in) + np.sqrt(fan_out))  # bulk edge ~ TOP_SIGMA / 3
    a = rng.standard_normal(fan_in)
    b = rng.standard_normal(fan_out)
    w = bulk + TOP_SIGMA * np.outer(a / np.linalg.norm(a), b / np.linalg.norm(b))
    w = w.astype(np.float32).astype(np.float64)  # the vector must be that of the stored float32 kernel
    u = b / np.linalg.norm(b)
    if min(fan_in, fan_out) > 1:
        for _ in range(500):  # gap ~3x: converges to float64 precision in well under 100 steps
            v = w @ u
            v /= np.linalg.norm(v)
            new = w.T @ v
            new /= np.linalg.norm(new)
            done = np.max(np.abs(new - u)) < 1e-14
            u = new
            if done:
                break
    else:
        u = np.sign(u) if fan_out == 1 else u
    return w.reshape(shape).astype(np.float32), u.reshape(1, fan_out).astype(np.float32)


def _values(kind, ch, rng, layout, identical_stats) -> Dict[str, np.ndarray]:
    values: Dict[str, np.ndarray] = {}
    u0_of: Dict[str, np.ndarray] = {}
    for name, shape, role in layout:
        base = name.split("/ema_")[0]
        if role in ("w", "gain"):
            if base in values:  # raw twin of an EMA kernel: a different value (it must not be read)
                values[name] = (values[base] * 1.5).astype(np.float32)
                continue
            w, u = _sn_kernel(rng, shape)
            values[name] = w
            u0_of[base.rsplit("/", 1)[0]] = u
        elif role == "u":
            layer, which = name.rsplit("/", 1)
            u0 = u0_of[layer]
            if which == "u0":
                values[name] = u0
            else:  # u1, u2: unit vectors orthogonal to u0 (they never touch the output)
                r = rng.standard_normal(shape[-1])
                r -= (r @ u0[0]) * u0[0]
                norm = np.linalg.norm(r)
                values[name] = (r / norm if norm > 0 else r).reshape(shape).astype(np.float32)
        elif role == "b":
            values[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif role == "embed":
            values[name] = (0.5 * rng.standard_normal(shape)).astype(np.float32)
        elif role == "gamma":
            values[name] = np.full(shape, 0.7, np.float32) * (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif role == "bn_gain":
            values[name] = (1.0 + 0.2 * rng.standard_normal(shape)).astype(np.float32)
        elif role == "bn_offset":
            values[name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif role == "mean":
            values[name] = (0.3 * rng.standard_normal(shape)).astype(np.float32)
        elif role == "var":
            values[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        elif role == "count":
            values[name] = np.array(1.0, np.float32)
        else:
            raise AssertionError(role)
    stacks: Dict[str, np.ndarray] = {}
    for node, ((rows, c), _, what) in expected_stacks(kind, ch).items():
        if what == "mean":
            base = 0.3 * rng.standard_normal(c)
            spread = np.zeros((rows, c)) if identical_stats else 0.2 * rng.standard_normal((rows, c))
            stacks[node] = (base + spread).astype(np.float32)
        else:
            base = rng.uniform(0.5, 2.0, c)
            spread = np.zeros((rows, c)) if identical_stats else 0.3 * rng.standard_normal((rows, c))
            stacks[node] = (base * np.exp(spread)).astype(np.float32)
    return values, stacks


def _add_stacks(stacks: Dict[str, np.ndarray], from_variables: bool = False) -> List[Tuple[object, np.ndarray]]:
    """Pack ops named stack_N in the current graph: the statistics at their numbers, small filler Packs at
    the numbers in between (the module's other per-BN Packs), created in numeric order. from_variables:
    each table is read from a variable `statistics/stack_N` (returned with its value, to be initialised)
    instead of a constant, so the Pack cannot be evaluated without the checkpoint."""
    tables: List[Tuple[object, np.ndarray]] = []
    if not stacks:
        return tables
    last = max(int(n.split("_")[1]) for n in stacks)
    for number in range(0, last + 1):
        name = "stack" if number == 0 else f"stack_{number}"
        value = stacks.get(name)
        if value is None:
            tf.stack([tf.constant(0, tf.int32), tf.constant(number, tf.int32)], name=name)
        elif from_variables:
            table = tf.compat.v1.get_variable(f"statistics/{name}", shape=value.shape, dtype=tf.float32,
                                              initializer=tf.compat.v1.zeros_initializer())
            tables.append((table, value))
            tf.stack(tf.unstack(table.read_value(), axis=0), axis=0, name=name)
        else:
            # A Pack of 51 rows (unstacked from one Const: 51 Const ops per table made the graph slow)
            tf.stack(tf.unstack(tf.constant(value), axis=0), axis=0, name=name)
    return tables


def write_official_module(kind: str, out_dir: str, ch: Optional[int] = None, resolution: Optional[int] = None,
                          seed: int = 0, num_classes: int = 1000, identical_stats: bool = False,
                          extra_sn_vectors: bool = False, raw_twins: bool = False,
                          deep_accumulated_stats: bool = False, drop: Tuple[str, ...] = (),
                          extra: Optional[Dict[str, tuple]] = None,
                          reshape: Optional[Dict[str, tuple]] = None,
                          stats_from_variables: bool = False) -> Dict[str, object]:
    """Writes a module directory in the official layout of `kind` to `out_dir` (created; must not exist).

    ch: channel multiplier (default the official 96 / 128; CI uses e.g. 4). resolution: must match the
    kind if given. num_classes: must be 1000 (the embedding is [1000, 128] in every official module).
    identical_stats: deep modules get 51 identical statistics rows per BN (interpolation-independent).
    extra_sn_vectors / raw_twins / deep_accumulated_stats: write the variables whose presence in the real
    modules is not established (u1/u2, non-EMA twins, deep accumulated_* statistics).
    drop / extra / reshape: damage the layout for refusal tests: names left out, {name: shape} added,
    {name: new shape} (filled with random values).
    stats_from_variables: deep modules' statistics read from checkpoint variables `statistics/stack_N`
    (extra variables an importer does not map), so the statistics subgraph does not run on its own.

    Returns {'values': {name: array}, 'stacks': {node: array}, 'dim_z', 'ch', 'resolution', 'kind'}.
    """
    deep, res = parse_kind(kind)
    if resolution is not None and resolution != res:
        raise ValueError(f"{kind} is a {res} px module, got resolution={resolution}")
    if num_classes != 1000:
        raise ValueError("the official modules' embedding is [1000, 128]; num_classes must be 1000")
    ch = default_ch(kind) if ch is None else int(ch)
    if ch < 1 or (2 * ch) % 8:
        raise ValueError(f"ch must make the attention width divisible by 8, got {ch}")
    if tf.io.gfile.exists(out_dir):
        raise ValueError(f"{out_dir} exists")
    rng = np.random.default_rng(seed)
    layout = _layout(kind, ch, extra_sn_vectors, raw_twins, deep_accumulated_stats)
    values, stacks = _values(kind, ch, rng, layout, identical_stats)
    for name in drop:
        if name not in values:
            raise KeyError(name)
        del values[name]
    for name, shape in (reshape or {}).items():
        if name not in values:
            raise KeyError(name)
        values[name] = rng.standard_normal(shape).astype(np.float32)
    for name, shape in (extra or {}).items():
        values[name] = rng.standard_normal(shape).astype(np.float32)

    graph = tf.Graph()
    with graph.as_default():
        z = tf.compat.v1.placeholder(tf.float32, [None, dim_z(kind)], name="z")
        y = tf.compat.v1.placeholder(tf.float32, [None, num_classes], name="y")
        truncation = tf.compat.v1.placeholder(tf.float32, [], name="truncation")
        variables = []
        for name, value in values.items():
            variables.append(tf.compat.v1.get_variable(name, shape=value.shape, dtype=tf.float32,
                                                       initializer=tf.compat.v1.zeros_initializer()))
        tables = _add_stacks(stacks, stats_from_variables)
        initial = list(zip(variables, values.values())) + tables
        # A dummy image of the official output shape that depends on every input (not the generator).
        batch = tf.shape(z)[0]
        touch = (tf.reduce_sum(z) + tf.reduce_sum(y)) * 0.0 + truncation * 0.0
        image = tf.tanh(tf.zeros(tf.stack([batch, res, res, 3])) + touch)
        with tf.compat.v1.Session(graph=graph) as sess:
            # One run feeding every initializer: no value-sized constants in the graph, and one graph
            # pruning instead of one per variable.
            sess.run([v.initializer for v, _ in initial],
                     feed_dict={v.initializer.inputs[1]: value for v, value in initial})
            builder = tf.compat.v1.saved_model.Builder(out_dir)
            signature = tf.compat.v1.saved_model.predict_signature_def(
                inputs={"z": z, "y": y, "truncation": truncation}, outputs={"default": image})
            builder.add_meta_graph_and_variables(sess, tags=[], signature_def_map={"default": signature},
                                                 strip_default_attrs=True)
            builder.save()
    with tf.io.gfile.GFile(os.path.join(out_dir, "tfhub_module.pb"), "wb") as f:
        f.write(b"\x08\x03")  # ModuleDef{format: FORMAT_V3}, as in TF1 hub modules
    return {"values": values, "stacks": stacks, "dim_z": dim_z(kind), "ch": ch, "resolution": res, "kind": kind}


def read_stacks(module_dir: str, names) -> Dict[str, np.ndarray]:
    """Evaluates the named graph tensors of a module's saved_model.pb (for the fixture's own test)."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(os.path.join(module_dir, "saved_model.pb"), "rb") as f:
        sm.ParseFromString(f.read())
    graph_def = sm.meta_graphs[0].graph_def
    sub = tf.compat.v1.graph_util.extract_sub_graph(graph_def, list(names))
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(sub, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            return dict(zip(names, sess.run([f"{n}:0" for n in names])))
