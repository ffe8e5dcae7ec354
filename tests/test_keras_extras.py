"""tf_biggan/keras_extras.py: Keras' optional imports (scikit-learn, matplotlib, IPython) withheld from
Keras only; everyone else imports them as usual; TF_BIGGAN_KERAS_EXTRAS=1 gives them back to Keras."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = """
import sys
import tf_biggan, tensorflow, keras
from keras.src.wrappers import fixes
from keras.src.visualization import plot_image_gallery
keras_saw = [fixes.sklearn is not None, plot_image_gallery.plt is not None]
loaded_by_keras = sorted(m for m in ("sklearn", "matplotlib", "IPython") if m in sys.modules)
from sklearn.datasets import load_digits  # tf_biggan's and a user's own imports work as usual
import matplotlib.pyplot
print(keras_saw, loaded_by_keras, load_digits().data.shape, matplotlib.pyplot.__name__)
"""


def _probe(**env):
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_keras_does_not_import_its_optional_libraries_and_others_still_can():
    assert _probe() == "[False, False] [] (1797, 64) matplotlib.pyplot"


def test_the_environment_variable_gives_them_back_to_keras():
    line = _probe(TF_BIGGAN_KERAS_EXTRAS="1")
    # IPython is not a requirement: Keras imports it only where it is installed.
    assert line.startswith("[True, True] [") and "'matplotlib'" in line and "'sklearn'" in line, line
