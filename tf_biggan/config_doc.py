"""docs/configuration.md, generated from the dataclasses of config.py so that it cannot drift.

Every key of every section: its name, type and default as the loader reads them, and the comments
written beside the field in config.py (the lines directly above it and the one after it on its
line; a comment above consecutive fields, with no blank line or comment between them and none of
their own, is theirs too), then the environment variables the process reads. Regenerate with

    python3 -m tf_biggan.config_doc docs/configuration.md

(no argument: print to stdout); tests/test_configuration_doc.py fails when the file is stale.
Imports no TensorFlow, like config.py.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import sys
import textwrap
import tokenize
import typing
from typing import Dict, List, Tuple

from tf_biggan import config
from tf_biggan.host import malloc

REGENERATE = "python3 -m tf_biggan.config_doc docs/configuration.md"

# The environment variables tf_biggan reads. Only what must act before Python starts is one of
# ours (the allocator is chosen by re-executing the interpreter); everything else is a flag or a
# hparam. (name, who reads it, what it does.)
ENVIRONMENT = [
    (malloc.ENV, "`tf-biggan` / `python3 -m tf_biggan.main`, before anything else",
     "The CLI's malloc: `system` (default: glibc, the leanest resident set), `tcmalloc`, `mimalloc`, "
     "`jemalloc`, `auto` (tcmalloc, else mimalloc, else glibc) or a library's path. The CLI re-executes "
     "itself once with the library in `LD_PRELOAD` (an allocator cannot be swapped after the first "
     "malloc); a caching allocator is faster per step and holds more memory (docs/performance.md). "
     "From Python, preload one yourself: "
     "`LD_PRELOAD=$(python3 -m tf_biggan.host.malloc tcmalloc) python3 ...`."),
    (malloc.REEXEC_MARKER, "the CLI, internally",
     "Set by the CLI on the process it re-executes, so that it does not re-execute again. Not a setting."),
    ("LD_PRELOAD", "the CLI", f"A malloc library already named there wins over `{malloc.ENV}`; otherwise the CLI "
     "puts the chosen library first in it when it re-executes."),
    ("TF_CONFIG", "multi-worker training, `--mode=synthesize`",
     "TensorFlow's cluster description (MultiWorkerMirroredStrategy); `--mode=synthesize` takes "
     "`--num_workers` / `--worker_index` from it when the flags are not given."),
    ("TF_CPP_MIN_LOG_LEVEL", "TensorFlow; the CLI", "TensorFlow's C++ log level; the CLI sets 2 (warnings and errors "
     "only) unless you set it."),
    ("TFDS_DATA_DIR", "`data.kind: tfds`", "Where TFDS datasets are prepared, when `data.data_dir` is empty."),
    ("TF_ONEDNN_USE_SYSTEM_ALLOCATOR, MALLOC_ARENA_MAX", "the CLI (`tf_biggan.configure_process`)",
     "The CLI sets the first to 1 and caps glibc's arenas at the CPU count (tf_biggan/host/memory.py); "
     "values you set yourself are kept."),
]


def _comments(cls) -> Dict[str, str]:
    """field name -> its comments in the source of `cls` (module docstring: which comments)."""
    source = textwrap.dedent(inspect.getsource(cls))
    lines = source.splitlines()
    inline: Dict[int, str] = {}  # 1-based line -> trailing comment text
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and lines[tok.start[0] - 1][:tok.start[1]].strip():
            inline[tok.start[0]] = tok.string.lstrip("#").strip()
    body = ast.parse(source).body[0].body
    fields = [n for n in body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    result: Dict[str, str] = {}
    group, previous_end = "", -1  # the comment above a run of adjacent fields without their own
    for node in fields:
        above: List[str] = []
        i = node.lineno - 2  # 0-based index of the line above the field
        while i >= 0 and lines[i].strip().startswith("#"):
            above.insert(0, lines[i].strip().lstrip("#").strip())
            i -= 1
        own = " ".join(inline.get(n, "") for n in range(node.lineno, node.end_lineno + 1)).strip()
        if above:
            group = " ".join(above)
        elif own or node.lineno != previous_end + 1:
            group = ""
        result[node.target.id] = " ".join(x for x in (group, own) if x)
        previous_end = node.end_lineno
    return result


def _yaml_value(value) -> str:
    """A default as it would be written in a hparams YAML file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _type(tp) -> str:
    """A declared type as a YAML writer sees it: 'a' | 'b', int or null, list of float."""
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return " | ".join(f'"{a}"' for a in typing.get_args(tp))
    if origin is typing.Union:
        return " or ".join("null" if a is type(None) else _type(a) for a in typing.get_args(tp))
    if origin in (tuple, typing.Tuple):
        return f"list of {_type(typing.get_args(tp)[0])}"
    return tp.__name__


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section_rows(section: str) -> Tuple[type, List[Tuple[str, str, str, str]]]:
    """(dataclass, [(key, type, default, description)]) of one hparams section."""
    cls = typing.get_type_hints(config.HParams)[section]
    hints = typing.get_type_hints(cls)
    comments = _comments(cls)
    rows = [(f"{section}.{f.name}", _type(hints[f.name]), _yaml_value(_default(f)),
             comments.get(f.name, "")) for f in dataclasses.fields(cls)]
    return cls, rows


def configuration_markdown() -> str:
    """The text of docs/configuration.md."""
    out = [
        "# Configuration reference",
        "",
        f"<!-- Generated from tf_biggan/config.py by `{REGENERATE}`; do not edit by hand. -->",
        "",
        "A configuration is a YAML file (`hparams/*.yaml`, or a run's own `hparams.yaml`) with the sections "
        "below; every key is optional and takes the default shown. An unknown key, a wrong type or a value "
        "out of range is an error naming the file and the key. Any key can be overridden on the command "
        "line: `--hparams_overrides model.ch=64,train.disc_steps=1` (lists in brackets: "
        "`eval.truncations=[0.5,1.0]`). A run writes its resolved configuration to `MODEL_DIR/hparams.yaml`.",
        "",
        "Command-line flags (what to run, where: `--mode`, `--model_dir`, ...) are listed by "
        "`tf-biggan --helpfull`; the [environment variables](#environment-variables) are at the end.",
        "",
        "Sections: " + ", ".join(f"[`{s}`](#{s})" for s in config.SECTIONS) + ".",
    ]
    for section in config.SECTIONS:
        cls, rows = section_rows(section)
        doc = " ".join(inspect.getdoc(cls).split())
        out += ["", f"## {section}", "", f"`{cls.__name__}`: {doc}", "",
                "| key | type | default | meaning and source |", "| --- | --- | --- | --- |"]
        out += [f"| `{k}` | {_cell(t)} | `{_cell(d)}` | {_cell(c)} |" for k, t, d, c in rows]
    out += ["", "## Environment variables", "",
            "Everything that changes numbers or resources is a hparam above or a flag. The process reads "
            "these variables:", "", "| variable | read by | what it does |", "| --- | --- | --- |"]
    out += [f"| `{n}` | {_cell(who)} | {_cell(what)} |" for n, who, what in ENVIRONMENT]
    return "\n".join(out) + "\n"


def main(argv: List[str]) -> int:
    """`python3 -m tf_biggan.config_doc [PATH]`: writes PATH (atomically), or prints the text."""
    text = configuration_markdown()
    if not argv:
        sys.stdout.write(text)
        return 0
    from tf_biggan.atomic import write_text

    write_text(argv[0], text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
