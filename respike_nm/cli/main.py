"""Entry point: ``respike-nm <command> ...``. Each command module adds its own subparser.

The error boundary is here and only here. A failure on the user's input (a config, a path, a
checkpoint, a video: every :class:`~respike_nm.errors.RespikeError` the library raises names the
file or option) is one line on stderr and exit code 2; a file-system refusal (missing, exists, not a
folder, no permission, read-only, full) is one line naming the path, also 2; anything else, a
``ValueError`` from deep inside numpy or torch included, is an internal error, exit 1, with the
traceback only under ``--debug`` or ``RESPIKE_DEBUG=1``. SIGINT exits 130 and SIGTERM 143, both
after the Lava networks have been stopped (:mod:`respike_nm.stopping`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from respike_nm import __version__, stopping
from respike_nm.cli import check_paths
from respike_nm.cli import crossval as crossval_cmd
from respike_nm.cli import data as data_cmd
from respike_nm.cli import demo as demo_cmd
from respike_nm.cli import deploy as deploy_cmd
from respike_nm.cli import discover as discover_cmd
from respike_nm.cli import energy as energy_cmd
from respike_nm.cli import nir as nir_cmd
from respike_nm.cli import predict as predict_cmd
from respike_nm.cli import train as train_cmd
from respike_nm.errors import RespikeError

COMMANDS = (data_cmd, train_cmd, crossval_cmd, predict_cmd, deploy_cmd, nir_cmd, energy_cmd, demo_cmd,
            discover_cmd)
DEBUG_ENV = "RESPIKE_DEBUG"
USER_ERRORS = (RespikeError,)
PATH_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="respike-nm",
        description="ReSpike hybrid ANN+SNN action recognition, carried to neuromorphic hardware.",
    )
    parser.add_argument("--version", action="version", version=f"respike-nm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--debug", action="store_true",
                        help=f"show the traceback of an internal error (or set {DEBUG_ENV}=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def _message(exc: Exception) -> str:
    """A path error as ``PATH: reason``; the library's own errors already name their file."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    return str(exc)


def _refused_write(exc: Exception) -> bool:
    """A write the file system refused (read-only, full, over quota): the user's to fix, like a path
    error. :mod:`respike_nm.atomic` names the file the user asked for, not its temporary name."""
    from respike_nm.atomic import REFUSALS

    return isinstance(exc, OSError) and exc.errno in REFUSALS


def _user_error(exc: Exception, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"respike-nm: error: {_message(exc)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if debug:  # what third-party imports print (respike_nm.lavadl) shows only on request
        logging.getLogger("respike_nm.lavadl").setLevel(logging.DEBUG)
    try:
        check_paths(args)  # before any command imports torch: a wrong path answers at once
        with stopping.install():
            return int(args.func(args) or 0)
    except (*USER_ERRORS, *PATH_ERRORS) as exc:
        return _user_error(exc, debug)
    except KeyboardInterrupt:
        print("respike-nm: interrupted", file=sys.stderr)
        return 130
    except stopping.Terminated:
        print("respike-nm: terminated", file=sys.stderr)
        return 143
    except Exception as exc:  # noqa: BLE001 - the one boundary: internal errors become exit 1
        if _refused_write(exc):
            return _user_error(exc, debug)
        if debug:
            traceback.print_exc()
        where = traceback.extract_tb(exc.__traceback__)[-1]
        hint = "" if debug else f"; --debug or {DEBUG_ENV}=1 shows the traceback"
        print(f"respike-nm: internal error: {type(exc).__name__}: {exc} "
              f"(at {os.path.basename(where.filename)}:{where.lineno}{hint})", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
