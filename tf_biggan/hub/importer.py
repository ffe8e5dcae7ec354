"""Importing DeepMind's official TF-Hub BigGAN generators as a tf_biggan run (`--mode=import_hub`).

The six published modules, `biggan-{128,256,512}/2` and `biggan-deep-{128,256,512}/1`, as downloaded
and unpacked (nothing is fetched): `variables/variables.*` (a TF checkpoint of the generator's EMA
weights) and `saved_model.pb` (the TF1 graph, which holds the deep modules' BN statistics). The module
is recognised from its variables, mapped onto our Generator (the same layouts: TF-Hub stores TF
kernels, HWIO and (in, out), as we do, so nothing is transposed) and written as a run:

    RUN/hparams.yaml           the matching configuration (hparams/biggan_R.yaml or biggan_deep_R.yaml with
                               the module's ch, dim_z and the switches below) + --hparams_overrides
    RUN/pretrained/ckpt-0      G and EMA-G = the module's weights, SN vectors and BN statistics; D fresh
    RUN/import.json            the module, its kind, which module variable went where, and the
                               variables the importer does not know (`unmapped_variables`)

A variable the importer does not know is left out, listed in import.json and named in one warning
line (the `/2` modules were re-released with fixed statistics state, whose variables nobody here has
seen); a variable the generator needs that is missing or of another shape is refused by name.

Every mode that reads a run reads it (`runs.resolve_checkpoint` falls back to the import until
the run has trained), and `--mode=train` on it starts G and EMA-G from the module and D from scratch
(`pretrained_start`).

Where the modules' arithmetic is not our default, the run reproduces the module (README, "Where the
official modules differ"):
- the deep modules end in a 3x3 conv ch -> ch of which 3 channels are kept: `model.hub_output_conv`;
- their BN statistics are 51 sets indexed by truncation 0, 0.02, ..., 1.0, graph tensors
  `stack_{5n+1}` (means) and `stack_{5n+3}` (variances) of BN layer n (4 per block in order, then the
  last BN; read by pytorch-pretrained-BigGAN's converter the same way): `model.truncation_stats: 51`,
  interpolated linearly (`layers.batch_norm.interpolate_rows`);
- a module's truncation t scales a truncated normal on [-2, 2] (the modules' own sampling notebook):
  `eval.latent_convention: hub_notebook`;
- their SN vectors are the module's: `model.sn_settle_iterations: 0` keeps them (our EMA-G otherwise
  re-settles its vectors on its kernels before sampling), and the power iteration normalises them as
  the module graph does, x * rsqrt(sum x^2 + 1e-4): `model.sn_normalize: rsqrt_add`. The public
  source is an op-by-op listing of the biggan-256/2 module's graph (Pow, Sum, Add 1e-4, Rsqrt, Mul) in
  shawwn/ml-notes `BigGAN.py`, class SpectralNorm; that the deep modules do the same is an inference
  (docs/design.md, "Spectral norm of imported runs");
- biggan-512 has z of 128 (8 chunks of 16), not Table 6's 160.
The conditioning order (z chunk first, then the class embedding), gains 1 + W c, biases, epsilons 1e-4
and the attention layer are ours already. The `/2` modules hold ONE set of BN statistics (the
converters' reading: `accumulated_mean` / `accumulated_var` as stored): it is used at truncation 1 in
hub_notebook (ajbrock/BigGAN-PyTorch issue #14 reports the module and its conversion agree at
truncation 1 and not below); at other truncations standing statistics are computed as for any run.
Both families' statistics are used only while the generator is the module's (the run read at
RUN/pretrained/ckpt-0, `sampling.standing_stats.ModuleStatistics`): a fine-tuned generator's are its
own. Under hub_notebook, t = 0 would make z all zeros: the run's default truncation (`eval.truncation`,
for --mode=eval, synthesize, the figures and the best-FID keeper) is written as 1.0 and t <= 0 is refused.
A module holds no training images, so the run measures FID against the validation shards
(`eval.fid_reference: validation`, files from `eval.validation_pattern`); a fine-tuning recipe, which
gives the training images, sets it back to train.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from tf_biggan.errors import UserError
from tf_biggan.runs import IMPORT_FILE, PRETRAINED_DIR

EMA_SUFFIX = {"biggan": "/ema_b999900", "biggan_deep": "/ema_0.9999"}
# Blocks in G -> resolution, per family (the modules' GBlock, GBlock_1, ...).
RESOLUTION_OF_BLOCKS = {"biggan": {5: 128, 6: 256, 7: 512}, "biggan_deep": {10: 128, 12: 256, 14: 512}}
NUM_TRUNCATION_STATS = 51
# The truncations a sweep of an imported run scores by default: the module's domain is (0, 1].
IMPORTED_TRUNCATIONS = (0.2, 0.4, 0.5, 0.6, 0.8, 1.0)
# The run's default truncation (eval.truncation): the widest of the module's domain (t = 0 is z = 0).
IMPORTED_TRUNCATION = 1.0
# Module variables no tf_biggan weight takes: the second / third singular vectors SN logs (u1, u2), the
# statistics' counter, and the deep modules' unused accumulators.
_IGNORED = re.compile(r"(/u[12]$)|(accumulation_counter$)|(BatchNorm(_\d)?/accumulated_(mean|var)$)")


@dataclasses.dataclass
class Module:
    """What `read_module` found: the kind, its sizes, and every variable / statistic table."""

    path: str
    family: str
    resolution: int
    ch: int
    dim_z: int
    num_classes: int
    variables: Dict[str, np.ndarray]
    stacks: Dict[str, np.ndarray]

    @property
    def kind(self) -> str:
        return (f"biggan-deep-{self.resolution}/1" if self.family == "biggan_deep"
                else f"biggan-{self.resolution}/2")


# ------------------------------------------------------------------------------------ reading
def _checkpoint_prefix(module_dir: str) -> str:
    import tensorflow as tf

    if not tf.io.gfile.isdir(module_dir):
        raise UserError(f"--module={module_dir} is not a directory: pass an official TF-Hub BigGAN module as "
                        "downloaded and unpacked (it holds saved_model.pb and variables/)")
    prefix = os.path.join(module_dir, "variables", "variables")
    if not tf.io.gfile.exists(prefix + ".index"):
        raise UserError(f"--module={module_dir}: {prefix}.index is missing: is this an unpacked TF-Hub module? "
                        "(tar -xzf the downloaded .tar.gz into an empty directory)")
    return prefix


def _read_variables(prefix: str) -> Dict[str, np.ndarray]:
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(prefix)
        names = reader.get_variable_to_shape_map()
        values = {name: reader.get_tensor(name) for name in names}
    except (tf.errors.OpError, ValueError) as exc:
        raise UserError(f"{prefix}.index / .data-*: the module's variables cannot be read ({str(exc).splitlines()[0][:200]}): "
                        "the file is damaged or truncated; download and unpack the module again") from None
    # hub.Module puts a module's variables under "module/"; the file itself has no prefix.
    return {name[len("module/"):] if name.startswith("module/") else name: np.asarray(value)
            for name, value in values.items()}


def _stack_nodes(graph_def, names: List[str]) -> Optional[Dict[str, str]]:
    """{tensor name: graph node name} when every one of `names` is a node of `graph_def`, else None.
    The node may sit at the graph's root ("stack_N") or under a scope (".../stack_N")."""
    by_name: Dict[str, str] = {}
    for node in graph_def.node:
        tail = node.name.rsplit("/", 1)[-1]
        if tail in names and (tail not in by_name or node.name == tail):
            by_name[tail] = node.name
    return by_name if all(n in by_name for n in names) else None


