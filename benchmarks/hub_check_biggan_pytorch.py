"""check_hub_import.py's torch side for biggan-*/2: BigGAN-PyTorch's own TF-Hub converter and models.

Runs in --torch_python (torch, no TensorFlow). Drives ajbrock/BigGAN-PyTorch's
`TFHub/converter.convert_biggan` (the `TFHub2Pytorch` map into the `biggan_v1` shell,
`convert_from_v1`, `BigGAN.Generator(**get_config(res))`) and runs both the converted G and the
`biggan_v1.Generator{R}` shell itself. The converter's TF1 hub dump is replaced by check_hub_import's
dump of the module; everything else is the reference's code, imported from --refs_dir at run time.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import re
import sys
import types

from hub_kinds import parse_kind
from import_stubs import module


class _Recording(dict):
    """The dumped variables as {'module/NAME:0': value}, noting which keys the converter reads."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return dict.__getitem__(self, key)


def _import_converter(root: str):
    """The converter and biggan_v1 modules, with stubs for what they import but the check never calls."""
    sys.path[:0] = [os.path.join(root, "TFHub"), root]
    # Imported at the converter's top but used only by code this check replaces or never calls: the TF1
    # hub dump, the hdf5 cache, sample saving, and biggan_v1's truncated_z_sample.
    sys.modules["tensorflow"] = module("tensorflow")
    sys.modules["tensorflow_hub"] = module("tensorflow_hub")
    sys.modules["h5py"] = module("h5py")
    tv_utils = module("torchvision.utils", save_image=None)
    sys.modules["torchvision"] = module("torchvision", utils=tv_utils)
    sys.modules["torchvision.utils"] = tv_utils
    if "scipy" not in sys.modules:
        try:
            import scipy.stats  # noqa: F401
        except ImportError:
            stats = module("scipy.stats", truncnorm=None)
            sys.modules["scipy"] = module("scipy", stats=stats)
            sys.modules["scipy.stats"] = stats
    import converter
    import biggan_v1

    return converter, biggan_v1


def _reduced_width(converter, ch: int, res: int) -> list:
    """At ch != 96 only: convert_from_v1 and get_config hard-code the official ch = 96; returns what
    was substituted (empty at the official width)."""
    if ch == 96:
        return []
    source = inspect.getsource(converter.convert_from_v1)
    new, count = re.subn(r"96 +\* 16", f"{ch} * 16", source)
    if count != 3:
        raise AssertionError(f"convert_from_v1: expected 3 literal '96 * 16', found {count}")
    exec(compile(new, converter.__file__, "exec"), converter.__dict__)
    get_config = converter.get_config

    def get_config_ch(resolution):
        cfg = get_config(resolution)
        cfg["G_ch"] = cfg["D_ch"] = ch
        return cfg

    converter.get_config = get_config_ch
    return [f"convert_from_v1: literal 96 -> {ch} (3 places); get_config: G_ch=D_ch={ch}; "
            f"biggan_v1.Generator{res}(chn={ch})"]


def _record_conversion(converter, biggan_v1, ch: int, res: int):
    """Hooks that keep the biggan_v1 shells the converter builds and the state dicts it passes to
    convert_from_v1: ([shells], [v1 state dicts]), filled during convert_biggan."""
    shells = []
    shell_cls = getattr(biggan_v1, f"Generator{res}")

    def make_shell(*a, **k):
        k.setdefault("chn", ch)
        shells.append(shell_cls(*a, **k))
        return shells[-1]

    converter.biggan_for_conversion = types.SimpleNamespace(**{f"Generator{res}": make_shell})
    v1_dicts = []
    from_v1 = converter.convert_from_v1

    def record_from_v1(hub_dict, resolution=128):
        v1_dicts.append(dict(hub_dict))
        return from_v1(hub_dict, resolution)

    converter.convert_from_v1 = record_from_v1
    return shells, v1_dicts


