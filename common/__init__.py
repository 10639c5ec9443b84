"""What every command shares: the error hierarchy and exit codes, the command wrapper, argparse
types and help formatting, logging set-up, library versions and reading a run directory.

Nothing here imports TensorFlow at import time (the device installs this package too): the
workstation-only helpers import it inside the functions that need it.
"""
