"""``greenwire.monkey``: patching, originals, warnings, hooks, entry points and the CLI.

Patching is process-wide, so every test that patches the real standard library runs in a
fresh interpreter. The patcher's logic is also tested in-process on fake modules (a fake
"stdlib" module and a fake green module standing in for it), which never touch the real
standard library.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import types
import warnings
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from greenwire import monkey
from greenwire.green import _registry
from greenwire.monkey import _cli, _events, _patching, _traps

SUBPROCESS_TIMEOUT = 60


def run_python(
    code: str, *args: str, cwd: Path | None = None, pythonpath: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` (or ``-m ...`` when code is empty) in a fresh interpreter."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    command = [sys.executable, *(["-c", textwrap.dedent(code)] if code else []), *args]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT, cwd=cwd, env=env
    )


def run_json(code: str, *args: str, **kwargs: Path) -> object:
    """Run ``code``, which prints one JSON document last; return it."""
    proc = run_python(code, *args, **kwargs)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------ in-process, fake modules


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.SimpleNamespace]:
    """A fake stdlib module and a green one for it, wired to the ``time`` keyword."""
    target = types.ModuleType("fake_stdlib")
    target.block = lambda: "real"  # type: ignore[attr-defined]
    target.untouched = "same"  # type: ignore[attr-defined]
    green = types.ModuleType("fake_green")
    green.__target__ = "fake_stdlib"  # type: ignore[attr-defined]
    green.__implements__ = ["block", "not_in_target"]  # type: ignore[attr-defined]
    green.block = lambda: "green"  # type: ignore[attr-defined]
    green.not_in_target = 1  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_stdlib", target)
    monkeypatch.setitem(sys.modules, "fake_green", green)
    table: dict[str, tuple[str, ...]] = dict.fromkeys(_patching.MODULES, ())
    table["time"] = ("fake_green",)
    table["signal"] = ("greenwire.green.no_such_module_for_tests",)
    monkeypatch.setattr(_patching, "MODULES", table)
    monkeypatch.setattr(_patching, "_patched", {})
    monkeypatch.setattr(_registry, "_saved", {})
    monkeypatch.setattr(_events, "_subscribers", [])
    real_block = target.block  # type: ignore[attr-defined]
    yield types.SimpleNamespace(target=target, green=green, real_block=real_block)


def test_patch_all_replaces_what_the_green_module_declares(fake: types.SimpleNamespace) -> None:
    with pytest.warns(RuntimeWarning, match="no_such_module_for_tests does not exist") as rec:
        monkey.patch_all()
    assert fake.target.block is fake.green.block
    assert not hasattr(fake.target, "not_in_target")  # only existing names are replaced
    assert fake.target.untouched == "same"
    assert monkey.get_original("fake_stdlib", "block") is fake.real_block
    assert monkey.get_original("fake_stdlib", ["block", "untouched"]) == [fake.real_block, "same"]
    assert monkey.is_module_patched("fake_stdlib")
    assert monkey.is_object_patched("fake_stdlib", "block")
    assert not monkey.is_object_patched("fake_stdlib", "untouched")
    assert not monkey.is_module_patched("select")
    # One warning for everything missing, pointing at the caller.
    missing = [w for w in rec if "cannot be imported" in str(w.message)]
    assert len(missing) == 1 and missing[0].filename == __file__
    assert "signal: greenwire.green.no_such_module_for_tests" in str(missing[0].message)


def test_patching_twice_changes_nothing(fake: types.SimpleNamespace) -> None:
    events: list[object] = []
    monkey.subscribe(events.append)
    monkey.patch_all(signal=False)
    first = list(events)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about: nothing to do
        monkey.patch_all(signal=False)
        assert monkey.patch_module("time") is False
    assert events == first
    assert monkey.get_original("fake_stdlib", "block") is fake.real_block
    assert _registry._saved == {("fake_stdlib", "block"): fake.real_block}


def test_keywords_turn_groups_off(fake: types.SimpleNamespace) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # signal=False: its missing module is not asked for
        monkey.patch_all(time=False, signal=False)
    assert fake.target.block is fake.real_block
    assert not monkey.is_module_patched("fake_stdlib")


def test_events_in_order(fake: types.SimpleNamespace) -> None:
    events: list[object] = []
    replaced_when: list[bool] = []

    def record(event: object) -> None:
        events.append(event)
        replaced_when.append(fake.target.block is fake.green.block)

    monkey.subscribe(record)
    monkey.patch_all(signal=False)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["WillPatchAll", "WillPatchModule", "DidPatchModule", "DidPatchAll"]
    will_all, will_mod, did_mod, did_all = events
    assert isinstance(will_all, monkey.WillPatchAll)
    assert "time" in will_all.modules and "signal" not in will_all.modules
    assert will_all.arguments["signal"] is False
    assert isinstance(will_mod, monkey.WillPatchModule)
    assert (will_mod.green_name, will_mod.target_name, will_mod.names) == (
        "fake_green",
        "fake_stdlib",
        ("block",),
    )
    assert will_mod.target is fake.target and will_mod.green is fake.green
    assert replaced_when == [False, False, True, True]
    assert isinstance(did_mod, monkey.DidPatchModule)
    assert isinstance(did_all, monkey.DidPatchAll)
    assert (did_all.patched, did_all.skipped) == (("fake_green",), ())
    monkey.unsubscribe(record)
    monkey.unsubscribe(record)  # harmless twice


def test_a_subscriber_vetoes_one_module(fake: types.SimpleNamespace) -> None:
    events: list[object] = []

    def veto(event: object) -> None:
        events.append(event)
        if isinstance(event, monkey.WillPatchModule) and event.green_name == "fake_green":
            raise monkey.DoNotPatch

    monkey.subscribe(veto)
    monkey.patch_all(signal=False)
    assert fake.target.block is fake.real_block
    assert not monkey.is_module_patched("fake_stdlib")
    did_all = events[-1]
    assert isinstance(did_all, monkey.DidPatchAll) and did_all.skipped == ("fake_green",)
    assert not any(isinstance(e, monkey.DidPatchModule) for e in events)


def test_a_subscriber_vetoes_everything(fake: types.SimpleNamespace) -> None:
    def veto(event: object) -> None:
        if isinstance(event, monkey.WillPatchAll):
            raise monkey.DoNotPatch

    monkey.subscribe(veto)
    monkey.patch_all(signal=False)
    assert fake.target.block is fake.real_block


def test_subscriber_errors_propagate(fake: types.SimpleNamespace) -> None:
    def broken(event: object) -> None:
        raise ZeroDivisionError

    monkey.subscribe(broken)
    with pytest.raises(ZeroDivisionError):
        monkey.patch_all(signal=False)


def test_entry_points_are_loaded_and_called(
    fake: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    plugin = types.ModuleType("fake_plugin")
    plugin.will = lambda event: calls.append(type(event).__name__)  # type: ignore[attr-defined]
    plugin.did = lambda event: calls.append(type(event).__name__)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_plugin", plugin)
    points = {
        monkey.WILL_PATCH_ALL_GROUP: [
            metadata.EntryPoint("w", "fake_plugin:will", monkey.WILL_PATCH_ALL_GROUP)
        ],
        monkey.DID_PATCH_ALL_GROUP: [
            metadata.EntryPoint("d", "fake_plugin:did", monkey.DID_PATCH_ALL_GROUP)
        ],
    }
    monkeypatch.setattr(_events.metadata, "entry_points", lambda group: points.get(group, []))
    monkey.patch_all(signal=False)
    assert calls == ["WillPatchAll", "DidPatchAll"]


def test_patch_module_by_keyword_or_name(fake: types.SimpleNamespace) -> None:
    with pytest.raises(ValueError, match="no green module named 'nonexistent'"):
        monkey.patch_module("nonexistent")
    events: list[object] = []
    monkey.subscribe(events.append)
    assert monkey.patch_module("time") is True
    assert fake.target.block is fake.green.block
    # Only per-module events: patch_module is not patch_all.
    assert [type(e).__name__ for e in events] == ["WillPatchModule", "DidPatchModule"]
    assert monkey.patch_module("time") is False


def test_patch_module_by_green_module_name(monkeypatch: pytest.MonkeyPatch) -> None:
    target = types.ModuleType("fake_stdlib2")
    target.f = len  # type: ignore[attr-defined]
    green = types.ModuleType("greenwire.green.fake_for_tests")
    green.__target__ = "fake_stdlib2"  # type: ignore[attr-defined]
    green.__implements__ = ["f"]  # type: ignore[attr-defined]
    green.f = abs  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_stdlib2", target)
    monkeypatch.setitem(sys.modules, "greenwire.green.fake_for_tests", green)
    monkeypatch.setattr(_patching, "_patched", {})
    monkeypatch.setattr(_registry, "_saved", {})
    assert monkey.patch_module("fake_for_tests") is True
    assert target.f is abs  # type: ignore[attr-defined]
    assert monkey.patch_module("greenwire.green.fake_for_tests") is False
    assert monkey.get_original("fake_stdlib2", "f") is len


def test_a_missing_dependency_outside_greenwire_is_skipped(
    fake: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "fake_green_needs.py").write_text("import _fake_ssl_missing_for_tests\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(_patching.MODULES, "ssl", ("fake_green_needs",))
    events: list[object] = []
    monkey.subscribe(events.append)
    with pytest.warns(RuntimeWarning, match="needs the missing module _fake_ssl_missing"):
        monkey.patch_all(signal=False)
    assert fake.target.block is fake.green.block  # the rest was patched
    did_all = events[-1]
    assert isinstance(did_all, monkey.DidPatchAll) and did_all.skipped == ("fake_green_needs",)


def test_a_broken_green_module_is_an_error(
    fake: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "fake_green_broken.py").write_text("import greenwire.oops_for_tests\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(_patching.MODULES, "ssl", ("fake_green_broken",))
    with pytest.raises(ModuleNotFoundError, match="greenwire.oops_for_tests"):
        monkey.patch_all(signal=False)


def test_existence_is_checked_without_importing() -> None:
    assert _patching._exists("greenwire.green.select")
    assert not _patching._exists("greenwire.green.no_such_module_for_tests")
    assert not _patching._exists("no_such_package_for_tests.sub")


def test_patch_order_is_defined() -> None:
    order = list(monkey.MODULES)
    assert order[0] == "thread"
    assert order.index("socket") < order.index("dns") < order.index("ssl")
    assert order.index("thread") < order.index("queue")
    assert monkey.MODULES["select"] == ("greenwire.green.select", "greenwire.green.selectors")
    assert set(order) == {
        "socket",
        "dns",
        "ssl",
        "select",
        "time",
        "thread",
        "queue",
        "subprocess",
        "signal",
        "os",
    }


# ------------------------------------------------------------------ traps, in-process


def test_not_main_thread_is_detected() -> None:
    assert _traps.not_main_thread() is None
    found: list[str | None] = []
    t = threading.Thread(target=lambda: found.append(_traps.not_main_thread()))
    t.start()
    t.join()
    assert found[0] is not None and "other than the main thread" in found[0]


def test_running_threads_are_detected(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _traps.running_threads() is None
    with monkeypatch.context() as m:
        m.delitem(sys.modules, "threading")
        assert _traps.running_threads() is None  # and threading was not imported for it
        assert "threading" not in sys.modules
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, name="worker-1")
    t.start()
    try:
        message = _traps.running_threads()
    finally:
        stop.set()
        t.join()
    assert message is not None and "1 real thread(s)" in message and "'worker-1'" in message


def test_stale_ssl_references_are_found(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    holder = types.ModuleType("some_client_lib")
    holder.SSLContext = ssl.SSLContext  # type: ignore[attr-defined]
    holder.Ctx = ssl.SSLContext  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "some_client_lib", holder)
    assert _traps.stale_references("ssl", [ssl.SSLContext])["some_client_lib"] == [
        "Ctx",
        "SSLContext",
    ]
    message = _traps.ssl_imported_early(["SSLContext", "no_such_name"])
    assert message is not None and "some_client_lib (Ctx, SSLContext)" in message
    monkeypatch.delitem(sys.modules, "some_client_lib")
    assert _traps.ssl_imported_early(["wrap_socket_that_nobody_holds"]) is None
    monkeypatch.delitem(sys.modules, "ssl")
    assert _traps.ssl_imported_early(["SSLContext"]) is None


# --------------------------------------------------------------------- CLI parsing


def test_cli_parsing() -> None:
    flags, verbose, target = _cli.parse(["--no-time", "-v", "prog.py", "--no-x", "-m", "y"])
    assert flags["time"] is False and flags["socket"] is True and verbose
    assert target is not None and (target.script, target.args) == ("prog.py", ["--no-x", "-m", "y"])
    _, _, target = _cli.parse(["-m", "pkg.mod", "a"])
    assert target is not None and (target.module, target.args) == ("pkg.mod", ["a"])
    _, _, target = _cli.parse(["-mpkg", "a"])
    assert target is not None and (target.module, target.args) == ("pkg", ["a"])
    _, _, target = _cli.parse(["--", "-weird.py", "a"])
    assert target is not None and target.script == "-weird.py"
    assert _cli.parse(["--help", "x.py"])[2] is None
    for bad in ([], ["-m"], ["--"], ["--no-such", "x.py"], ["-q", "x.py"]):
        with pytest.raises(_cli.UsageError):
            _cli.parse(bad)


# ------------------------------------------------------- real patching, in subprocesses


def test_patch_all_in_a_fresh_interpreter() -> None:
    result = run_json(
        """
        import importlib, importlib.util, json, time, warnings
        real_sleep = time.sleep
        from greenwire import monkey
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            monkey.patch_all()
            patched_sleep = time.sleep
            monkey.patch_all()  # idempotent
        report = {"wrong": [], "checked": 0, "same": time.sleep is patched_sleep}
        for keyword, names in monkey.MODULES.items():
            for name in names:
                if importlib.util.find_spec(name) is None:
                    continue
                green = importlib.import_module(name)
                target = importlib.import_module(green.__target__)
                for attr in green.__implements__:
                    if not hasattr(target, attr):
                        continue
                    report["checked"] += 1
                    # dns and socket share the socket module: the later one wins.
                    if getattr(target, attr) is not getattr(green, attr) and name != (
                        "greenwire.green.socket"
                    ):
                        report["wrong"].append(f"{name}.{attr}")
        import socket
        if importlib.util.find_spec("greenwire.green.socket"):
            import greenwire.green.socket
            report["socket"] = socket.socket is greenwire.green.socket.socket
        import select, selectors, greenwire.green.select as gs, greenwire.green.selectors as gsel
        report["select"] = select.select is gs.select and select.poll is gs.poll
        report["selectors"] = selectors.DefaultSelector is gsel.DefaultSelector
        report["epoll_kept"] = select.epoll is monkey.get_original("select", "epoll")
        report["sleep"] = time.sleep.__module__ == "greenwire.green.time"
        report["original"] = monkey.get_original("time", "sleep") is real_sleep
        report["patched"] = [
            monkey.is_module_patched("time"),
            monkey.is_object_patched("time", "sleep"),
            monkey.is_object_patched("time", "monotonic"),
        ]
        print(json.dumps(report))
        """
    )
    assert isinstance(result, dict)
    assert result["wrong"] == [] and result["checked"] > 10 and result["same"]
    assert result.get("socket", True) is True
    assert result["select"] and result["selectors"] and result["epoll_kept"]
    assert result["sleep"] and result["original"]
    assert result["patched"] == [True, True, False]


def test_patched_sleep_and_select_are_cooperative() -> None:
    # On a virtual clock: if time.sleep or select blocked the thread, the 1000 s would be
    # real and the subprocess would time out.
    result = run_json(
        """
        import json, warnings
        from greenwire import monkey
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            monkey.patch_all()
        import select, socket, time
        import greenwire
        from greenwire._core import VirtualClock, get_hub
        hub = get_hub()
        hub.set_clock(VirtualClock())
        progress = []

        def worker():
            for i in range(3):
                progress.append(i)
                time.sleep(0)

        a, b = socket.socketpair()
        sleepers = [greenwire.spawn(time.sleep, 1000) for _ in range(2)]
        w = greenwire.spawn(worker)
        selecting = greenwire.spawn(select.select, [a], [], [], 5000)
        w.join()
        done_while_sleeping = not any(s.ready() for s in sleepers)
        greenwire.spawn_later(2000, b.send, b"x")
        greenwire.joinall(sleepers + [selecting], raise_error=True)
        print(json.dumps({
            "progress": progress, "overlap": done_while_sleeping, "now": hub.now(),
            "selected": len(selecting.value[0]),
        }))
        """
    )
    assert result == {"progress": [0, 1, 2], "overlap": True, "now": 2000.0, "selected": 1}


def test_warning_for_threads_started_before_patching() -> None:
    result = run_json(
        """
        import json, threading, warnings
        stop = threading.Event()
        t = threading.Thread(target=stop.wait, name="early-bird")
        t.start()
        from greenwire import monkey
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            monkey.patch_all()
        stop.set()
        t.join()
        print(json.dumps([str(w.message) for w in caught if w.category is RuntimeWarning]))
        """
    )
    assert isinstance(result, list)
    assert any("real thread(s)" in m and "'early-bird'" in m for m in result)


def test_warning_when_patching_from_another_thread() -> None:
    result = run_json(
        """
        import json, _thread, warnings
        done = _thread.allocate_lock()
        done.acquire()
        messages = []

        def patch():
            from greenwire import monkey
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                monkey.patch_all(thread=False)
            messages.extend(str(w.message) for w in caught)
            done.release()

        _thread.start_new_thread(patch, ())
        done.acquire()
        print(json.dumps(messages))
        """
    )
    assert isinstance(result, list)
    assert any("other than the main thread" in m for m in result)


def test_warning_for_ssl_objects_held_elsewhere() -> None:
    # The green ssl module may not exist yet: install a stand-in declaring SSLContext.
    result = run_json(
        """
        import json, ssl, sys, types, warnings
        from ssl import SSLContext  # held by __main__, as a client library would
        green = types.ModuleType("greenwire.green.ssl")
        green.__target__ = "ssl"
        green.__implements__ = ["SSLContext"]
        green.SSLContext = type("SSLContext", (ssl.SSLContext,), {})
        sys.modules["greenwire.green.ssl"] = green
        from greenwire import monkey
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            monkey.patch_all()
        print(json.dumps({
            "messages": [str(w.message) for w in caught],
            "patched": ssl.SSLContext is green.SSLContext,
        }))
        """
    )
    assert isinstance(result, dict) and result["patched"]
    assert any("__main__ (SSLContext)" in m for m in result["messages"])


def test_missing_green_module_warns_once_and_patching_goes_on() -> None:
    result = run_json(
        """
        import json, sys, time, warnings
        sys.modules["greenwire.green.signal"] = None  # as if it did not exist
        from greenwire import monkey
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            monkey.patch_all()
        missing = [str(w.message) for w in caught if "cannot be imported" in str(w.message)]
        print(json.dumps({"missing": missing, "time": monkey.is_module_patched("time")}))
        """
    )
    assert isinstance(result, dict) and result["time"]
    assert len(result["missing"]) == 1
    assert "signal: greenwire.green.signal does not exist" in result["missing"][0]


def test_entry_point_plugins_from_an_installed_distribution(tmp_path: Path) -> None:
    (tmp_path / "myplugin.py").write_text(
        textwrap.dedent(
            """
            import sys
            def will(event):
                print("will", sorted(event.modules)[:2], file=sys.stderr)
            def did(event):
                print("did", "greenwire.green.time" in event.patched, file=sys.stderr)
            """
        )
    )
    dist = tmp_path / "myplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[greenwire.plugins.will_patch_all]\nw = myplugin:will\n\n"
        "[greenwire.plugins.did_patch_all]\nd = myplugin:did\n"
    )
    proc = run_python(
        """
        import warnings
        warnings.simplefilter("ignore")
        from greenwire import monkey
        monkey.patch_all()
        monkey.patch_all()  # idempotent: the plug-ins are not called again
        """,
        pythonpath=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == ["will ['dns', 'os']", "did True"]


def write_script(path: Path) -> Path:
    path.write_text(
        textwrap.dedent(
            """
            import json, os, sys, time
            from greenwire import monkey
            print(json.dumps({
                "argv": sys.argv, "path0": sys.path[0], "name": __name__,
                "time": monkey.is_object_patched("time", "sleep"),
                "green_sleep": time.sleep.__module__ == "greenwire.green.time",
                "select": monkey.is_module_patched("select"),
            }))
            sys.exit(int(os.environ.get("EXIT_WITH", "0")))
            """
        )
    )
    return path


def test_cli_runs_a_script_patched(tmp_path: Path) -> None:
    script = write_script(tmp_path / "prog.py")
    result = run_json("", "-W", "ignore", "-m", "greenwire.monkey", str(script), "a", "--b")
    assert result == {
        "argv": [str(script), "a", "--b"],
        "path0": str(tmp_path.resolve()),
        "name": "__main__",
        "time": True,
        "green_sleep": True,
        "select": True,
    }


def test_cli_no_time_leaves_sleep_alone(tmp_path: Path) -> None:
    script = write_script(tmp_path / "prog.py")
    result = run_json(
        "", "-W", "ignore", "-m", "greenwire.monkey", "--no-time", "--no-select", str(script)
    )
    assert isinstance(result, dict)
    assert (result["time"], result["green_sleep"], result["select"]) == (False, False, False)


def test_cli_runs_a_module_patched(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_script(package / "tool.py")
    result = run_json(
        "", "-W", "ignore", "-m", "greenwire.monkey", "-m", "pkg.tool", "x", cwd=tmp_path
    )
    assert isinstance(result, dict)
    assert result["argv"] == [str(package / "tool.py"), "x"]
    assert result["path0"] == str(tmp_path)
    assert (result["name"], result["time"]) == ("__main__", True)


def test_cli_verbose_and_exit_status(tmp_path: Path) -> None:
    script = write_script(tmp_path / "prog.py")
    env_run = run_python(
        f"import os, runpy, sys; os.environ['EXIT_WITH'] = '3'; "
        f"sys.argv = ['x', '--verbose', {str(script)!r}]; "
        f"runpy.run_module('greenwire.monkey', run_name='__main__')",
    )
    assert env_run.returncode == 3
    assert "greenwire.monkey: patched time (sleep) from greenwire.green.time" in env_run.stderr


def test_cli_usage_errors_and_help(tmp_path: Path) -> None:
    script = write_script(tmp_path / "prog.py")
    bad = run_python("", "-m", "greenwire.monkey", "--no-such-module", str(script))
    assert bad.returncode == 2 and "unknown option '--no-such-module'" in bad.stderr
    nothing = run_python("", "-m", "greenwire.monkey")
    assert nothing.returncode == 2 and "expected a script" in nothing.stderr
    helped = run_python("", "-m", "greenwire.monkey", "--help")
    assert helped.returncode == 0 and "--no-MODULE" in helped.stdout


# ------------------------------------------------------ CLI plumbing, in-process


@pytest.fixture
def cli_sandbox(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, bool]]:
    """Keep sys.argv / sys.path and the subscribers; record patch_all instead of patching."""
    calls: list[dict[str, bool]] = []
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(_events, "_subscribers", [])
    monkeypatch.setattr(_cli, "patch_all", lambda **flags: calls.append(flags))
    return calls


def recording_script(path: Path) -> Path:
    path.write_text(
        "import sys\n"
        "sys.modules['greenwire_cli_probe'].seen.append((__name__, list(sys.argv), sys.path[0]))\n"
    )
    return path


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str], str]]:
    module = types.ModuleType("greenwire_cli_probe")
    module.seen = []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "greenwire_cli_probe", module)
    return module.seen  # type: ignore[attr-defined, no-any-return]


def test_cli_main_patches_then_runs_the_script(
    tmp_path: Path,
    cli_sandbox: list[dict[str, bool]],
    probe: list[tuple[str, list[str], str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = recording_script(tmp_path / "prog.py")
    assert _cli.main(["--no-time", "-v", str(script), "a"]) == 0
    assert cli_sandbox[0]["time"] is False and cli_sandbox[0]["socket"] is True
    assert probe == [("__main__", [str(script), "a"], str(tmp_path.resolve()))]
    # --verbose subscribed a reporter.
    (reporter,) = _events._subscribers
    green = types.ModuleType("g")
    reporter(monkey.DidPatchModule("greenwire.green.time", "time", green, green, ("sleep",)))
    reporter(monkey.WillPatchAll(("time",), {}))
    assert capsys.readouterr().err == (
        "greenwire.monkey: patched time (sleep) from greenwire.green.time\n"
    )


def test_cli_runs_modules_and_directories(
    tmp_path: Path,
    cli_sandbox: list[dict[str, bool]],
    probe: list[tuple[str, list[str], str]],
) -> None:
    package = tmp_path / "clipkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    recording_script(package / "tool.py")
    sys.path.insert(0, str(tmp_path))
    try:
        _cli.run(_cli._Target(None, "clipkg.tool", ["x"]))
    finally:
        sys.modules.pop("clipkg", None)
        sys.modules.pop("clipkg.tool", None)
    assert probe[0][:2] == ("__main__", [str(package / "tool.py"), "x"])
    app = tmp_path / "app"
    app.mkdir()
    recording_script(app / "__main__.py")
    _cli.run(_cli._Target(str(app), None, ["y"]))
    assert probe[1][0] == "__main__" and probe[1][1][1:] == ["y"] and probe[1][2] == str(app)


def test_cli_main_usage(
    cli_sandbox: list[dict[str, bool]], capsys: pytest.CaptureFixture[str]
) -> None:
    assert _cli.main(["--nope"]) == 2
    assert "error: unknown option '--nope'" in capsys.readouterr().err
    assert _cli.main(["-h"]) == 0
    assert "--no-MODULE" in capsys.readouterr().out
    assert cli_sandbox == []
