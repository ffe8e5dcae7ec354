"""docs/configuration.md: generated from config.py's dataclasses (tf_biggan/config_doc.py), current, complete,
and its table of environment variables names every one the package reads."""

import dataclasses
import difflib
import glob
import os
import re
import subprocess
import sys
import typing
from dataclasses import dataclass
from typing import Literal, Optional, Tuple

from tf_biggan import config, config_doc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "configuration.md")


def test_the_committed_doc_is_what_the_command_writes(tmp_path):
    """Through the real command; a stale file fails with the command that regenerates it."""
    out = tmp_path / "configuration.md"
    proc = subprocess.run([sys.executable, "-m", "tf_biggan.config_doc", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(DOC, encoding="utf-8") as f:
        committed = f.read()
    fresh = out.read_text(encoding="utf-8")
    diff = "".join(list(difflib.unified_diff(committed.splitlines(True), fresh.splitlines(True),
                                             "docs/configuration.md", "generated", n=0))[:12])
    assert committed == fresh, (f"docs/configuration.md is stale: regenerate it with "
                                f"`{config_doc.REGENERATE}` and commit it.\n{diff}")


def test_every_key_of_every_section_has_a_row_with_its_default_and_a_description():
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    hp = config.HParams()
    for section in config.SECTIONS:
        assert f"\n## {section}\n" in doc
        for f in dataclasses.fields(getattr(hp, section)):
            row = next((line for line in doc.splitlines() if line.startswith(f"| `{section}.{f.name}` |")), None)
            assert row is not None, f"{section}.{f.name} missing"
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
            assert cells[2] == f"`{config_doc._yaml_value(getattr(getattr(hp, section), f.name))}`", row
            assert cells[3], (f"{section}.{f.name} has no comment in tf_biggan/config.py: write one above the "
                              f"field (what it is, its source in the paper)")


@dataclass
class _Example:
    """A section as config.py writes them."""

    # Block comment,
    # two lines.
    a: int = 1
    b: str = "x"  # b's own
    c: float = 0.5
    # Shared by the two below.
    d: Optional[int] = None
    e: Tuple[float, ...] = (1.0, 2.0)

    f: Literal["p", "q"] = "p"
    g: bool = True  # g: "#" in a comment


def test_comments_are_the_lines_above_a_field_and_its_own_line():
    """Block comments, inline ones, a comment shared by adjacent fields, and the breaks of that sharing
    (a field's own comment, a blank line)."""
    assert config_doc._comments(_Example) == {
        "a": "Block comment, two lines.", "b": "b's own", "c": "", "d": "Shared by the two below.",
        "e": "Shared by the two below.", "f": "", "g": 'g: "#" in a comment'}


def test_types_and_defaults_read_as_yaml():
    hints = typing.get_type_hints(_Example)
    assert [config_doc._type(hints[k]) for k in "adefg"] == ["int", "int or null", "list of float", '"p" | "q"', "bool"]
    assert [config_doc._yaml_value(v) for v in (None, True, (1.0, 0.5), "x", 1e-4, 3)] == [
        "null", "true", "[1.0, 0.5]", '"x"', "0.0001", "3"]


def _environment_variables_read():
    """Every environment variable name the package's source reads or sets."""
    names = set()
    patterns = [r'environ(?:\.get|\.setdefault|\.pop)?[\(\[]\s*"([A-Z_][A-Z0-9_]+)"',
                r'getenv\(\s*"([A-Z_][A-Z0-9_]+)"', r'"([A-Z_][A-Z0-9_]+)"\s+(?:not\s+)?in\s+os\.environ',
                r'"(_?TF_BIGGAN_[A-Z0-9_]+)"']
    for path in glob.glob(os.path.join(ROOT, "tf_biggan", "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            source = f.read()
        for pattern in patterns:
            names.update(re.findall(pattern, source))
    return names


def test_the_environment_table_names_every_variable_the_package_reads():
    read = _environment_variables_read()
    assert {"TF_BIGGAN_MALLOC", "TF_CONFIG"} <= read  # the scan works
    listed = {n.strip() for name, _, _ in config_doc.ENVIRONMENT for n in name.split(",")}
    assert read <= listed, f"read but not in config_doc.ENVIRONMENT: {sorted(read - listed)}"
    # tf_biggan's own: only the malloc choice, which must act before Python starts, and its marker
    assert {n for n in read if "TF_BIGGAN" in n} == {"TF_BIGGAN_MALLOC", "_TF_BIGGAN_REEXEC"}
