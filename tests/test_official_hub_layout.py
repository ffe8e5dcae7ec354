"""The official-layout module fixture (tests/official_hub_layout.py) writes what it promises.

Checked against independent readings: the checkpoint's own variable list (tf.train.list_variables), the
SavedModel proto, numpy's SVD for the spectral-norm vectors, and the deep modules' statistics evaluated
from the saved GraphDef the way pytorch-pretrained-BigGAN reads them (tensor `stack_N:0`).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import official_hub_layout as hub_layout

pytestmark = pytest.mark.xdist_group("official_hub_layout")

CH = 4


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    out = {}
    for kind in ("biggan-128/2", "biggan-deep-128/1"):
        path = str(root / kind.replace("/", "_"))
        out[kind] = (path, hub_layout.write_official_module(kind, path, ch=CH, seed=3))
    return out


@pytest.mark.parametrize("kind", ["biggan-128/2", "biggan-deep-128/1"])
def test_checkpoint_holds_exactly_the_expected_layout(modules, kind):
    path, info = modules[kind]
    assert sorted(os.listdir(path)) == ["saved_model.pb", "tfhub_module.pb", "variables"]
    listed = {name: tuple(shape) for name, shape in tf.train.list_variables(os.path.join(path, "variables", "variables"))}
    assert listed == hub_layout.expected_layout(kind, CH)
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    dtypes = reader.get_variable_to_dtype_map()
    assert set(dtypes.values()) == {tf.float32}
    for name, value in info["values"].items():
        np.testing.assert_array_equal(reader.get_tensor(name), value)


def test_names_follow_the_converters(modules):
    v2 = hub_layout.expected_layout("biggan-128/2", CH)
    deep = hub_layout.expected_layout("biggan-deep-128/1", CH)
    # BigGAN-PyTorch TFHub/converter.py: G_linear fed a 20-d chunk, HyperBN on (20 + 128), u0/u1 unsuffixed.
    assert v2["Generator/G_Z/G_linear/w/ema_b999900"] == (20, 4 * 4 * 16 * CH)
    assert v2["Generator/GBlock_4/HyperBN_1/gamma/w/ema_b999900"] == (148, CH)
    assert v2["Generator/GBlock/conv_sc/u1"] == (1, 16 * CH)
    assert v2["Generator/ScaledCrossReplicaBNbn/accumulation_counter"] == ()
    assert "Generator/GBlock_5/conv0/w/ema_b999900" not in v2  # 5 blocks at 128 px
    # pytorch-pretrained-BigGAN convert_tf_to_pytorch.py: z + embedding (256) everywhere, u0 only.
    assert deep["Generator/GenZ/G_linear/w/ema_0.9999"] == (256, 4 * 4 * 16 * CH)
    assert deep["Generator/GBlock_9/BatchNorm_3/offset/w/ema_0.9999"] == (256, 2 * CH // 4)
    assert deep["Generator/conv_to_rgb/w/ema_0.9999"] == (3, 3, CH, CH)
    assert not any(name.endswith("/u1") for name in deep)
    for layout in (v2, deep):
        assert layout["Generator/attention/gamma/" + ("ema_b999900" if layout is v2 else "ema_0.9999")] == (1,)
        assert not any(name.startswith("module/") for name in layout)


@pytest.mark.parametrize("kind", ["biggan-128/2", "biggan-deep-128/1"])
def test_sn_vectors_are_the_converged_top_singular_vectors(modules, kind):
    _, info = modules[kind]
    values = info["values"]
    checked = 0
    for name, u0 in values.items():
        if not name.endswith("/u0"):
            continue
        layer = name[: -len("/u0")]
        kernel = values[next(n for n in values if n.startswith(layer + "/w/"))]
        w = kernel.reshape(-1, kernel.shape[-1]).astype(np.float64)
        _, s, vt = np.linalg.svd(w, full_matrices=False)
        assert abs(abs(float(vt[0] @ u0[0].astype(np.float64))) - 1.0) < 1e-6, name
        # One power iteration from u0 (ours / BigGAN-PyTorch's reading) returns sigma_0 to float32 precision.
        v = u0.astype(np.float64) @ w.T
        v /= np.linalg.norm(v)
        sigma = np.linalg.norm(v @ w)
        assert abs(sigma - s[0]) / s[0] < 1e-6, name
        if len(s) > 1:
            assert s[0] > 2.0 * s[1], name
        checked += 1
    assert checked > 20


def test_deep_statistics_are_graph_tensors_with_the_converter_numbering(modules):
    path, info = modules["biggan-deep-128/1"]
    stacks = hub_layout.expected_stacks("biggan-deep-128/1", CH)
    # pytorch-pretrained-BigGAN asks for stack_{10k+1, 10k+3, 10k+6, 10k+8} until one is missing.
    wanted = [f"stack_{i}" for k in range(50) for i in (10 * k + 1, 10 * k + 3, 10 * k + 6, 10 * k + 8)]
    wanted = wanted[: wanted.index(next(n for n in wanted if n not in stacks))]
    assert set(wanted) == set(stacks) and len(wanted) == 2 * (4 * 10 + 1)
    assert stacks["stack_201"] == ((51, CH), "Generator/BatchNorm", "mean")
    assert stacks["stack_8"] == ((51, 16 * CH // 4), "Generator/GBlock/BatchNorm_1", "var")
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    assert len(proto.meta_graphs) == 1 and list(proto.meta_graphs[0].meta_info_def.tags) == []
    assert set(proto.meta_graphs[0].signature_def["default"].inputs) == {"z", "y", "truncation"}
    ops = {node.name: node.op for node in proto.meta_graphs[0].graph_def.node}
    assert all(ops[name] == "Pack" for name in stacks)  # not a Const: a reader must evaluate the graph
    read = hub_layout.read_stacks(path, wanted)
    for name in wanted:
        np.testing.assert_array_equal(read[name], info["stacks"][name])
        if stacks[name][2] == "var":
            assert read[name].min() > 0
    assert not np.allclose(read["stack_1"][10], read["stack_1"][11])  # rows differ: interpolation shows


def test_biggan_v2_has_no_stacks_and_damaged_variants(tmp_path):
    assert hub_layout.expected_stacks("biggan-256/2", CH) == {}
    layout = hub_layout.expected_layout("biggan-512/2", CH)
    assert layout["Generator/G_Z/G_linear/w/ema_b999900"] == (16, 4 * 4 * 16 * CH)  # 128 = 8 x 16
    assert layout["Generator/attention/g/w/ema_b999900"] == (1, 1, 4 * CH, 2 * CH)  # 4ch at 64 px
    path = str(tmp_path / "bad")
    hub_layout.write_official_module(
        "biggan-128/2", path, ch=CH, drop=("Generator/conv_2d/u0",),
        extra={"Generator/extra/w": (2, 2)}, reshape={"Generator/GBlock/conv0/b/ema_b999900": (5,)})
    listed = dict(tf.train.list_variables(os.path.join(path, "variables", "variables")))
    assert "Generator/conv_2d/u0" not in listed and listed["Generator/extra/w"] == [2, 2]
    assert listed["Generator/GBlock/conv0/b/ema_b999900"] == [5]
    with pytest.raises(ValueError):
        hub_layout.write_official_module("biggan-128/2", str(tmp_path / "x"), num_classes=10)
