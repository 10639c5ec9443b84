"""Accelerator detection, mixed precision and tf.distribute strategies.

A GPU is used when present and never required. Several local GPUs are
driven by ``MirroredStrategy``; several machines by
``MultiWorkerMirroredStrategy`` configured from ``TF_CONFIG``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import keras
import tensorflow as tf

from common.errors import UserError

STRATEGIES = ("auto", "mirrored", "multiworker", "none")


@dataclass(frozen=True)
class DeviceSetup:
    """What the run trains on, recorded in ``config.json``."""

    strategy: tf.distribute.Strategy
    strategy_name: str
    gpus: list[str]
    mixed_precision: bool
    is_chief: bool

    def describe(self) -> dict:
        return {"strategy": self.strategy_name, "replicas": self.strategy.num_replicas_in_sync,
                "gpus": self.gpus, "mixed_precision": self.mixed_precision,
                "is_chief": self.is_chief}


def _gpu_supports_fp16(gpu: tf.config.PhysicalDevice) -> bool:
    details = tf.config.experimental.get_device_details(gpu)
    capability = details.get("compute_capability") or (0, 0)
    return tuple(capability) >= (7, 0)  # tensor cores: Volta and newer


def _is_chief(resolver) -> bool:
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and
                                    "chief" not in resolver.cluster_spec().as_dict())


def make_strategy(name: str) -> tuple[tf.distribute.Strategy, str]:
    """Build the tf.distribute strategy for ``name`` (one of :data:`STRATEGIES`)."""
    if name not in STRATEGIES:
        raise UserError(f"--strategy {name}: expected one of {', '.join(STRATEGIES)}")
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        name = "mirrored" if len(gpus) > 1 else "none"
    if name == "none":
        return tf.distribute.get_strategy(), "none"
    if name == "mirrored":
        # no GPU: mirror over the logical CPU devices (one unless configured otherwise)
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices=devices), "mirrored"
    if "TF_CONFIG" not in os.environ:
        raise UserError("--strategy multiworker needs the TF_CONFIG environment variable "
                        "(cluster and task) on every worker")
    try:
        json.loads(os.environ["TF_CONFIG"])
    except json.JSONDecodeError as exc:
        raise UserError(f"TF_CONFIG is not valid JSON ({exc.msg})") from None
    return tf.distribute.MultiWorkerMirroredStrategy(), "multiworker"


def setup_device(strategy: str = "auto", mixed_precision: bool | None = None) -> DeviceSetup:
    """Choose the strategy and the Keras dtype policy for this machine.

    Mixed precision (float16 compute, float32 variables) is switched on by
    default only on GPUs with tensor cores; it is slower than float32 on CPUs.
    """
    physical_gpus = tf.config.list_physical_devices("GPU")
    for gpu in physical_gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised: growth can only be set before first use
    if mixed_precision is None:
        mixed_precision = bool(physical_gpus) and all(_gpu_supports_fp16(g) for g in physical_gpus)
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed_precision else "float32")
    strat, strat_name = make_strategy(strategy)
    resolver = getattr(strat, "cluster_resolver", None)
    return DeviceSetup(strategy=strat, strategy_name=strat_name,
                       gpus=[g.name for g in physical_gpus], mixed_precision=mixed_precision,
                       is_chief=_is_chief(resolver) if strat_name == "multiworker" else True)