def _run_subgraph(graph_def, nodes: Dict[str, str], names: List[str]) -> List[np.ndarray]:
    """Only the ops that compute `names` (the deep modules' statistics are Pack ops of constants)."""
    import tensorflow as tf

    sub = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [nodes[n] for n in names])
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(sub, name="")
        with tf.compat.v1.Session(graph=graph) as session:
            return session.run([f"{nodes[n]}:0" for n in names])


def _run_saved_model(module_dir: str, nodes: Dict[str, str], names: List[str]) -> List[np.ndarray]:
    """The whole SavedModel (tags []) loaded in a TF1 session, variables restored: for statistics
    that are not a self-contained subgraph (computed from variables, say)."""
    import tensorflow as tf

    with tf.Graph().as_default() as graph:
        with tf.compat.v1.Session(graph=graph) as session:
            tf.compat.v1.saved_model.loader.load(session, [], module_dir)
            return session.run([f"{nodes[n]}:0" for n in names])


def read_graph_tensors(module_dir: str, names: List[str], log=None) -> Dict[str, np.ndarray]:
    """The named tensors of the module's graph (saved_model.pb), evaluated: the subgraph that computes
    them is run on its own, or, where it cannot be, the SavedModel is loaded in a TF1 session."""
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(module_dir, "saved_model.pb")
    if not tf.io.gfile.exists(path):
        raise UserError(f"--module={module_dir}: {path} is missing; the BigGAN-deep modules keep their BN "
                        "statistics in it: download and unpack the module again")
    saved = saved_model_pb2.SavedModel()
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            saved.ParseFromString(f.read())
    except Exception as exc:  # protobuf's DecodeError
        raise UserError(f"{path} cannot be parsed ({exc}): the file is damaged; download the module again") from None
    for meta_graph in saved.meta_graphs:
        nodes = _stack_nodes(meta_graph.graph_def, names)
        if nodes is None:
            continue
        try:
            values = _run_subgraph(meta_graph.graph_def, nodes, names)
        except (tf.errors.OpError, ValueError, KeyError, TypeError) as exc:
            if log:
                log(f"import_hub: the statistics subgraph of {path} does not run on its own "
                    f"({_first_line(exc)}); loading the SavedModel in a TF1 session")
            try:
                values = _run_saved_model(module_dir, nodes, names)
            except (tf.errors.OpError, ValueError, KeyError, TypeError, RuntimeError, OSError) as exc2:
                raise UserError(f"{path}: the BN statistics tensors ({names[0]}, ...) cannot be evaluated, neither "
                                f"alone ({_first_line(exc)}) nor with the SavedModel loaded ({_first_line(exc2)}): "
                                "the module is damaged or not an official one") from None
        return {n: np.asarray(v) for n, v in zip(names, values)}
    raise UserError(f"{path}: the graph has no BN statistics tensors {', '.join(names[:3])}, ...: is this a "
                    "biggan-deep-*/1 module? (its 51 truncation-indexed statistics are graph tensors)")


