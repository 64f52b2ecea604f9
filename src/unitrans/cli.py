"""The `unitrans` command line.

Commands live in `unitrans.commands.*`, each a thin wrapper over a library function; this module only
builds the app, configures logging (here and nowhere else) and turns user errors into one-line messages
with exit code 2.
"""

from __future__ import annotations

import errno
import logging
import os
import sys

# Before torch loads libgomp: its default busy-waiting threads cut training throughput ~4x when another
# process shares the cores (measured 634 -> 140 tokens/s); passive waiting costs nothing when alone.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# transformers draws a "Loading weights" bar on every model load: noise between our stage lines, and it
# would stand before a one-line load error. Users can turn it back on by setting the variable to 0.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import typer

from unitrans import __version__
from unitrans.atomic import os_error_line
from unitrans.commands import data, encoder, evaluate, run, tag, train, translate
from unitrans.errors import UnitransError

app = typer.Typer(
    name="unitrans",
    help="Zero-resource cross-lingual NER by UniTrans.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"unitrans {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


for _module in (data, evaluate, encoder, train, translate, run, tag):
    _module.register(app)


INTERRUPTED = "unitrans: interrupted (finished pipeline stages are cached: a rerun resumes)"

ENVIRONMENT_ERRNOS = frozenset(
    {
        errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ELOOP,
        errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EIO, errno.ENOENT,
    }
)  # fmt: skip
"""OS errors caused by the machine or the paths the user gave (full disk, permissions, symlink loops):
one line and exit 2, wherever in the work they surface."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code instead of raising SystemExit (handy in tests)."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="unitrans", standalone_mode=False)
    except UnitransError as err:
        print(f"unitrans: error: {err}", file=sys.stderr)
        return err.exit_code
    except typer.Abort:
        print("unitrans: aborted", file=sys.stderr)
        return 130
    except OSError as err:
        if err.errno not in ENVIRONMENT_ERRNOS:
            raise  # not the user's machine: a bug, keep the traceback
        print(f"unitrans: error: {os_error_line(err)}", file=sys.stderr)
        return 2
    except typer.Exit as err:
        return err.exit_code
    except typer.TyperException as err:  # usage errors; typer vendors click's exception classes
        show = getattr(err, "show", None)
        if callable(show):
            show()
        else:
            print(f"unitrans: error: {err}", file=sys.stderr)
        return getattr(err, "exit_code", 2)
    if result == 130:  # typer turns Ctrl-C into a return of 130 outside standalone mode; no command does
        print(INTERRUPTED, file=sys.stderr)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
