"""Accelerator detection, mixed precision and tf.distribute strategies.

A GPU is used when present and never required. Several local GPUs are
driven by ``MirroredStrategy``; several machines by
``MultiWorkerMirroredStrategy`` configured from ``TF_CONFIG``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import keras
import tensorflow as tf

from common.errors import UserError
from train import nvidia

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "mirrored", "multiworker", "none")


@dataclass(frozen=True)
class DeviceSetup:
    """What the run trains on, recorded in ``config.json``."""

    strategy: tf.distribute.Strategy
    strategy_name: str
    gpus: list[str]
    mixed_precision: bool
    task: ClusterTask | None = None
    """This worker's task under ``multiworker``; None when this process is the whole run."""
    gpu_names: tuple[str, ...] = ()
    """What each of :attr:`gpus` is, as a person names it: "GPU 0: NVIDIA A100-SXM4-80GB"."""

    def training_on(self) -> str:
        """The run's first line: "training on GPU 0: NVIDIA …, mixed precision", "training on
        the CPU (2 cores)"."""
        if len(self.gpu_names) == 1:
            where = self.gpu_names[0]
        elif self.gpu_names:
            where = f"{len(self.gpu_names)} GPUs ({'; '.join(self.gpu_names)})"
        else:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else os.cpu_count()
            where = f"the CPU ({cores} core{'s' if cores != 1 else ''})"
        return f"training on {where}{', mixed precision' if self.mixed_precision else ''}"

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run directory."""
        return self.task is None or self.task.is_chief

    def same_on_all_workers(self, digest: int) -> bool:
        """Whether every worker of a multi-worker run holds the same ``digest`` (a collective
        call: every worker must make it). Always True for a single process."""
        if self.task is None:
            return True
        # the sum and the sum of squares of 24-bit values: exact in float64, and both equal
        # replicas × own value on every worker only when all values are the same
        mine = float(digest % (1 << 24))  # 24 bits: the sum of squares stays below 2**53
        total = self._sum_over_replicas([mine, mine * mine])
        replicas = self.strategy.num_replicas_in_sync
        return total[0] == replicas * mine and total[1] == replicas * mine * mine

    def wait_for_all_workers(self) -> None:
        """Return when every worker has called this (a barrier; no-op for one process)."""
        if self.task is not None:
            self._sum_over_replicas([1.0])

    def _sum_over_replicas(self, values: list[float]) -> list[float]:
        per_replica = self.strategy.run(lambda: tf.constant(values, tf.float64))
        return self.strategy.reduce("SUM", per_replica, axis=None).numpy().tolist()

    def describe(self) -> dict:
        return {"strategy": self.strategy_name, "replicas": self.strategy.num_replicas_in_sync,
                "gpus": self.gpus, "mixed_precision": self.mixed_precision,
                **({"workers": self.task.num_workers} if self.task else {})}


def _gpu_supports_fp16(gpu: tf.config.PhysicalDevice) -> bool:
    details = tf.config.experimental.get_device_details(gpu)
    capability = details.get("compute_capability") or (0, 0)
    return tuple(capability) >= (7, 0)  # tensor cores: Volta and newer


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in a multi-worker cluster, read from ``TF_CONFIG``."""

    task_type: str
    index: int
    num_workers: int
    has_chief_job: bool

    @property
    def is_chief(self) -> bool:
        """The chief writes the run directory: the ``chief`` task or, in a cluster without
        one, ``worker`` 0 (TensorFlow's own rule)."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0
                                             and not self.has_chief_job)

    @property
    def name(self) -> str:
        return f"{self.task_type}{self.index}"


_MULTIWORKER_JOBS = ("chief", "worker")


def read_tf_config(environ=os.environ) -> ClusterTask:
    """Validate ``TF_CONFIG`` for ``--strategy multiworker`` and say which task this is.

    Raises:
        UserError: one line naming what is missing or wrong.
    """
    if "TF_CONFIG" not in environ:
        raise UserError("--strategy multiworker needs the TF_CONFIG environment variable "
                        "(cluster and task) on every worker")
    try:
        tf_config = json.loads(environ["TF_CONFIG"])
    except json.JSONDecodeError as exc:
        raise UserError(f"TF_CONFIG is not valid JSON ({exc.msg})") from None
    example = ('e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not isinstance(tf_config, dict):
        raise UserError(f"TF_CONFIG must be a JSON object with cluster and task ({example})")
    cluster, task = tf_config.get("cluster"), tf_config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise UserError(f"TF_CONFIG has no cluster ({example})")
    for job, addresses in cluster.items():
        if job not in _MULTIWORKER_JOBS:
            raise UserError(f"TF_CONFIG cluster job {job!r}: --strategy multiworker uses "
                            "only 'worker' (and optionally one 'chief')")
        if (not isinstance(addresses, list) or not addresses
                or not all(isinstance(a, str) and _is_host_port(a) for a in addresses)):
            raise UserError(f"TF_CONFIG cluster {job!r} must be a non-empty list of "
                            f"'host:port' strings, got {json.dumps(addresses)}")
    if len(cluster.get("chief", [])) > 1:
        raise UserError("TF_CONFIG cluster 'chief' must list exactly one address")
    if not isinstance(task, dict):
        raise UserError(f"TF_CONFIG has no task ({example})")
    task_type, index = task.get("type"), task.get("index", 0)
    if task_type not in cluster:
        raise UserError(f"TF_CONFIG task type {task_type!r} is not a job of the cluster "
                        f"({', '.join(cluster)})")
    if not isinstance(index, int) or isinstance(index, bool) \
            or not 0 <= index < len(cluster[task_type]):
        raise UserError(f"TF_CONFIG task index {index!r}: expected 0 to "
                        f"{len(cluster[task_type]) - 1} for the {len(cluster[task_type])} "
                        f"{task_type!r} address(es)")
    return ClusterTask(task_type, index, sum(len(a) for a in cluster.values()),
                       has_chief_job="chief" in cluster)


def _is_host_port(address: str) -> bool:
    host, sep, port = address.rpartition(":")
    return bool(host) and bool(sep) and port.isdigit() and 0 < int(port) < 65536


def cluster_task(strategy: str) -> ClusterTask | None:
    """This process's task when ``strategy`` is multiworker (``TF_CONFIG`` validated), else None."""
    return read_tf_config() if strategy == "multiworker" else None


class KerasMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``MultiWorkerMirroredStrategy`` with the two reductions Keras 3's ``fit()`` asks of it.

    With more than one worker, Keras 3 (3.15, TensorFlow 2.21) stops in ``fit()`` with
    ``ValueError: Attempt to convert a value (PerReplica...)`` (keras-team/keras#20585):
    before the first step it reduces a whole ``(images, labels)`` batch, a nest, which
    ``Strategy.reduce`` does not take ("TODO: support value being a nest" in TensorFlow);
    and every step it averages the replicas' scalar loss and metrics with ``axis=0``, which
    a scalar has not. Here a nest is reduced leaf by leaf and a scalar across replicas
    (``axis=None``): every worker then sees the same, cluster-wide, loss and metrics, so
    their callbacks (checkpoints, early stopping) take the same decisions.
    """

    def reduce(self, reduce_op, value, axis=None):
        if tf.nest.is_nested(value):
            return tf.nest.map_structure(lambda v: self.reduce(reduce_op, v, axis), value)
        if axis is not None and all(t.shape.rank == 0
                                    for t in self.experimental_local_results(value)):
            axis = None
        return super().reduce(reduce_op, value, axis=axis)


def _multiworker_strategy() -> tf.distribute.Strategy:
    read_tf_config()
    try:
        return KerasMultiWorkerMirroredStrategy()
    except RuntimeError as exc:
        if "program startup" not in str(exc):
            raise
        # collective ops are configured once, before TensorFlow runs its first op
        raise UserError("--strategy multiworker must be set up before TensorFlow runs anything "
                        "in this process: call train() first thing in a fresh process "
                        "(edge-train does)") from None


def make_strategy(name: str) -> tuple[tf.distribute.Strategy, str]:
    """Build the tf.distribute strategy for ``name`` (one of :data:`STRATEGIES`)."""
    if name not in STRATEGIES:
        raise UserError(f"--strategy {name}: expected one of {', '.join(STRATEGIES)}")
    if name == "multiworker":
        return _multiworker_strategy(), "multiworker"
    # listing logical devices initialises TensorFlow's runtime, after which collective ops
    # (multiworker) can no longer be configured: only the other strategies may do it
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "none"
    if name == "none":
        return tf.distribute.get_strategy(), "none"
    if name == "mirrored":
        # no GPU: mirror over the logical CPU devices (one unless configured otherwise)
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices), "mirrored"


def setup_device(strategy: str = "auto", mixed_precision: bool | None = None) -> DeviceSetup:
    """Choose the strategy and the Keras dtype policy for this machine.

    Mixed precision (float16 compute, float32 variables) is switched on by
    default only on GPUs with tensor cores; it is slower than float32 on CPUs.
    With ``multiworker`` this must run before TensorFlow runs any op in the process
    (listing physical devices and setting the Keras policy are fine).
    """
    physical_gpus = tf.config.list_physical_devices("GPU")
    if not physical_gpus:
        _warn_if_gpu_unseen()
    for gpu in physical_gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised: growth can only be set before first use
    if mixed_precision is None:
        mixed_precision = bool(physical_gpus) and all(_gpu_supports_fp16(g) for g in physical_gpus)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    strat, strat_name = make_strategy(strategy)
    return DeviceSetup(strategy=strat, strategy_name=strat_name,
                       gpus=[g.name for g in physical_gpus], mixed_precision=mixed_precision,
                       task=cluster_task(strat_name),
                       gpu_names=tuple(_gpu_name(g) for g in physical_gpus))


def _gpu_name(gpu: tf.config.PhysicalDevice) -> str:
    """'GPU 0: NVIDIA A100-SXM4-80GB' (the model from TensorFlow's device details)."""
    model = tf.config.experimental.get_device_details(gpu).get("device_name")
    index = gpu.name.rsplit(":", 1)[-1]
    return f"GPU {index}: {model}" if model else f"GPU {index}"


def _warn_if_gpu_unseen() -> None:
    """One warning when the machine has an NVIDIA GPU that TensorFlow cannot use (unless
    ``CUDA_VISIBLE_DEVICES`` hides it on purpose): the run goes on, on the CPU."""
    gpus = [] if nvidia.gpus_hidden() else nvidia.nvidia_gpus()
    if gpus:
        log.warning(nvidia.unseen_gpu_hint(gpus, tf.__version__, dict(tf.sysconfig.get_build_info()),
                                           nvidia.cuda_libraries_installed()))
