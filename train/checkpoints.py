"""The checkpoint folder of a run in progress, and what ``--resume`` reads from it.

``checkpoints/`` holds the last epoch's full model (with optimizer state), the best epoch's
weights and ``state.json`` (epochs done, phase, best epoch), written after every epoch; a
finished run deletes the folder.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from common.errors import UserError
from train.config import TrainConfig

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.keras"
BEST_WEIGHTS = "best.weights.h5"
STATE_FILE = "state.json"


def prepare_run_dir(config: TrainConfig, chief: bool = True) -> tuple[TrainConfig, dict]:
    """Check ``out`` and, on resume, return the saved config and checkpoint state.

    Only the chief (``chief``) of a multi-worker run writes ``out``, so only it requires a new
    one; the other workers read it only to resume (a folder that every worker sees).
    """
    out = Path(config.out)
    state_path = out / CHECKPOINT_DIR / STATE_FILE
    if config.resume:
        if not state_path.is_file():
            shared = "" if chief else "; every worker must see the run directory to resume"
            raise UserError(f"--resume: {out} has no checkpoint to resume from "
                            f"(expected {state_path}){shared}")
        saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
        return replace(TrainConfig.from_dict(saved), resume=True, out=str(out)), \
            json.loads(state_path.read_text(encoding="utf-8"))
    if chief and out.exists() and any(out.iterdir()):
        hint = " (add --resume to continue it)" if state_path.is_file() else ""
        raise UserError(f"--out {out} already exists and is not empty{hint}; "
                        "choose a new run directory")
    return config, {"epochs_done": 0, "phase": 1, "best_val_accuracy": None, "best_val_loss": None, "best_epoch": None,
                    "fine_tune_start": None}
