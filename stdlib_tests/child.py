"""Run one CPython test module under one implementation's patching; write counts as JSON.

Usage (normally started by ``run.py``, in a fresh interpreter and a scratch directory)::

    python child.py IMPL MODULE RESULT_FILE [DUMP_AFTER_SECONDS [START_AFTER_TEST_ID]]

``MODULE`` is a module of CPython's ``test`` package (``test_socket``) or a dotted name.
``IMPL`` is ``greenwire``, ``gevent`` or ``none``. Patching comes first: nothing but
``sys`` and ``os`` is imported before it, as a program following either library's advice
would do. Then the module's tests are loaded the way unittest loads them (``load_tests``
is honoured), the reviewed skip list of ``skips.py`` is applied, and the tests run with
a result object that rewrites ``RESULT_FILE`` before and after every test: if a test
hangs and the parent kills us, the file still says how far we got and which test was
running, and the parent starts a new child that resumes after it (``START_AFTER``). A
test still running after ``DUMP_AFTER`` seconds gets the stacks of all threads dumped
into the log.

``test.support`` is set up as regrtest would: quiet, and with the same resources for
every implementation (everything but the internet, the GUI, audio and huge files).
"""

from __future__ import annotations

import os
import signal
import sys

# A shell starts background jobs with SIGINT ignored, and Python then installs no
# KeyboardInterrupt handler: put it back, or the SIGINT tests measure how the gate was
# started instead of the implementation.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

IMPL, MODULE, RESULT_FILE = sys.argv[1:4]
DUMP_AFTER = float(sys.argv[4]) if len(sys.argv) > 4 else 0.0
START_AFTER = sys.argv[5] if len(sys.argv) > 5 else ""

if IMPL == "greenwire":
    import warnings

    with warnings.catch_warnings(record=True) as _caught:
        warnings.simplefilter("always")
        from greenwire import monkey

        monkey.patch_all()
    PATCH_WARNINGS = [str(w.message) for w in _caught]
elif IMPL == "gevent":
    from gevent import monkey

    monkey.patch_all()
    PATCH_WARNINGS = []
elif IMPL == "none":
    PATCH_WARNINGS = []
else:
    sys.exit(f"unknown implementation {IMPL!r}")

import faulthandler  # noqa: E402
import fnmatch  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import unittest  # noqa: E402
from typing import Any  # noqa: E402

# The skip list lives next to this script; nothing else is imported from here.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import skips  # noqa: E402

del sys.path[0]

#: Resources granted to every implementation alike (``-u`` in regrtest terms).
RESOURCES = ["cpu", "decimal", "subprocess", "walltime", "tzdata"]
#: Modules that demand the "network" (internet) resource as a whole but only ever talk to
#: the loopback interface; they get it, under every implementation alike.
LOOPBACK_ONLY = {"test_socketserver"}
#: Lines of traceback kept per failing test.
TRACE_LINES = 12


class CountingResult(unittest.TestResult):
    """Tallies one outcome per test (subtests fold into their test) and saves progress."""

    def __init__(self, report: Report) -> None:
        super().__init__()
        self.report = report
        self.outcome = ""

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self.outcome = "passed"
        self.report.current = test.id()
        self.report.save()
        if DUMP_AFTER > 0:
            faulthandler.dump_traceback_later(DUMP_AFTER, exit=False)

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)
        if DUMP_AFTER > 0:
            faulthandler.cancel_dump_traceback_later()
        self.report.count(self.outcome)
        self.report.last = self.report.current
        self.report.current = None
        self.report.save()

    def _mark(self, test: Any, outcome: str, err: Any) -> None:
        """Record a failure or an error; one outside any test (a fixture) counts alone."""
        if self.report.current is None:
            self.report.count(outcome)  # setUpClass, tearDownModule...
        elif self.outcome != "errors":
            self.outcome = outcome
        self.report.problem(str(test.id() if hasattr(test, "id") else test), outcome, err)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._mark(test, "errors", err)

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._mark(test, "failed", err)

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._mark(subtest, "failed" if failed else "errors", err)

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        if self.report.current is None:
            self.report.count("skipped")  # a whole class skipped in setUpClass
        else:
            self.outcome = "skipped"

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._mark(test, "failed", "unexpected success")


