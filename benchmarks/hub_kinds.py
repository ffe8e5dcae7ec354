"""The six official TF-Hub BigGAN modules by name, as check_hub_import.py and bench_hub.py take them.

Standard library only: the drivers that read it import no TensorFlow, and check_hub_import's torch
side (a python without TensorFlow) reads it too. tests/official_hub_layout.py writes the modules.
"""

from __future__ import annotations

from typing import Tuple

KINDS = ("biggan-128/2", "biggan-256/2", "biggan-512/2",
         "biggan-deep-128/1", "biggan-deep-256/1", "biggan-deep-512/1")


def parse_kind(kind: str) -> Tuple[bool, int]:
    """(deep, resolution) of an official name, e.g. 'biggan-deep-256/1' -> (True, 256)."""
    return kind.startswith("biggan-deep"), int(kind.split("-")[-1].split("/")[0])


def slug(kind: str) -> str:
    """The name as a folder name: 'biggan-deep-128/1' -> 'biggan-deep-128_1'."""
    return kind.replace("/", "_")
