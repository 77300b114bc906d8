"""lava-dl, imported with its import-time prints kept off the command's output.

Importing ``lava.lib.dl`` prints, from code no logging or warnings setting reaches:

- on *stdout*, lava-dl 0.6.0's three-line warning that the optional Prophesee toolbox is absent
  (``lava/lib/dl/slayer/object_detection/dataset/prophesee_automotive.py``, a bare ``print``);
- on stderr, torch's ``No CUDA runtime is found, using CUDA_HOME=...`` (``torch.utils.cpp_extension``,
  which lava-dl's SLAYER imports, prints it when a CUDA toolkit is installed but no GPU answers).

Neither concerns the user of a command, and stdout belongs to the command's output (``--json``
prints one JSON document there). So every import of lava-dl goes through :func:`import_slayer` or
:func:`import_netx`; the first captures both streams and logs what they said on the
``respike_nm.lavadl`` logger at DEBUG level (``respike-nm --debug`` or ``-v`` shows it); later
imports find the module loaded and print nothing. Should the import fail, the captured lines go to
stderr with the error, since they may explain it. Imported lazily: ``respike_nm`` itself never needs
Lava.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import sys

log = logging.getLogger(__name__)


def import_slayer():
    """``lava.lib.dl.slayer``; its import-time output logged at DEBUG level instead of printed."""
    return _quiet_import("lava.lib.dl.slayer")


def import_netx():
    """``lava.lib.dl.netx`` (with its ``hdf5`` loader); import-time output as :func:`import_slayer`."""
    _quiet_import("lava.lib.dl.netx.hdf5")
    return sys.modules["lava.lib.dl.netx"]


def _quiet_import(name: str):
    if name in sys.modules:
        return sys.modules[name]
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            module = importlib.import_module(name)
    except BaseException:
        sys.stderr.write(captured.getvalue())
        raise
    for line in captured.getvalue().splitlines():
        if line.strip():
            log.debug("at import of lava-dl: %s", line.strip())
    return module
