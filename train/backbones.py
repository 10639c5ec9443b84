"""The backbones ``edge-train`` can put under the head, as data (no TensorFlow here, so the
command line and ``TrainConfig`` read it before TensorFlow starts).

``train.model`` builds them from Keras applications; everything else (the flag's choices, the
default fine-tune point, which alpha and size have ImageNet weights, the name a person reads)
comes from :data:`SPECS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import UserError


@dataclass(frozen=True)
class BackboneSpec:
    """One Keras application used as a backbone."""

    name: str
    """The ``--backbone`` value, recorded in ``config.json``."""
    title: str
    """What a person reads (export metadata, manifest, reports)."""
    application: str
    """The ``keras.applications`` constructor."""
    imagenet_alphas: tuple[float, ...]
    """Width multipliers Keras has ImageNet weights for."""
    imagenet_sizes: tuple[int, ...] | None
    """Input sides Keras has ImageNet weights for; None: any side (one set of weights, trained
    at 224, that fits every size, as the convolutions do not depend on it)."""
    layers: int
    """Layers of the Keras application without its top (a test holds it to Keras)."""
    fine_tune_at: int
    """Default ``--fine-tune-at``: the backbone layer phase 2 unfreezes from."""
    fine_tune_layer: str
    """The layer at :attr:`fine_tune_at` (a test holds the two together)."""


SPECS: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    # 100 of 154 layers: the Keras transfer-learning tutorial's choice, kept for old runs
    BackboneSpec("mobilenet_v2", "MobileNetV2", "MobileNetV2",
                 imagenet_alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
                 imagenet_sizes=(96, 128, 160, 192, 224), layers=154,
                 fine_tune_at=100, fine_tune_layer="block_11_expand_relu"),
    # the V3s the same way: about the top third of the layers, from the start of a block
    BackboneSpec("mobilenet_v3_small", "MobileNetV3-Small", "MobileNetV3Small",
                 imagenet_alphas=(0.75, 1.0), imagenet_sizes=None, layers=156,
                 fine_tune_at=108, fine_tune_layer="expanded_conv_8_expand"),
    BackboneSpec("mobilenet_v3_large", "MobileNetV3-Large", "MobileNetV3Large",
                 imagenet_alphas=(0.75, 1.0), imagenet_sizes=None, layers=186,
                 fine_tune_at=123, fine_tune_layer="expanded_conv_11_expand"),
)}
BACKBONES = tuple(SPECS)
"""The ``--backbone`` choices; the first is the default."""
DEFAULT_BACKBONE = BACKBONES[0]
"""The backbone of runs whose ``config.json`` predates the choice."""


def spec(backbone: str) -> BackboneSpec:
    """The spec of ``backbone``.

    Raises:
        UserError: an unknown name, with the known ones.
    """
    try:
        return SPECS[backbone]
    except KeyError:
        raise UserError(f"--backbone {backbone}: expected one of {', '.join(BACKBONES)}") from None


def imagenet_problem(backbone: str, alpha: float, img_size: int) -> str | None:
    """Why Keras has no ImageNet weights for this backbone, alpha and size (None: it has)."""
    s = spec(backbone)
    if alpha not in s.imagenet_alphas:
        return (f"--alpha {alpha}: {backbone} has ImageNet weights for alpha "
                f"{', '.join(map(str, s.imagenet_alphas))}")
    if s.imagenet_sizes is not None and img_size not in s.imagenet_sizes:
        return (f"--img-size {img_size}: {backbone} has ImageNet weights for "
                f"{', '.join(map(str, s.imagenet_sizes))} px")
    return None


def describe(backbone: str, alpha: float, img_size: int) -> str:
    """``"MobileNetV3-Small 1.0/160"``: the model as a person names it."""
    return f"{spec(backbone).title} {float(alpha)}/{img_size}"