def _first_line(exc: Exception) -> str:
    """The line of an error that says what failed (TF's graph errors open with where it happened)."""
    where = ("Graph execution error", "Detected at node", "File ", "Node:", "[[")
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.strip().startswith(where)]
    return (lines[0] if lines else type(exc).__name__).split(". ")[0][:200]


def _block_count(names) -> int:
    blocks = {m.group(1) for n in names for m in [re.match(r"Generator/GBlock(_\d+)?/", n)] if m}
    return len(blocks)


def read_module(module_dir: str, log=None) -> Module:
    """The module in `module_dir`: its kind (from its variables), sizes, variables and statistics."""
    prefix = _checkpoint_prefix(module_dir)
    variables = _read_variables(prefix)
    family = next((f for f, suffix in EMA_SUFFIX.items() if f"linear/w{suffix}" in variables), None)
    linear = {"biggan": "Generator/G_Z/G_linear/w", "biggan_deep": "Generator/GenZ/G_linear/w"}
    if family is None or linear[family] + EMA_SUFFIX[family] not in variables:
        raise UserError(f"{prefix}: not an official BigGAN generator module (no 'linear/w/ema_b999900' + "
                        "'Generator/G_Z/G_linear/w/...' of biggan-*/2, nor 'linear/w/ema_0.9999' + "
                        "'Generator/GenZ/G_linear/w/...' of biggan-deep-*/1); --mode=import_hub reads those six")
    blocks = _block_count(variables)
    resolution = RESOLUTION_OF_BLOCKS[family].get(blocks)
    if resolution is None:
        raise UserError(f"{prefix}: {blocks} GBlocks, where the {family} modules have "
                        f"{sorted(RESOLUTION_OF_BLOCKS[family])} (128 / 256 / 512 px)")
    w = variables[linear[family] + EMA_SUFFIX[family]]
    embedding = variables[f"linear/w{EMA_SUFFIX[family]}"]
    if w.ndim != 2 or w.shape[1] % 256 or embedding.ndim != 2:
        raise UserError(f"{prefix}: {linear[family]}{EMA_SUFFIX[family]} has shape {list(w.shape)}, "
                        "expected [z, 4*4*16*ch]")
    ch = w.shape[1] // 256
    num_classes, shared_dim = embedding.shape
    dim_z = w.shape[0] * (blocks + 1) if family == "biggan" else w.shape[0] - shared_dim
    module = Module(module_dir, family, resolution, ch, int(dim_z), int(num_classes), variables, {})
    if family == "biggan_deep":
        names = [f"stack_{5 * n + k}" for n in range(4 * blocks + 1) for k in (1, 3)]
        module.stacks = read_graph_tensors(module_dir, names, log)
    return module


