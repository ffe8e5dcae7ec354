"""The CLI's process settings (tf_biggan.configure_process): Keras' optional imports (scikit-learn,
matplotlib, IPython) withheld from Keras only, everyone else imports them as usual; the CLI applies
them before TensorFlow starts; importing tf_biggan as a library changes nothing in the process."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import sys
import tf_biggan
%s
import tensorflow, keras
from keras.src.wrappers import fixes
from keras.src.visualization import plot_image_gallery
keras_saw = [fixes.sklearn is not None, plot_image_gallery.plt is not None]
loaded_by_keras = sorted(m for m in ("sklearn", "matplotlib", "IPython") if m in sys.modules)
from sklearn.datasets import load_digits  # tf_biggan's and a user's own imports work as usual
import matplotlib.pyplot
print(keras_saw, loaded_by_keras, load_digits().data.shape, matplotlib.pyplot.__name__)
"""

# What importing the library (the modules a notebook uses) leaves behind: environment variables and
# import hooks of tf_biggan's (absl's flags module adds a finder of its own).
IMPORT_ONLY = """
import os, sys
env, finders = dict(os.environ), list(sys.meta_path)
import tf_biggan, tf_biggan.config, tf_biggan.main, tf_biggan.models
changed = sorted(k for k in set(os.environ) | set(env) if os.environ.get(k) != env.get(k))
ours = [type(f).__name__ for f in sys.meta_path if f not in finders and type(f).__module__.startswith("tf_biggan")]
print(changed, ours)
"""


def _run(code, **env):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def _clean_env():
    return {k: v for k, v in os.environ.items() if k not in ("TF_ONEDNN_USE_SYSTEM_ALLOCATOR",)}


def test_keras_does_not_import_its_optional_libraries_and_others_still_can():
    assert _run(PROBE % "tf_biggan.configure_process()") == "[False, False] [] (1797, 64) matplotlib.pyplot"


def test_importing_the_package_changes_nothing_in_the_process():
    proc = subprocess.run([sys.executable, "-c", IMPORT_ONLY], capture_output=True, text=True, cwd=ROOT,
                          env=_clean_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[] []"
    # so a notebook's Keras keeps its integrations (IPython is not a requirement: Keras imports it
    # only where it is installed)
    line = _run(PROBE % "")
    assert line.startswith("[True, True] [") and "'matplotlib'" in line and "'sklearn'" in line, line


def test_the_cli_applies_the_settings_before_tensorflow():
    """The console script's entry point (`tf-biggan` = tf_biggan.main:run) on --mode=summary: Keras
    loaded none of its optional libraries, and TF's oneDNN tensors are on the system allocator."""
    code = ("import atexit, os, sys\n"
            "atexit.register(lambda: print(sorted(m for m in ('sklearn', 'matplotlib', 'IPython') if m in sys.modules),"
            " os.environ.get('TF_ONEDNN_USE_SYSTEM_ALLOCATOR'), file=sys.stderr))\n"
            "sys.argv = ['tf-biggan', '--mode=summary']\n"
            "from tf_biggan.main import run\n"
            "run()\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(_clean_env(), TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"g_params": 89955' in proc.stdout.splitlines()[-1]
    assert proc.stderr.strip().splitlines()[-1] == "[] 1"
