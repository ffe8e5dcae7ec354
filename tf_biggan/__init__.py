"""tf_biggan: BigGAN and BigGAN-deep (Brock et al., 2019) in TensorFlow 2 / Keras 3."""

from tf_biggan import host_memory as _host_memory
from tf_biggan import keras_extras as _keras_extras

__version__ = "0.1.0"

_host_memory.configure()  # before TF makes its CPU device: see host_memory.py
_keras_extras.install()  # before TF imports Keras: see keras_extras.py