def _sample(G, shell, spec, inputs) -> tuple:
    """Images of the converted G, of the shell, and of G with its output BN at eps 1e-4 (NHWC), and
    the output BN's eps as built."""
    import torch

    out = {}
    y = torch.from_numpy(inputs["y"])
    classes = torch.from_numpy(inputs["classes"])
    with torch.no_grad():
        for t in spec["truncations"]:
            z = torch.from_numpy(inputs[f"z/{t!r}"])
            out[f"BigGAN-PyTorch@{t!r}"] = G(z, G.shared(classes)).permute(0, 2, 3, 1).numpy()
            out[f"biggan_v1-shell@{t!r}"] = shell(z, y).permute(0, 2, 3, 1).numpy()
        # BigGAN.Generator builds its output BN as layers.bn(...) without eps=BN_eps, i.e. torch's 1e-5,
        # where the module (and every other BN of the same model) uses 1e-4: the same converted G again
        # with only that epsilon set to the module's, to separate the mapping from that constant.
        out_bn = G.output_layer[0]
        eps_as_built = out_bn.eps
        out_bn.eps = 1e-4
        for t in spec["truncations"]:
            z = torch.from_numpy(inputs[f"z/{t!r}"])
            out[f"BigGAN-PyTorch[output-BN eps 1e-4]@{t!r}"] = G(z, G.shared(classes)).permute(0, 2, 3, 1).numpy()
    return out, eps_as_built


def drive(spec, variables, inputs):
    """BigGAN-PyTorch: TFHub/converter.convert_biggan (TFHub2Pytorch -> biggan_v1 shell state dict ->
    convert_from_v1 -> BigGAN.Generator(**get_config(res))), and the biggan_v1 shell itself."""
    import torch

    deep, res = parse_kind(spec["kind"])
    ch = spec["ch"]
    converter, biggan_v1 = _import_converter(os.path.join(spec["refs_dir"], "BigGAN-PyTorch"))
    # dump_tfhub_to_hdf5 loads hub.Module(path) in TF1 and returns {var.name: value} of
    # tf.global_variables(): names 'module/<checkpoint name>:0' (hub.Module's default scope "module").
    tf_weights = _Recording({f"module/{name}:0": value for name, value in variables.items()})
    converter.dump_tfhub_to_hdf5 = lambda module_path, hdf5_path, redownload=False: tf_weights
    substituted = _reduced_width(converter, ch, res)
    shells, v1_dicts = _record_conversion(converter, biggan_v1, ch, res)
    weight_dir = os.path.join(spec["work_dir"], "biggan_pytorch_weights")
    os.makedirs(weight_dir, exist_ok=True)
    with contextlib.redirect_stdout(io.StringIO()):
        G = converter.convert_biggan(res, weight_dir)
    saved = torch.load(os.path.join(weight_dir, converter.PTH_TMPL.format(res)), weights_only=True)
    result = G.load_state_dict(saved, strict=False)  # what convert_biggan's own call left out
    missing = [k for k in result.missing_keys if not re.search(r"(^|\.)sv\d+$", k)]
    G.eval()
    shell = shells[0]
    shell_load = shell.load_state_dict(v1_dicts[0], strict=True)
    shell.eval()
    out, eps_as_built = _sample(G, shell, spec, inputs)
    info = {"BigGAN-PyTorch": {
        "driven": "TFHub/converter.convert_biggan -> BigGAN.Generator(**get_config(res)); "
                  "biggan_v1 shell run with TFHub2Pytorch's state dict; fakes: dump_tfhub_to_hdf5 returns the "
                  "dumped variables as {'module/NAME:0': value}; tensorflow, tensorflow_hub, h5py, torchvision "
                  "stub modules (imported, unused)",
        "substituted_for_reduced_width": substituted,
        "generator_keys_not_loaded": missing,
        "unexpected_keys": list(result.unexpected_keys),
        "shell_strict_load": str(shell_load),
        "output_bn_eps_as_built": eps_as_built,
        "shell_output_bn_eps": shell.ScaledCrossReplicaBN.eps,
        "module_variables_not_read": sorted(k[len("module/"):-2] for k in set(tf_weights) - tf_weights.read),
    }}
    return out, info
