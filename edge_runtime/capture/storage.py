"""Where one run's pictures go, and within which limits: the data root, or folders given by name.

``edge-capture`` without ``--out``, and ``edge-classify``'s ``--save-uncertain``,
``--capture-to`` without a folder, ``--shadow``'s disagreements and ``--monitor`` write under
the device's one data root (:mod:`edge_runtime.capture.data_root`). There the limits hold for
the root as a whole: one :class:`~edge_runtime.capture.writer.SpaceBudget` whose ``--max-mb``
bounds everything the root holds (captures, uncertain frames, shadow disagreements, monitoring
records, whoever wrote them), the disk's reserve, and one per-minute limit for the frames saved
without anyone asking (uncertain ones and shadow disagreements together). A folder given by
name (``--out DIR``, ``--save-uncertain DIR``, ``--capture-to DIR``) keeps the limits it always
had: ``--max-mb`` bounds what this run writes into it.
"""

from __future__ import annotations

import os
from pathlib import Path

from edge_runtime.capture import data_root
from edge_runtime.capture.writer import MIN_FREE_MB, PerMinute, PictureWriter, SpaceBudget

MAX_PER_MINUTE = 30
"""``--max-per-minute``'s default: frames saved without anyone asking, in any minute."""


class Storage:
    """The data root of one run and its limits (see the module docstring).

    Args:
        root: the data root (:func:`~edge_runtime.capture.data_root.default_data_root`).
        max_mb: ``--max-mb``: the root's whole size, and what a run writes into a folder
            given by name (None: no limit but the disk's).
        min_free_mb: the disk's reserve.
        max_per_minute: the automatic writers' shared per-minute limit.
    """

    def __init__(self, root: str | os.PathLike, max_mb: float | None = None,
                 min_free_mb: float = MIN_FREE_MB, max_per_minute: int = MAX_PER_MINUTE) -> None:
        self.root = Path(root)
        self.max_mb = max_mb
        self.min_free_mb = min_free_mb
        self.rate = PerMinute(max_per_minute)
        """The per-minute limit of uncertain frames and shadow disagreements together."""
        self._budget: SpaceBudget | None = None

    @property
    def budget(self) -> SpaceBudget:
        """The root's budget (the root created on first use).

        Raises:
            CaptureError: the root cannot be created.
        """
        if self._budget is None:
            self._budget = SpaceBudget(self.root, self.max_mb, self.min_free_mb, whole=True)
        return self._budget

    def writer(self, kind: str, folder: str | os.PathLike | None = None, prefix: str = "capture",
               **fields) -> PictureWriter:
        """A writer into the root's ``kind`` folder (one of
        :data:`~edge_runtime.capture.data_root.PICTURE_FOLDERS`), or into ``folder`` given by
        name with a budget of its own; ``fields``: :class:`PictureWriter`'s ``source`` and
        ``model_version``.

        Raises:
            CaptureError: the folder cannot be created.
        """
        if folder is not None:
            return PictureWriter(folder, self.max_mb, self.min_free_mb, prefix, **fields)
        return PictureWriter(data_root.index_path(self.root, kind).parent, prefix=prefix,
                             budget=self.budget, base=self.root, **fields)
