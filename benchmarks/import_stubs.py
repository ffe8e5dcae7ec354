"""Stand-ins for modules a reference implementation imports but the benchmark's path through it never uses.

check_hub_import.py runs the references' converters in a python without TensorFlow, and
bench_memory_speed.py runs BigGAN-PyTorch's training step without its dataset and image-saving
packages: both import modules whose names must resolve but whose contents are not called.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from typing import Iterable


def module(name: str, **attrs) -> types.ModuleType:
    """A module named `name` holding just `attrs` (put in sys.modules by the caller)."""
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


class Anything:
    """Any attribute, any call: what a stubbed package hands out (the code path never uses its result)."""

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return self

    def __getattr__(self, name):
        return Anything()


class _Stub(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, packages: Iterable[str]):
        self.packages = tuple(packages)

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.packages:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Stub(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def stub_packages(packages: Iterable[str]) -> None:
    """Every later import of `packages` (and their submodules) yields a stub whose every attribute is
    `Anything`; installed first on sys.meta_path, so an installed copy is not imported either."""
    sys.meta_path.insert(0, _StubFinder(packages))
