"""check_hub_import.py's torch side for biggan-deep-*/1: pytorch-pretrained-BigGAN's own converter and model.

Runs in --torch_python (torch, no TensorFlow). The converter
(`convert_tf_to_pytorch.load_tf_weights_in_biggan`, huggingface/pytorch-pretrained-BigGAN) calls the
TF1 API, which TF 2.x no longer has: `fake_tf` serves it from check_hub_import's dump of the module.
Everything else is the reference's code, imported from --refs_dir at run time.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import re
import sys
import types

import numpy as np

from hub_kinds import parse_kind
from import_stubs import module


class _FakeTensorInfo:
    def __init__(self, dtype, shape):
        self.dtype, self._shape = dtype, shape

    def get_shape(self):
        return types.SimpleNamespace(as_list=lambda: list(self._shape))


class _Graph:
    """get_tensor_by_name('module_apply_default/stack_N:0'): the dumped graph tensors (hub.Module puts
    the applied signature's ops under the scope module_apply_default/), each read noted in `calls`."""

    def __init__(self, stacks, calls):
        self.stacks, self.calls = stacks, calls

    def get_tensor_by_name(self, name):
        prefix, suffix = "module_apply_default/", ":0"
        if not (name.startswith(prefix) and name.endswith(suffix)):
            raise KeyError(name)
        node = name[len(prefix):-len(suffix)]
        if node not in self.stacks:
            raise KeyError(name)
        self.calls.append(node)
        return self.stacks[node]


def fake_tf(module_dir, variables, stacks, dim_z, calls):
    """`tensorflow` and `tensorflow_hub` as pytorch-pretrained-BigGAN's converter uses them (TF1 API):
    tf.train.list_variables / load_variable on MODULE/variables/variables serve the dumped checkpoint;
    hub.Module + tf.Session + get_tensor_by_name('module_apply_default/stack_N:0') serve the dumped graph
    tensors."""
    ckpt = os.path.join(module_dir, "variables", "variables")

    def check(path):
        if path != ckpt:
            raise AssertionError(f"the converter read {path}, not the module's checkpoint {ckpt}")

    def list_variables(path):
        check(path)
        calls.append("tf.train.list_variables")
        return [(name, list(value.shape)) for name, value in sorted(variables.items())]

    def load_variable(path, name):
        check(path)
        return variables[name]  # KeyError names the variable, as TF's NotFoundError would

    graph = _Graph(stacks, calls)

    class Session:
        def run(self, fetch):
            return np.array(fetch)

    class Module:
        def __init__(self, path):
            if os.path.abspath(path) != os.path.abspath(module_dir):
                raise AssertionError(path)

        def get_input_info_dict(self):
            return {"z": _FakeTensorInfo("float32", [None, dim_z]), "y": _FakeTensorInfo("float32", [None, 1000]),
                    "truncation": _FakeTensorInfo("float32", [])}

        def __call__(self, inputs):
            return None

    tf = module("tensorflow", train=types.SimpleNamespace(list_variables=list_variables,
                                                            load_variable=load_variable),
                reset_default_graph=lambda: None, placeholder=lambda dtype, shape, name=None: name,
                global_variables_initializer=lambda: None, Session=Session, get_default_graph=lambda: graph)
    hub = module("tensorflow_hub", Module=Module)
    return tf, hub


def _enter_package(refs_dir: str) -> None:
    """pytorch_pretrained_biggan importable from the reference's work tree, without its downloads."""
    root = os.path.join(refs_dir, "pytorch-pretrained-BigGAN", "pytorch_pretrained_biggan")
    # The package's __init__ imports file_utils (boto3, requests, tqdm: pretrained-weight downloads,
    # unused here); the package is entered without it and file_utils replaced by a stub.
    pkg = module("pytorch_pretrained_biggan")
    pkg.__path__ = [root]
    sys.modules["pytorch_pretrained_biggan"] = pkg

    def no_download(*a, **k):
        raise AssertionError("no downloads")

    sys.modules["pytorch_pretrained_biggan.file_utils"] = module("pytorch_pretrained_biggan.file_utils",
                                                                 cached_path=no_download)


def _convert(conv, hf_model, spec, res):
    """The reference's converter into its BigGAN model: (model, module variables its map names, the
    torch tensors its log lists as not loaded)."""
    mapped = set()
    build_map = conv.build_tf_to_pytorch_map

    def record_map(model, config):  # its own map, recorded to list the module variables it leaves unread
        tf_to_pt = build_map(model, config)
        mapped.update(tf_to_pt)
        return tf_to_pt

    conv.build_tf_to_pytorch_map = record_map
    config = copy.deepcopy(getattr(conv, f"BigGAN{res}"))
    config.channel_width = spec["ch"]
    model = hf_model.BigGAN(config)
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    conv.logger.addHandler(handler)
    conv.logger.setLevel(logging.INFO)
    with contextlib.redirect_stdout(io.StringIO()):  # it pprints the variable list
        model = conv.load_tf_weights_in_biggan(model, config, spec["module_dir"], batch_norm_stats_path=None)
    conv.logger.removeHandler(handler)
    remaining = re.search(r"Remanining parameters/buffers from PyTorch model: (.*) -", log.getvalue())
    not_loaded = sorted(v for v in (remaining.group(1).split(", ") if remaining else []) if v)
    return model, mapped, not_loaded


def drive(spec, variables, stacks, inputs):
    """pytorch-pretrained-BigGAN: its converter's load_tf_weights_in_biggan into its BigGAN model."""
    import torch

    _enter_package(spec["refs_dir"])
    calls = []
    deep, res = parse_kind(spec["kind"])
    fake_tensorflow, fake_hub = fake_tf(spec["module_dir"], variables, stacks, 128, calls)
    sys.modules["tensorflow"] = fake_tensorflow
    sys.modules["tensorflow_hub"] = fake_hub
    import pytorch_pretrained_biggan.convert_tf_to_pytorch as conv
    import pytorch_pretrained_biggan.model as hf_model

    model, mapped, not_loaded = _convert(conv, hf_model, spec, res)
    model.eval()
    out = {}
    y = torch.from_numpy(inputs["y"])
    with torch.no_grad():
        for t in spec["truncations"]:
            img = model(torch.from_numpy(inputs[f"z/{t!r}"]), y, t)
            out[f"pytorch-pretrained-BigGAN@{t!r}"] = img.permute(0, 2, 3, 1).numpy()
    stacks_read = [c for c in calls if c.startswith("stack")]
    info = {"pytorch-pretrained-BigGAN": {
        "driven": "convert_tf_to_pytorch.load_tf_weights_in_biggan (incl. extract_batch_norm_stats) -> "
                  f"model.BigGAN(BigGAN{res} config, channel_width={spec['ch']}); fakes: tensorflow "
                  "(train.list_variables/load_variable, Session, get_default_graph), tensorflow_hub.Module, "
                  "package file_utils (downloads)",
        "stack_tensors_read": len(stacks_read),
        "stack_range": [stacks_read[0], stacks_read[-1]] if stacks_read else None,
        "module_variables_not_read": sorted(set(variables) - mapped),
        "torch_tensors_not_loaded": not_loaded,
    }}
    return out, info
