"""Run code in a fresh interpreter with green modules patched in (patching is process-wide).

The patch is applied by hand from the modules' declarations (``__target__`` and
``__implements__``), recording each original first, exactly as ``greenwire.monkey`` is
meant to: tests of the green modules do not depend on the monkey package.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: The green modules that together make threads greenlets.
THREAD_MODULES = ("thread", "threading", "threading_local", "queue")

_PRELUDE = """\
import importlib as _importlib
from greenwire.green import record_original as _record_original

for _name in {modules!r}:
    _green = _importlib.import_module("greenwire.green." + _name)
    _target = _importlib.import_module(_green.__target__)
    for _attr in _green.__implements__:
        _record_original(_green.__target__, _attr, getattr(_target, _attr))
        setattr(_target, _attr, getattr(_green, _attr))
del _name, _green, _target, _attr
"""


def run_patched(
    code: str,
    modules: tuple[str, ...] = THREAD_MODULES,
    timeout: float = 30.0,
    prelude: str = "",
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter after ``prelude`` and the patch.

    Args:
        code: the script; it runs as ``__main__`` after patching.
        modules: the green modules to patch in, by name under ``greenwire.green``.
        timeout: seconds before the interpreter is killed (the test then fails).
        prelude: code to run before patching (to create objects that predate it).
    """
    script = (
        textwrap.dedent(prelude)
        + "\n"
        + _PRELUDE.format(modules=modules)
        + "\n"
        + textwrap.dedent(code)
    )
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def check_patched(code: str, **kwargs: object) -> str:
    """Like :func:`run_patched`, and assert a clean exit; return the standard output."""
    result = run_patched(code, **kwargs)  # type: ignore[arg-type]
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout
