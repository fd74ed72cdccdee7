"""The reviewed skip lists: tests not run under an implementation's patching, and why.

Each entry maps a test id pattern (``fnmatch`` syntax, matched against ``test.id()``,
e.g. ``test.test_socket.GeneralModuleTests.test_x`` or ``test.test_x.SomeClass.*``) to
the reason the test cannot pass. Only these reasons belong here:

* behaviour that cannot hold when threads are greenlets in one OS thread: a test that
  blocks the OS thread on purpose through something no patching can reach, while the
  "thread" that would unblock it is a greenlet of that same OS thread;
* a CPython implementation detail that the patched object legitimately does otherwise,
  by a design decision written down in the green module;
* (``HOST``, every implementation including the unpatched baseline) a test that cannot
  work on the machine running the gate, found by probing it.

A test that fails because greenwire is wrong is *not* listed: it is fixed, or it stays
failing in the gate's table until it is. gevent gets no list of its own beyond the tests
that cannot work with greenlets for any library (they would hang the run).
"""

from __future__ import annotations

import errno

#: The C ``SimpleQueue`` tests that wait across threads.
_FRESH_C_QUEUE = (
    "test_queue imports a fresh copy of the C _queue module on purpose "
    "(import_fresh_module), which no patching reaches; its SimpleQueue.get() blocks the "
    "OS thread, so the producer, a greenlet of that thread, never runs"
)

#: Tests that hang with threads as greenlets of one OS thread, whatever the library.
GREENLETS: dict[str, str] = {
    "test.test_queue.CSimpleQueueTest.test_order": _FRESH_C_QUEUE,
    "test.test_queue.CSimpleQueueTest.test_many_threads": _FRESH_C_QUEUE,
    "test.test_queue.CSimpleQueueTest.test_many_threads_timeout": _FRESH_C_QUEUE
    + " (and get(timeout=1e-5) in a loop never yields)",
    "test.test_signal.StressTest.test_stress_modifying_handlers": (
        "its thread loops on signal.raise_signal() until the main thread sets a flag, "
        "and raise_signal never blocks: a greenlet is never preempted, so the main "
        "thread, a greenlet of the same OS thread, never runs again"
    ),
}

_ALWAYS_NONBLOCKING = (
    "checks the fd's O_NONBLOCK flag: a green socket's fd is always non-blocking, by "
    "design (greenwire/green/socket.py); the Python-level blocking and timeout API, "
    "which these tests also check, matches the stdlib"
)

_NATIVE_ID = (
    "wants a distinct native_id per thread: native_id is the kernel's thread id "
    "(gettid), and green threads are greenlets of one OS thread, so they share it "
    "(greenwire/green/thread.py keeps get_native_id the real one rather than invent ids "
    "the kernel does not know)"
)

#: greenwire's own list, on top of GREENLETS.
GREENWIRE: dict[str, str] = {
    "test.test_socket.NonBlockingTCPTests.testSetBlocking": _ALWAYS_NONBLOCKING,
    "test.test_socket.NonBlockingTCPTests.testSetBlocking_overflow": _ALWAYS_NONBLOCKING,
    "test.test_socket.NonblockConstantTest.test_SOCK_NONBLOCK": _ALWAYS_NONBLOCKING,
    "test.test_threading.ThreadTests.test_various_ops": _NATIVE_ID,
    "test.test_threading.ThreadTests.test_various_ops_small_stack": _NATIVE_ID,
    "test.test_threading.ThreadTests.test_various_ops_large_stack": _NATIVE_ID,
    "test.test_threading.ThreadTests.test_PyThreadState_SetAsyncExc": (
        "the C API PyThreadState_SetAsyncExc (through ctypes, which no patching reaches) "
        "looks up a C thread state by thread id, and there is one per OS thread: a green "
        "thread's ident (threading.get_ident) names a greenlet, which has none, so the "
        "call finds no thread state and the worker is never interrupted (the test's first "
        "part, on the main thread's real ident, passes)"
    ),
    "test.test_threading.InterruptMainTests.test_can_interrupt_tight_loops": (
        "the main thread busy-waits for the worker to start and the worker busy-loops "
        "until the main thread clears a flag, neither ever blocking: greenlets are not "
        "preempted, so the worker (which Thread.start runs at once) spins its 100 million "
        "iterations out and ends uninterrupted"
    ),
    "test.test_threading.MiscTestCase.test__all__": (
        "check__all__ expects in threading.__all__ exactly the public names whose "
        "__module__ is threading or _thread; under the patch threading's get_ident, Lock "
        "and local are greenwire's objects (greenwire.green.thread, greenwire.local: "
        "threading.local is the public greenwire.local class by design), while "
        "threading.__all__ is the stdlib's and rightly still lists them"
    ),
    "test.test_fork1.ForkTest.test_threaded_import_lock_fork": (
        "fork() waits for the interpreter's import lock only when another OS thread "
        "holds it: the lock is owned per OS thread and re-entrant, so a green thread "
        "holding it (imp.acquire_lock) does not delay a fork by the main greenlet of the "
        "same OS thread, and greenwire cannot tell which greenlet holds it to wait for "
        "it, so the child sees the module half-imported"
    ),
}

#: gevent's list, on top of GREENLETS: only what would otherwise hang the run.
GEVENT: dict[str, str] = {}


def _vsock_loopback_missing() -> bool:
    """True if this host has ``/dev/vsock`` but no loopback transport for it.

    test_socket runs its AF_VSOCK tests when ``/dev/vsock`` answers; without a loopback
    transport the client's connect fails (ENODEV) and the server's accept() waits for
    ever, unpatched too.
    """
    import _socket
    import fcntl
    import struct

    request = getattr(_socket, "IOCTL_VM_SOCKETS_GET_LOCAL_CID", None)
    if request is None or not hasattr(_socket, "AF_VSOCK"):
        return False
    try:
        with open("/dev/vsock", "rb") as device:
            cid = struct.unpack("I", fcntl.ioctl(device, request, b"    "))[0]
    except OSError:
        return False  # test_socket skips its vsock tests itself
    probe = _socket.socket(_socket.AF_VSOCK, _socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        return probe.connect_ex((cid, 0xFFFF)) == errno.ENODEV
    finally:
        probe.close()


def host_skips() -> dict[str, str]:
    """Tests that cannot work on this machine, for every implementation alike."""
    found: dict[str, str] = {}
    if _vsock_loopback_missing():
        found["test.test_socket.ThreadedVSOCKSocket*"] = (
            "this host has /dev/vsock but no vsock loopback transport: the client's "
            "connect() fails with ENODEV and the server's accept() waits forever, "
            "unpatched too"
        )
    return found


def for_impl(impl: str) -> dict[str, str]:
    """Every skip that applies under ``impl`` (``greenwire``, ``gevent`` or ``none``)."""
    listed = host_skips()
    if impl in ("greenwire", "gevent"):
        listed.update(GREENLETS)
    listed.update({"greenwire": GREENWIRE, "gevent": GEVENT}.get(impl, {}))
    return listed
