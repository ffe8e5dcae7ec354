"""tf_biggan: BigGAN and BigGAN-deep (Brock et al., 2019) in TensorFlow 2 / Keras 3.

Importing the package, or any of its modules, leaves the process as it was: no environment variable,
allocator setting or import hook. The `tf-biggan` command applies its process settings first thing
(`configure_process`); a script or notebook that wants the same memory footprint and start-up calls
`tf_biggan.configure_process()` itself, before it imports TensorFlow.
"""

__version__ = "0.1.0"


def configure_process() -> None:
    """The CLI's process settings (idempotent; call before TensorFlow is imported):

    - host/memory.py: TF's oneDNN tensors on the system allocator, glibc's mmap threshold at 1 MB
      and at most one glibc arena per CPU, so freed activations go back to the OS (a user's own
      TF_ONEDNN_USE_SYSTEM_ALLOCATOR / MALLOC_ARENA_MAX win);
    - host/keras_extras.py: Keras' imports of scikit-learn, matplotlib and IPython, for features
      tf_biggan never calls, answered with ImportError (imports by anyone else load them as usual).

    The malloc itself (TF_BIGGAN_MALLOC, malloc.py) is chosen before Python starts, by the CLI only.
    """
    from tf_biggan.host import keras_extras, memory as host_memory

    host_memory.configure()  # before TF makes its CPU device
    keras_extras.install()  # before TF imports Keras
