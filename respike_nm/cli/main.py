"""Entry point: ``respike-nm <command> ...``. Each command module adds its own subparser."""

from __future__ import annotations

import argparse
import logging
import sys

from respike_nm import __version__
from respike_nm.cli import data as data_cmd
from respike_nm.cli import demo as demo_cmd
from respike_nm.cli import deploy as deploy_cmd
from respike_nm.cli import energy as energy_cmd
from respike_nm.cli import nir as nir_cmd
from respike_nm.cli import train as train_cmd
from respike_nm.cli.demo import DemoError
from respike_nm.data.errors import DataError

COMMANDS = (data_cmd, train_cmd, deploy_cmd, nir_cmd, energy_cmd, demo_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="respike-nm",
        description="ReSpike hybrid ANN+SNN action recognition, carried to neuromorphic hardware.",
    )
    parser.add_argument("--version", action="version", version=f"respike-nm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except (DataError, DemoError, ValueError, FileNotFoundError) as exc:
        # Bad input: one clear line, no traceback from inside a library (-v shows it).
        if args.verbose:
            raise
        print(f"respike-nm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("respike-nm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
