"""The modes of the absl app, each a function `run(hp, request)` in the module named for its feature,
`request` the mode's typed request (tf_biggan/requests.py) that main.py builds from the flags.

A table of its own (not in main.py) so that the main job (`job/stages.py`) and tests can run a mode
exactly as `tf-biggan --mode=NAME` does without importing main.py, whose flag definitions must run
once per process (`python -m tf_biggan.main` imports it as `__main__`).
"""

from __future__ import annotations

import importlib
from typing import Callable

# mode -> (module, function); the function takes (hp, request). Each module is named for its feature.
MODE_TABLE = {
    "summary": ("tf_biggan.models.summary", "run_summary"),
    "train": ("tf_biggan.training.trainer", "run_train"),
    "inspect_data": ("tf_biggan.data.inspect", "run_inspect_data"),
    "eval": ("tf_biggan.evaluation.evaluate", "run_eval"),
    "sweep": ("tf_biggan.evaluation.evaluate", "run_sweep"),
    "interpolate": ("tf_biggan.evaluation.qualitative", "run_interpolate"),
    "neighbors": ("tf_biggan.evaluation.qualitative", "run_neighbors"),
    "memorization": ("tf_biggan.evaluation.qualitative", "run_memorization"),
    "export": ("tf_biggan.hub.export", "run_export"),
    "import_hub": ("tf_biggan.hub.importer", "run_import_hub"),
    "synthesize": ("tf_biggan.synthesis.synthesize", "run_synthesize"),
    "cas": ("tf_biggan.cas.train", "run_cas_mode"),
    "cas_sweep": ("tf_biggan.cas.truncation_sweep", "run_cas_sweep_mode"),
    "prepare_data": ("tf_biggan.data.image_folder", "run_prepare_data"),
    "real_stats": ("tf_biggan.evaluation.real_stats", "run_real_stats"),
    "all": ("tf_biggan.job.stages", "run_all"),
}

MODES = tuple(MODE_TABLE)

# mode -> (module, function): checks of the request and hparams a mode needs that import no TensorFlow,
# run by main.py before TF starts (so a user error fails in about a second).
PRECHECK_TABLE = {
    "all": ("tf_biggan.job.stages", "check_all"),
}


def precheck(name: str, hp, request) -> None:
    """Runs `name`'s TF-free checks, if it has any (UserError naming the flag)."""
    if name in PRECHECK_TABLE:
        module_name, function_name = PRECHECK_TABLE[name]
        getattr(importlib.import_module(module_name), function_name)(hp, request)


def mode_function(name: str) -> Callable:
    """The function `tf-biggan --mode=name` runs."""
    module_name, function_name = MODE_TABLE[name]
    return getattr(importlib.import_module(module_name), function_name)
