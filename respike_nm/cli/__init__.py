"""The ``respike-nm`` command line: one module per command group; :mod:`respike_nm.cli.main` is
the entry point and the one error boundary.

Every command module imports torch, Lava and the library's heavy parts inside its command
function, never at module level: building the parser and refusing a wrong path (:func:`check_paths`)
take a fraction of a second, and only a command that has work to do pays for the imports.
"""

import argparse
import errno
import os
from pathlib import Path

from respike_nm.errors import UsageError

CHECKPOINT = "checkpoint.pt"  # respike_nm.train.run.CHECKPOINT (a test keeps them equal)
MANIFEST = "manifest.json"  # conversion.manifest.MANIFEST_NAME
RUN_DIRS = ("run_dir", "run")  # eval, export, nir, energy, predict RUN_DIR; simulate --run
EXPORT_DIRS = ("export_dir", "export", "lava")  # simulate, map EXPORT_DIR; energy --export; predict --lava
# train, crossval, data cache --data-root (a folder or a cache file); reprice REPORT; price --rates-from
EXISTING = ("data_root", "report", "rates_from")


def at_least(low: int):
    """An argparse type: an integer of at least ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, not {value}")
        return value

    return parse


positive_int = at_least(1)


def check_paths(args: argparse.Namespace) -> None:
    """Refuse the parsed arguments' input paths that cannot be right, before a command imports torch.

    The messages are the library's own for the same mistake (a run folder without its checkpoint, an
    export folder without its manifest, a config that is neither a preset nor a file), so a command
    says the same thing, only at once. Raises ``ValueError`` or ``FileNotFoundError`` (exit 2).
    """
    values = vars(args)
    for dest in RUN_DIRS:
        if values.get(dest) is not None and not (Path(values[dest]) / CHECKPOINT).is_file():
            raise UsageError(f"{Path(values[dest]) / CHECKPOINT}: no such checkpoint")
    for dest in EXPORT_DIRS:
        if values.get(dest) is not None and not (Path(values[dest]) / MANIFEST).is_file():
            raise UsageError(f"{Path(values[dest]) / MANIFEST}: no such manifest (not an export folder?)")
    for dest in EXISTING:
        if values.get(dest) is not None and not Path(values[dest]).exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(values[dest]))
    config = values.get("config")
    if config is not None:
        from respike_nm.config import PRESETS, ConfigError

        if config not in PRESETS and not Path(config).is_file():
            raise ConfigError(f"{config}: neither a preset ({', '.join(PRESETS)}) nor a YAML file")
