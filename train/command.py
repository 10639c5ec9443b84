"""What every workstation command does around its work: quiet TensorFlow, errors, Ctrl-C."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from train.errors import UserError


def import_tensorflow_quietly(prog: str) -> bool:
    """Import TensorFlow without its start-up log (which ignores TF_CPP_MIN_LOG_LEVEL)."""
    from edge_runtime.quiet import quiet_output

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with quiet_output():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # CUDA probing logs here, once
            # TensorFlow's Python warnings (tf.function retracing advice and the like) speak
            # to TensorFlow developers, not to users of these commands; errors still show.
            tf.get_logger().setLevel("ERROR")
    except ImportError as exc:
        print(f"{prog}: error: TensorFlow is not installed ({exc}); "
              "install the workstation extra: pip install '.[train]'", file=sys.stderr)
        return False
    return True


def run_command(prog: str, work: Callable[[], int], interrupted: str) -> int:
    """Run a command's ``work`` and return its exit code.

    A :class:`UserError` becomes one line on stderr and exit code 2; Ctrl-C
    prints ``interrupted`` (what was kept, how to go on) and exits 130.
    """
    if not import_tensorflow_quietly(prog):
        return 2
    try:
        return work()
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; {interrupted}", file=sys.stderr)
        return 130