class Report:
    """The JSON file the parent reads: counts, problems, and the test running now."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.state = "loading"
        self.reason = ""
        self.counts = dict.fromkeys(("run", "passed", "failed", "errors", "skipped", "listed"), 0)
        self.problems: list[dict[str, str]] = []
        self.current: str | None = None
        self.last: str | None = None

    def count(self, outcome: str) -> None:
        self.counts["run"] += 1
        self.counts[outcome] += 1

    def problem(self, test_id: str, outcome: str, err: Any) -> None:
        if isinstance(err, tuple):
            lines = "".join(traceback.format_exception(*err)).rstrip().splitlines()
            text = "\n".join(lines[-TRACE_LINES:])
        else:
            text = str(err)
        self.problems.append({"id": test_id, "outcome": outcome, "trace": text})

    def save(self) -> None:
        data = {
            "module": MODULE,
            "impl": IMPL,
            "python": sys.version.split()[0],
            "state": self.state,
            "reason": self.reason,
            **self.counts,
            "current": self.current,
            "last": self.last,
            # Wall-clock time of this save: the parent measures a stall from it.
            "current_since": time.time(),
            "seconds": round(time.monotonic() - self.started, 2),
            "problems": self.problems,
            "patch_warnings": PATCH_WARNINGS,
        }
        temporary = RESULT_FILE + ".tmp"
        with open(temporary, "w") as f:
            json.dump(data, f)
        os.replace(temporary, RESULT_FILE)


def iter_tests(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    """The test cases of a suite, nested suites flattened."""
    found = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            found.extend(iter_tests(item))
        else:
            found.append(item)
    return found


def skip_marker(reason: str) -> Any:
    """A stand-in test method that unittest reports as skipped with ``reason``."""

    def skipped(*args: object, **kwargs: object) -> None:
        raise AssertionError("a skipped test ran")

    skipped.__unittest_skip__ = True  # type: ignore[attr-defined]
    skipped.__unittest_skip_why__ = f"skip list: {reason}"  # type: ignore[attr-defined]
    return skipped


def apply_skips(suite: unittest.TestSuite, report: Report) -> None:
    """Mark the tests named in the skip list for this implementation as skipped."""
    listed = skips.for_impl(IMPL)
    for test in iter_tests(suite):
        method_name = getattr(test, "_testMethodName", None)
        if method_name is None:
            continue
        test_id = test.id()
        for pattern, reason in listed.items():
            if fnmatch.fnmatchcase(test_id, pattern):
                setattr(test, method_name, skip_marker(reason))
                report.counts["listed"] += 1
                break


def resumed(suite: unittest.TestSuite, after: str) -> unittest.TestSuite:
    """The tests of ``suite`` that come after the one whose id is ``after``, in order."""
    tests = iter_tests(suite)
    ids = [test.id() for test in tests]
    if after not in ids:
        raise LookupError(f"cannot resume: no test {after!r} in {MODULE}")
    return unittest.TestSuite(tests[ids.index(after) + 1 :])


def run_suite(suite: unittest.TestSuite, report: Report) -> None:
    """Apply the skip list and run ``suite``, counting into ``report``."""
    if START_AFTER:
        suite = resumed(suite, START_AFTER)
    apply_skips(suite, report)
    report.state = "running"
    result = CountingResult(report)
    result.startTestRun()
    try:
        suite.run(result)
    finally:
        result.stopTestRun()


def legacy_run_unittest(report: Report) -> Any:
    """A ``support.run_unittest`` that runs with our result (modules with ``test_main``)."""
    loader = unittest.defaultTestLoader

    def run_unittest(*classes: Any) -> None:
        suite = unittest.TestSuite()
        for cls in classes:
            if isinstance(cls, str):
                suite.addTest(loader.loadTestsFromModule(sys.modules[cls]))
            elif isinstance(cls, (unittest.TestSuite, unittest.TestCase)):
                suite.addTest(cls)
            else:
                suite.addTest(loader.loadTestsFromTestCase(cls))
        run_suite(suite, report)

    return run_unittest


def main() -> int:
    report = Report()
    report.save()
    from test import support

    support.use_resources = RESOURCES + (["network"] if MODULE in LOOPBACK_ONLY else [])
    support.verbose = 0
    # A bare name is one of CPython's test modules; a dotted one is imported as it is.
    qualified = MODULE if "." in MODULE else "test." + MODULE
    try:
        module = importlib.import_module(qualified)
    except ModuleNotFoundError as e:
        if e.name == qualified:
            report.state = "absent"
            report.save()
            return 0
        raise
    except unittest.SkipTest as e:
        report.state = "module skipped"
        report.reason = str(e)
        report.save()
        return 0
    except Exception as e:  # broken by the patching, most likely: a crash, with its cause
        report.state = "import error"
        report.reason = f"{type(e).__name__}: {e}"
        report.save()
        raise
    if hasattr(module, "test_main") and not hasattr(module, "load_tests"):
        support.run_unittest = legacy_run_unittest(report)
        module.test_main()
    else:
        suite = unittest.defaultTestLoader.loadTestsFromModule(module)
        run_suite(suite, report)
    report.state = "done"
    report.save()
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
