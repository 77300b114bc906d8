"""lava-dl, imported with its import-time prints sent to stderr.

lava-dl 0.6.0 prints a three-line warning on *stdout* whenever the optional Prophesee toolbox is
absent (``lava/lib/dl/slayer/object_detection/dataset/prophesee_automotive.py``, a bare ``print``
that no logging or warnings setting reaches). Stdout belongs to the command's output (``--json``
prints one JSON document there), so the first import of lava-dl goes through :func:`import_slayer`,
which sends those lines to stderr; later imports find the module loaded and print nothing.
Imported lazily: ``respike_nm`` itself never needs Lava.
"""

from __future__ import annotations

import contextlib
import sys


def import_slayer():
    """``lava.lib.dl.slayer``, its import-time output on stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        from lava.lib.dl import slayer
    return slayer