# ------------------------------------------------------------------------------------ mapping
def module_hparams(module: Module, overrides: str = ""):
    """The run's configuration: the published one for the family and resolution, with the module's
    sizes and the switches that reproduce its arithmetic (module docstring), then `overrides`."""
    from tf_biggan.config import HPARAMS_DIR, hparams_from_dict, load_hparams, parse_overrides

    name = f"{module.family}_{module.resolution}.yaml"
    hp = load_hparams(os.path.join(HPARAMS_DIR, name))
    deep = module.family == "biggan_deep"
    fixed = {"model": dict(family=module.family, resolution=module.resolution, ch=module.ch, dim_z=module.dim_z,
                           shared_dim=128, shared_embedding=True, skip_z=True, hub_output_conv=deep,
                           sn_settle_iterations=0, sn_normalize="rsqrt_add",
                           truncation_stats=NUM_TRUNCATION_STATS if deep else 0,
                           bn_epsilon=1e-4, sn_epsilon=1e-4),
             "data": dict(num_classes=module.num_classes),
             # fid_reference: a module comes without its training images (data.pattern empty), so FID is
             # measured against the held-out shards that eval.validation_pattern names.
             "eval": dict(latent_convention="hub_notebook", truncations=list(IMPORTED_TRUNCATIONS),
                          truncation=IMPORTED_TRUNCATION, fid_reference="validation",
                          export_truncations=[round(k / 50, 2) for k in range(1, 51)] if deep
                          else list(hp.eval.export_truncations))}
    hp = hparams_from_dict(fixed, f"the {module.kind} module's configuration", base=hp)
    user = parse_overrides(overrides or "")
    clash = [f"model.{k}" for k in user.get("model", {}) if k in fixed["model"]]
    if clash:
        raise UserError(f"--hparams_overrides {', '.join(clash)}: fixed by the module (the weights have that "
                        "shape / arithmetic); leave them out")
    if user:
        hp = hparams_from_dict(user, "--hparams_overrides", base=hp)
    return hp.validate()


def _sn_names(prefix: str, layer, suffix: str, bias: bool = True) -> List[Tuple[str, object, str]]:
    """(module name, variable, how) for one SN layer: kernel, bias, u0."""
    out = [(f"{prefix}/w{suffix}", layer.kernel, "as_is")]
    if bias and layer.use_bias:
        out.append((f"{prefix}/b{suffix}", layer.bias, "flatten"))
    out.append((f"{prefix}/u0", layer.u, "as_is"))
    return out


def variable_map(generator, module: Module) -> List[Tuple[str, object, str]]:
    """[(module variable or graph tensor, our variable, how)] for every weight of `generator`'s that
    the module sets. how: as_is (same shape), flatten (same elements: [1,1,1,C] or [1] vs [C] / ()),
    rows_mean / rows_var (a [51, C] statistics table)."""
    e = EMA_SUFFIX[module.family]
    deep = module.family == "biggan_deep"
    out = [(f"linear/w{e}", generator.shared.kernel, "as_is")]
    out += _sn_names("Generator/GenZ/G_linear" if deep else "Generator/G_Z/G_linear", generator.linear, e)
    for k, block in enumerate(generator.blocks):
        name = "Generator/GBlock" + (f"_{k}" if k else "")
        if deep:
            for j in range(4):
                conv, bn = getattr(block, f"conv{j + 1}"), getattr(block, f"bn{j + 1}")
                out += _sn_names(f"{name}/conv{j}", conv, e)
                bn_name = f"{name}/BatchNorm" + (f"_{j}" if j else "")
                out += _sn_names(f"{bn_name}/scale", bn.gain, e)
                out += _sn_names(f"{bn_name}/offset", bn.bias, e)
                n = 4 * k + j
                out += [(f"stack_{5 * n + 1}", bn.truncation_mean, "rows"), (f"stack_{5 * n + 3}", bn.truncation_var, "rows")]
        else:
            out += _sn_names(f"{name}/conv0", block.conv1, e) + _sn_names(f"{name}/conv1", block.conv2, e)
            out += _sn_names(f"{name}/conv_sc", block.conv_sc, e)
            for j, bn in enumerate((block.bn1, block.bn2)):
                hyper, cross = f"{name}/HyperBN" + ("_1" if j else ""), f"{name}/CrossReplicaBN" + ("_1" if j else "")
                out += _sn_names(f"{hyper}/gamma", bn.gain, e) + _sn_names(f"{hyper}/beta", bn.bias, e)
                out += [(f"{cross}/accumulated_mean", bn.moving_mean, "as_is"),
                        (f"{cross}/accumulated_var", bn.moving_var, "as_is")]
    for attention in generator.attentions:  # the modules have one
        for ours, theirs in (("theta", "theta"), ("phi", "phi"), ("g", "g"), ("o", "o_conv")):
            out += _sn_names(f"Generator/attention/{theirs}", getattr(attention, ours), e, bias=False)
        out.append((f"Generator/attention/gamma{e}", attention.gamma, "flatten"))
    if deep:
        n = 4 * len(generator.blocks)
        out += [(f"Generator/BatchNorm/scale{e}", generator.out_bn.gamma, "flatten"),
                (f"Generator/BatchNorm/offset{e}", generator.out_bn.beta, "flatten"),
                (f"stack_{5 * n + 1}", generator.out_bn.truncation_mean, "rows"),
                (f"stack_{5 * n + 3}", generator.out_bn.truncation_var, "rows")]
        out += _sn_names("Generator/conv_to_rgb", generator.out_conv, e)
    else:
        out += [(f"Generator/ScaledCrossReplicaBN/gamma{e}", generator.out_bn.gamma, "flatten"),
                (f"Generator/ScaledCrossReplicaBN/beta{e}", generator.out_bn.beta, "flatten"),
                ("Generator/ScaledCrossReplicaBNbn/accumulated_mean", generator.out_bn.moving_mean, "as_is"),
                ("Generator/ScaledCrossReplicaBNbn/accumulated_var", generator.out_bn.moving_var, "as_is")]
        out += _sn_names("Generator/conv_2d", generator.out_conv, e)
    return out


