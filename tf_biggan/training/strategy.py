"""The tf.distribute strategy a run uses, chosen by its launch (paper Section 3: "trained on 128 to 512
cores of a Google TPU v3 Pod", with G's BatchNorm statistics computed across all devices).

Order of precedence:
  --tpu=NAME            TPUClusterResolver + TPUStrategy (a single host or a pod slice)
  TF_CONFIG set         MultiWorkerMirroredStrategy (several hosts, CPU/GPU workers)
  --cpu_replicas=N > 0  the CPU split into N logical devices + MirroredStrategy, so anyone can run the
                        distributed code path (cross-replica BN, gradient all-reduce) on a laptop
  local GPUs            MirroredStrategy over them (one GPU: OneDeviceStrategy)
  otherwise             the default strategy (one device)

Why a function of the launch (`requests.Launch`: --tpu, --cpu_replicas; TF_CONFIG from the
environment) and not a config key: the same hparams file must train on a TPU pod and on a
laptop; where it runs is a property of the launch, not of the experiment.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Tuple

import tensorflow as tf

from tf_biggan.errors import UserError


def split_cpu(num_replicas: int) -> list:
    """Splits the CPU into `num_replicas` logical devices (names of the first `num_replicas`).

    TensorFlow fixes its logical devices the first time anything lists or uses them, so this must
    run before any TensorFlow work: main() calls it first thing for --cpu_replicas. Listing the
    PHYSICAL devices does not initialise them; listing the logical ones does.
    """
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(num_replicas)])
    except RuntimeError:  # already initialised: fine if there are enough devices (checked below)
        pass
    logical = tf.config.list_logical_devices("CPU")
    if len(logical) < num_replicas:
        raise UserError(
            f"--cpu_replicas={num_replicas}: TensorFlow's devices were already initialised with "
            f"{len(logical)} CPU device(s); split the CPU (tf_biggan.training.strategy.split_cpu) before "
            f"anything runs TensorFlow")
    return [d.name for d in logical[:num_replicas]]


_TF_CONFIG_FORM = ('TF_CONFIG must be JSON like {"cluster": {"worker": [...]}, "task": '
                   '{"type": "worker", "index": i}}')


def tf_config() -> Optional[dict]:
    """The launch's TF_CONFIG (the multi-worker cluster and this task), checked; None when unset.
    The one reader of the variable: the strategy and the synthesis worker split use it."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return None
    try:
        config = json.loads(raw)
    except ValueError:
        raise UserError(f"TF_CONFIG is not valid JSON: {_TF_CONFIG_FORM}") from None
    if not isinstance(config, dict) or not isinstance(config.get("cluster"), dict) or not isinstance(
            config.get("task"), dict):
        raise UserError(f"TF_CONFIG needs both 'cluster' and 'task' entries: {_TF_CONFIG_FORM}")
    return config


def worker_position(mode: str = "synthesize") -> Tuple[int, int]:
    """(this host's index, number of hosts) from TF_CONFIG, (0, 1) without it: the chief (if any)
    is host 0, `worker` tasks follow; other task types (ps, evaluator) are refused, naming `mode`."""
    config = tf_config()
    if config is None:
        return 0, 1
    cluster, task = config["cluster"], config["task"]
    try:
        chiefs, workers = len(cluster.get("chief", [])), len(cluster.get("worker", []))
        kind, task_index = task["type"], int(task.get("index", 0))
    except (KeyError, TypeError, ValueError):
        raise UserError(_TF_CONFIG_FORM) from None
    if kind == "chief":
        return 0, chiefs + workers
    if kind == "worker":
        if not 0 <= task_index < workers:
            raise UserError(f"TF_CONFIG task index {task_index} is outside the {workers} workers of its cluster")
        return chiefs + task_index, chiefs + workers
    raise UserError(f"TF_CONFIG task type {kind!r} does not {mode}; run --mode={mode} on the chief "
                    f"and worker tasks")


def make_strategy(tpu: Optional[str] = None, cpu_replicas: int = 0) -> tf.distribute.Strategy:
    """The strategy for `--tpu` / `TF_CONFIG` / `--cpu_replicas` / local GPUs (module docstring)."""
    if tpu:
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, tf.errors.OpError) as exc:
            raise UserError(f"--tpu={tpu}: cannot reach the TPU ({exc}); check the name/zone/project, "
                            f"or drop --tpu to train on CPU/GPU") from None
        return tf.distribute.TPUStrategy(resolver)
    if tf_config() is not None:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if cpu_replicas < 0:
        raise UserError(f"--cpu_replicas={cpu_replicas}: must be >= 0")
    if cpu_replicas > 0:
        devices = split_cpu(cpu_replicas)
        if cpu_replicas == 1:
            return tf.distribute.OneDeviceStrategy(devices[0])
        # One host: reduce through one device (NCCL/collectives buy nothing between CPU slices).
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([g.name for g in gpus])
    if len(gpus) == 1:
        return tf.distribute.OneDeviceStrategy(gpus[0].name)
    return tf.distribute.get_strategy()


_LAUNCH_STRATEGIES = {}


def launch_strategy(launch) -> tf.distribute.Strategy:
    """The strategy of `launch` (a `requests.Launch`: --tpu, --cpu_replicas) and TF_CONFIG, made once
    per process and launch.

    main() makes it before anything else touches TensorFlow: MultiWorkerMirroredStrategy must
    configure collective ops, and --cpu_replicas split the CPU, before the runtime initialises
    (which any module-level tf.constant in an imported module does)."""
    key = (launch.tpu, int(launch.cpu_replicas), os.environ.get("TF_CONFIG"))
    if not any(key):  # local devices only: nothing to set up before the runtime starts
        return make_strategy(None, 0)
    if key not in _LAUNCH_STRATEGIES:
        _LAUNCH_STRATEGIES[key] = make_strategy(launch.tpu, int(launch.cpu_replicas))
    return _LAUNCH_STRATEGIES[key]


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one worker that writes summaries, reports and the real checkpoints."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type is None or task_type == "chief" or (task_type == "worker" and task_id == 0
                                                         and "chief" not in resolver.cluster_spec().as_dict())


def worker_id(strategy: tf.distribute.Strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and resolver is not None:
        return int(resolver.task_id or 0)
    return 0


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """True when several worker processes train together (MultiWorkerMirroredStrategy over > 1 task)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return False
    spec = resolver.cluster_spec().as_dict()
    return sum(len(spec.get(job, [])) for job in ("chief", "worker")) > 1
