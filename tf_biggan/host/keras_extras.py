"""Keras without its optional integrations: start-up time and resident memory of every CLI process.

Importing Keras 3 (which `import tensorflow` already does, for tf.keras) imports every optional
library it can find, for features tf_biggan never calls: scikit-learn and SciPy's stats for its
scikit-learn wrappers, matplotlib.pyplot for its image-gallery plots, IPython (with jedi and
prompt_toolkit) for its notebook check in the saving code. Each import sits in Keras behind
`try: ... except ImportError`, so Keras works without them. Measured on a 2-core Intel Xeon
(`import tf_biggan.training.trainer`): 5.25 -> 3.05 s and 681 -> 576 MB resident (-1,200 modules).

`install()` adds an import finder that answers ImportError for those top-level packages when, and
only when, the import comes from a Keras module. The CLI installs it before TensorFlow is imported
(`tf_biggan.configure_process`); importing tf_biggan as a library does not, so a notebook's Keras
keeps its integrations unless it calls `configure_process()` itself. tf_biggan's own imports of
scikit-learn (the embedded digits) and matplotlib (plots) and any import by the user's code load them
as usual.
"""

from __future__ import annotations

import sys

# Top-level packages Keras imports only for optional features (keras/src/wrappers, visualization,
# saving/file_editor.py).
OPTIONAL = frozenset({"sklearn", "matplotlib", "IPython"})


def _importer_module(frame) -> str:
    """__name__ of the first frame outside the import machinery."""
    while frame is not None and frame.f_code.co_filename.startswith(("<frozen importlib", "<frozen zipimport")):
        frame = frame.f_back
    return "" if frame is None else frame.f_globals.get("__name__", "")


class _KerasOptionalImports:
    """A meta-path finder: ImportError for OPTIONAL packages requested by a Keras module; None (let
    the other finders look) for everything else."""

    def find_spec(self, name, path=None, target=None):
        if path is None and name in OPTIONAL and _importer_module(sys._getframe(1)).split(".")[0] == "keras":
            raise ModuleNotFoundError(f"{name} withheld from Keras by tf_biggan (keras_extras.py)", name=name)
        return None


def install() -> None:
    """Adds the finder once (idempotent)."""
    if not any(isinstance(f, _KerasOptionalImports) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasOptionalImports())
