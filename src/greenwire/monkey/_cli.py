"""The command line: patch, then run a script or a module as ``__main__``.

The program runs as if started by ``python script.py`` / ``python -m module``: the same
``sys.argv`` (``argv[0]`` is the script or the module's file), ``sys.path[0]`` is the
script's directory (the current directory for ``-m``), and it runs in the main thread's
main greenlet.
"""

from __future__ import annotations

import os
import runpy
import sys
import zipfile
from collections.abc import Callable, Sequence
from typing import TextIO

from greenwire.monkey._events import DidPatchModule, Event, subscribe
from greenwire.monkey._patching import MODULES, patch_all

USAGE = """\
usage: python -m greenwire.monkey [--no-MODULE ...] [--verbose] script.py [args ...]
       python -m greenwire.monkey [--no-MODULE ...] [--verbose] -m module [args ...]

Patch the standard library with greenwire.monkey.patch_all(), then run the script or
module as __main__, with the arguments that follow it.

options:
  --no-MODULE    do not patch MODULE, one of: {modules}
  -v, --verbose  say what is patched, on stderr
  -h, --help     show this help and exit
"""


class UsageError(Exception):
    """Bad command line; the message says why."""


class _Target:
    """What to run: a script path or a module name, and its arguments."""

    def __init__(self, script: str | None, module: str | None, args: list[str]) -> None:
        self.script = script
        self.module = module
        self.args = args


def parse(argv: Sequence[str]) -> tuple[dict[str, bool], bool, _Target | None]:
    """Split the command line into patch_all flags, verbosity and what to run.

    Options end at the script or at ``-m module``; everything after belongs to the
    program. Returns a None target for ``--help``.

    Raises:
        UsageError: an unknown option, or nothing to run.
    """
    flags = dict.fromkeys(MODULES, True)
    verbose = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            return flags, verbose, None
        if arg in ("-v", "--verbose"):
            verbose = True
        elif arg.startswith("--no-") and arg[5:] in flags:
            flags[arg[5:]] = False
        elif arg == "-m" or (arg.startswith("-m") and not arg.startswith("--")):
            module = arg[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            if not module:
                raise UsageError("argument -m: expected a module name")
            rest = list(argv[i + (1 if arg[2:] else 2) :])
            return flags, verbose, _Target(None, module, rest)
        elif arg == "--":
            if i + 1 >= len(argv):
                raise UsageError("expected a script after --")
            return flags, verbose, _Target(argv[i + 1], None, list(argv[i + 2 :]))
        elif arg.startswith("-"):
            raise UsageError(f"unknown option {arg!r}")
        else:
            return flags, verbose, _Target(arg, None, list(argv[i + 1 :]))
        i += 1
    raise UsageError("expected a script or -m module to run")


def _reporter(stream: TextIO) -> Callable[[Event], None]:
    def report(event: Event) -> None:
        if isinstance(event, DidPatchModule):
            names = ", ".join(event.names)
            stream.write(
                f"greenwire.monkey: patched {event.target_name} ({names}) from {event.green_name}\n"
            )
            stream.flush()

    return report


def run(target: _Target) -> None:
    """Run the script or module as ``__main__``, with its ``sys.argv`` and ``sys.path``."""
    if target.module is not None:
        # ``python -m`` put the current directory first in sys.path already; run_module
        # sets argv[0] to the module's file, as ``python -m module`` would.
        sys.argv[:] = [target.module, *target.args]
        runpy.run_module(target.module, run_name="__main__", alter_sys=True)
        return
    script = target.script
    assert script is not None
    sys.argv[:] = [script, *target.args]
    if os.path.isdir(script) or zipfile.is_zipfile(script):
        # A directory or zip file with __main__.py; runpy puts it first in sys.path.
        sys.path[0] = script
    else:
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    runpy.run_path(script, run_name="__main__")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``python -m greenwire.monkey`` entry point; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    try:
        flags, verbose, target = parse(args)
    except UsageError as e:
        modules = ", ".join(MODULES)
        sys.stderr.write(USAGE.format(modules=modules).split("\n\n")[0] + "\n")
        sys.stderr.write(f"python -m greenwire.monkey: error: {e}\n")
        return 2
    if target is None:
        sys.stdout.write(USAGE.format(modules=", ".join(MODULES)))
        return 0
    if verbose:
        subscribe(_reporter(sys.stderr))
    patch_all(**flags)
    run(target)
    return 0
