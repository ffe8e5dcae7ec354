"""Test setup: 4 logical CPU devices (for MirroredStrategy tests), quiet TF, determinism.

The logical-device split must happen before TensorFlow initialises its devices, hence here.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One intra-op thread per xdist worker (and per CLI subprocess it starts, through the
    # environment): the workers already fill the cores, and two 2-thread pools on 2 cores
    # oversubscribe them.
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
# XLA on the CPU stands in for the TPU's compiler (tests/test_xla.py): what the tests check is that a
# graph compiles and computes the same numbers. LLVM's optimisation of the CPU code changes neither
# and was a third of each compile.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import tf_biggan  # noqa: E402

tf_biggan.configure_process()  # the CLI's process settings, before TF starts (tf_biggan/__init__.py)
import tensorflow as tf  # noqa: E402

NUM_LOGICAL_CPUS = 4

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(NUM_LOGICAL_CPUS)])
except RuntimeError:  # already initialised (e.g. a plugin imported TF first); tests needing 4 will skip
    pass

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    keras.utils.set_random_seed(1234)
    yield


def logical_cpus():
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def mirrored_strategy(num_replicas: int):
    """MirroredStrategy over the first `num_replicas` logical CPUs.

    Reduction through one device rather than collectives: several strategies of different sizes in
    one test process would otherwise clash on collective group keys.
    """
    devices = logical_cpus()
    if len(devices) < num_replicas:
        pytest.skip(f"needs {num_replicas} logical CPU devices (configured in conftest)")
    return tf.distribute.MirroredStrategy(devices[:num_replicas],
                                          cross_device_ops=tf.distribute.ReductionToOneDevice())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """(model_dir, hp) of the one tiny trained run every evaluation / export / synthesis test shares
    (tests/evaluation_run.py): checkpoints at steps STEPS / 2 and STEPS. Tests read it and write
    their outputs elsewhere, or reports that any of them may rewrite."""
    import evaluation_run
    from tf_biggan.runs import saved_hparams

    model_dir = evaluation_run.train(str(tmp_path_factory.mktemp("tiny_run")))
    return model_dir, saved_hparams(model_dir)


@pytest.fixture(scope="session")
def tiny_module(tiny_run, tmp_path_factory):
    """The tiny run exported by `--mode=export` with its defaults (latest checkpoint, the run's
    eval.export_truncations): the one TF-Hub module the export and synthesis tests read."""
    import evaluation_run

    path = str(tmp_path_factory.mktemp("tiny_module") / "hub")
    evaluation_run.run("export", None, tiny_run[0], export_dir=path)
    return path


# Longest work first (xdist hands out work units in collection order): the tiny_run and main_job groups
# (one unit each, minutes long) and the long single tests, so that the last units to be handed out are
# short and both workers finish together. Whole modules move, so module fixtures are still built once.
LONG_MODULES_FIRST = (
    "test_evaluate.py", "test_export.py", "test_synthesize.py", "test_qualitative.py", "test_latents.py",
    "test_warm_start.py",  # group tiny_run
    "test_main_job.py", "test_train.py", "test_cli.py", "test_xla.py", "test_cas_cli.py",
    "test_augment_train.py", "test_ortho_reg.py", "test_models.py", "test_training_step.py",
)


def pytest_collection_modifyitems(session, config, items):
    rank = {name: i for i, name in enumerate(LONG_MODULES_FIRST)}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(item.path.name, len(rank)), order[id(item)]))
