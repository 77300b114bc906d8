"""The project's error classes: what the library raises on purpose, each naming the file, option or
value at fault.

:class:`RespikeError` is the base of every such error: the command line reports it as one line and
exit code 2, and treats anything else (a ``ValueError`` from deep inside numpy or torch, say) as an
internal error with its place in the code (:mod:`respike_nm.cli.main`). :class:`UsageError` is a
value the user gave (an option, a config field, an argument, an environment variable) that the
library refuses; the file and record errors of each room derive from :class:`RespikeError` too.
"""

from __future__ import annotations


class RespikeError(Exception):
    """An error on the user's input that the library names (file, option or value, and the problem)."""


class UsageError(RespikeError, ValueError):
    """An option, config field, argument or environment variable the library refuses, named."""