def _check_names(module: Module, mapping) -> List[str]:
    """UserError naming a missing or mis-shaped module variable; returns the variables the importer
    does not know (neither mapped nor one of the known unused kinds)."""
    prefix = os.path.join(module.path, "variables", "variables")
    suffix = EMA_SUFFIX[module.family]
    wanted = {name for name, _, how in mapping if how != "rows"}
    missing = sorted(wanted - set(module.variables))
    if missing:
        raise UserError(f"{prefix}: variable {missing[0]} is missing ({len(missing)} missing in all) for a "
                        f"{module.kind} module: the file is incomplete or not an official module")
    unknown = sorted(n for n in set(module.variables) - wanted
                     if not _IGNORED.search(n) and n + suffix not in wanted)  # a raw twin of an EMA weight
    for name, variable, how in mapping:
        value = module.stacks[name] if how == "rows" else module.variables[name]
        want = tuple(variable.shape)
        ok = (value.shape == want if how in ("as_is", "rows")
              else int(np.prod(value.shape)) == int(np.prod(want)))
        if not ok:
            where = os.path.join(module.path, "saved_model.pb") if how == "rows" else prefix
            raise UserError(f"{where}: {name} has shape {list(value.shape)}, the {module.kind} generator's "
                            f"{variable.path} needs {list(want)}: the module is damaged or of another width")
    return unknown


def assign_module(generator, module: Module) -> Tuple[Dict[str, str], List[str]]:
    """Sets `generator`'s weights from the module: ({our variable path: module name}, the module
    variables the importer does not know, left out)."""
    mapping = variable_map(generator, module)
    unknown = _check_names(module, mapping)
    record = {}
    for name, variable, how in mapping:
        value = module.stacks[name] if how == "rows" else module.variables[name]
        variable.assign(np.reshape(value, variable.shape).astype(np.float32))
        record[variable.path] = name
    if module.family == "biggan_deep":  # until a truncation is chosen: the module's truncation-1 set
        from tf_biggan.layers.batch_norm import batch_norm_layers

        for layer in batch_norm_layers(generator):
            layer.use_truncation_stats(1.0)
    return record, unknown


# ------------------------------------------------------------------------------------ the run
def warn_unknown(module_dir: str, model_dir: str, unknown: List[str]) -> None:
    """The one warning line naming the module variables the import left out (stderr)."""
    if unknown:
        shown = ", ".join(unknown[:10]) + (f", ... ({len(unknown)} in all)" if len(unknown) > 10 else "")
        print(f"tf-biggan: warning: --module={module_dir}: left out {len(unknown)} variable(s) the importer does "
              f"not map (listed in {os.path.join(model_dir, IMPORT_FILE)} under unmapped_variables): {shown}",
              file=sys.stderr, flush=True)


