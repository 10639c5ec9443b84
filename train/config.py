"""The training configuration: every setting a run uses, saved as ``config.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from common.errors import UserError
from train import backbones


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one ``edge-train`` run (the flags of the command line)."""

    data: str
    """Image folder, ``demo`` (built-in offline dataset) or ``cats_vs_dogs`` (downloaded)."""
    out: str
    """Run directory to create (or resume with ``resume=True``)."""
    backbone: str = backbones.DEFAULT_BACKBONE
    """``mobilenet_v2``, ``mobilenet_v3_small`` or ``mobilenet_v3_large`` (``train.backbones``);
    a ``config.json`` without it is a ``mobilenet_v2`` run."""
    img_size: int = 160
    """Square input side in pixels; MobileNetV2's ImageNet weights exist for 96, 128, 160, 192,
    224, MobileNetV3's for any side."""
    alpha: float = 1.0
    """Width multiplier; ImageNet weights exist for 0.35, 0.5, 0.75, 1.0, 1.3, 1.4 (MobileNetV2)
    and 0.75, 1.0 (MobileNetV3)."""
    weights: str = "imagenet"
    """``imagenet`` (downloaded by Keras), ``none`` (random init) or a backbone weights file."""
    epochs: int = 10
    """Phase 1 epochs: the new head on a frozen backbone."""
    fine_tune_epochs: int = 10
    """Phase 2 epochs, counted on from phase 1; 0 skips fine-tuning."""
    fine_tune_at: int | None = None
    """Backbone layers from this index on are unfrozen in phase 2. None: the backbone's default
    (``BackboneSpec.fine_tune_at``: 100 for MobileNetV2), filled in at construction, so
    ``config.json`` records the number used. ``dataclasses.replace`` with another backbone keeps
    the number: pass ``fine_tune_at=None`` with it for the new backbone's default."""
    batch_size: int = 32
    """Global batch size (split across replicas under a distribution strategy)."""
    lr: float = 1e-4
    """Phase 1 learning rate (Adam); phase 2 uses lr / 10."""
    val_split: float = 0.2
    """Share of each class held out for validation (class-folder layout)."""
    test_split: float = 0.1
    """Share of each class held out for the final test (class-folder layout)."""
    seed: int = 83
    """Seed of the split, the shuffling and the weight initialisation."""
    dropout: float = 0.2
    """Dropout rate before the dense head."""
    patience: int = 5
    """Early stopping: epochs without a better val_accuracy before a phase stops."""
    augment: bool = True
    """Random flip, rotation and zoom on training images."""
    bn_momentum: float | None = None
    """BatchNorm momentum; None means 0.999 (Keras) with pretrained weights, 0.9 from scratch."""
    mixed_precision: bool | None = None
    """float16 compute; None enables it on GPUs that support it (compute capability ≥ 7.0)."""
    strategy: str = "auto"
    """``auto``, ``mirrored``, ``multiworker`` or ``none`` (tf.distribute)."""
    cache: str = "memory"
    """tf.data cache: ``memory``, ``none``, or a file path prefix for datasets larger than RAM."""
    deterministic: bool = False
    """Deterministic ops (``tf.config.experimental.enable_op_determinism``): the same seed gives the
    same model on the same machine and library versions. Costs speed on a GPU."""
    resume: bool = False
    """Continue an interrupted run in ``out`` from its last checkpoint."""
    feature_cache: bool = True
    """With pretrained weights, phase 1 runs the frozen backbone over each image once, caches the
    pooled features in the run directory and trains the head on them (:mod:`train.features`);
    False runs phase 1 end to end, the backbone over every image in every epoch."""
    feature_views: int = 1
    """Cached views of each training image: 1 (or 0) the image alone, K the image and K - 1
    augmented copies (with ``augment``), one picked at random per epoch."""
    init_from: str | None = None
    """A finished run to start from (:mod:`train.init_from`): its network and head, the rows of
    the classes both know kept, new classes appended; None: a fresh start."""
    allow_dropped_classes: bool = False
    """With ``init_from``: a class of the parent missing from ``data`` is dropped from the head
    instead of refused."""

    def __post_init__(self) -> None:
        if self.fine_tune_at is None and self.backbone in backbones.SPECS:
            object.__setattr__(self, "fine_tune_at", backbones.SPECS[self.backbone].fine_tune_at)

    def validate(self) -> None:
        """Reject impossible settings before any slow work starts.

        Raises:
            UserError: naming the flag, its value and what it must be.
        """
        layers = backbones.spec(self.backbone).layers
        checks = [
            (self.img_size >= 32, f"--img-size {self.img_size}: must be at least 32"),
            (self.alpha > 0, f"--alpha {self.alpha}: must be positive"),
            (self.epochs >= 1, f"--epochs {self.epochs}: must be at least 1"),
            (self.fine_tune_epochs >= 0, f"--fine-tune-epochs {self.fine_tune_epochs}: must be ≥ 0"),
            (0 <= self.fine_tune_at < layers,
             f"--fine-tune-at {self.fine_tune_at}: {self.backbone} has {layers} layers; expected "
             f"0 to {layers - 1}"),
            (self.batch_size >= 1, f"--batch-size {self.batch_size}: must be at least 1"),
            (self.lr > 0, f"--lr {self.lr}: must be positive"),
            (0 <= self.dropout < 1, f"--dropout {self.dropout}: must be in [0, 1)"),
            (self.patience >= 1, f"--patience {self.patience}: must be at least 1"),
            (0 <= self.val_split < 1, f"--val-split {self.val_split}: must be in [0, 1)"),
            (0 <= self.test_split < 1, f"--test-split {self.test_split}: must be in [0, 1)"),
            (self.val_split + self.test_split < 1,
             f"--val-split {self.val_split} + --test-split {self.test_split}: must leave "
             "images to train on"),
            (self.feature_views >= 0, f"--feature-views {self.feature_views}: must be ≥ 0"),
            (bool(self.cache.strip()),
             "--cache '': expected memory, none, or a file path prefix"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
        if self.weights == "imagenet":
            problem = backbones.imagenet_problem(self.backbone, self.alpha, self.img_size)
            if problem:
                raise UserError(problem + " (or pass --weights none or a weights FILE)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