def import_hub(module_dir: str, model_dir: str, overrides: str = "", log=print) -> dict:
    """Reads the module, writes RUN/hparams.yaml, RUN/pretrained/ckpt-0 and RUN/import.json."""
    import tensorflow as tf

    from tf_biggan import paths
    from tf_biggan.atomic import write_text
    from tf_biggan.config import save_hparams
    from tf_biggan.models import Discriminator, Generator
    from tf_biggan.models.variables_checkpoint import variables_checkpoint

    t0 = time.time()
    if paths.existing_file(model_dir):
        raise UserError(f"--model_dir={model_dir} is a file, not a directory: pass a new directory for the run")
    if tf.io.gfile.exists(os.path.join(model_dir, "hparams.yaml")):
        raise UserError(f"--model_dir={model_dir} already holds a run: import into a new directory")
    module = read_module(module_dir, log)
    log(f"import_hub: {module.kind} (ch {module.ch}, z {module.dim_z}, {module.num_classes} classes) from {module_dir}")
    hp = module_hparams(module, overrides)
    nets = {}
    for name in ("generator", "ema_generator"):
        nets[name] = Generator(hp.model, hp.data.num_classes, name=name)
        nets[name].build_for_input(1)
    record, unknown = assign_module(nets["ema_generator"], module)  # the module holds EMA weights: G starts as them
    for ema_weight, g_weight in zip(nets["ema_generator"].weights, nets["generator"].weights):
        g_weight.assign(ema_weight)
    nets["discriminator"] = Discriminator(hp.model, hp.data.num_classes, name="discriminator")
    nets["discriminator"].build_for_input(1)  # freshly initialised: no module holds D
    tf.io.gfile.makedirs(model_dir)
    save_hparams(hp, os.path.join(model_dir, "hparams.yaml"))
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(step=step, **{k: variables_checkpoint(v) for k, v in nets.items()})
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(model_dir, PRETRAINED_DIR), max_to_keep=1)
    path = manager.save(checkpoint_number=0)
    ignored = sorted(set(module.variables) - set(record.values()))
    report = {"module": module_dir, "kind": module.kind, "family": module.family, "resolution": module.resolution,
              "ch": module.ch, "dim_z": module.dim_z, "num_classes": module.num_classes, "checkpoint": path,
              "generator_and_ema_generator_from_module": record, "discriminator": "freshly initialised (no module holds D)",
              "module_variables_not_used": ignored, "unmapped_variables": unknown,
              "seconds": round(time.time() - t0, 1)}
    write_text(os.path.join(model_dir, IMPORT_FILE), json.dumps(report, indent=1) + "\n")
    warn_unknown(module_dir, model_dir, unknown)
    log(f"import_hub: wrote {model_dir} ({len(record)} weights of G and EMA-G from the module, D fresh) "
        f"in {report['seconds']:.1f} s")
    return report


def fine_tune_hparams(model_dir: str, recipe: Optional[str], overrides: str):
    """`--mode=train` on an imported run: the run's hparams.yaml, then the sections of a fine-tuning
    recipe (`--hparams`, e.g. hparams/finetune_biggan_deep_128.yaml, which has no model section: the
    module fixes the architecture), then --hparams_overrides; data.class_map is read and validated.
    TF-free (checked before TF starts)."""
    import yaml

    from tf_biggan import paths
    from tf_biggan.config import HParamsError, hparams_from_dict, hparams_path, load_hparams, parse_overrides

    hp = load_hparams(os.path.join(model_dir, "hparams.yaml"))
    if recipe:
        path = hparams_path(recipe)
        raw = yaml.safe_load(paths.read_text(path)) or {}
        if "model" in raw:
            raise HParamsError(f"{path}: a fine-tuning recipe for an imported run has no model section (the "
                               "module's weights fix the architecture); move the other sections to a file of their own")
        hp = hparams_from_dict(raw, path, base=hp)
    if overrides:
        hp = hparams_from_dict(parse_overrides(overrides), "--hparams_overrides", base=hp)
    hp = hp.validate()
    if hp.data.class_map:  # a typo in the map fails here, before TensorFlow starts
        from tf_biggan.data.class_map import read_class_map

        read_class_map(hp.data, paths.read_json(os.path.join(model_dir, IMPORT_FILE))["num_classes"])
    return hp


def run_import_hub(hp, request) -> dict:
    """`--mode=import_hub --module=DIR --model_dir=RUN [--hparams_overrides data.*/train.*/eval.*]`
    (`request`: a `requests.ImportHubRequest`)."""
    return import_hub(request.module, request.model_dir, request.hparams_overrides)
