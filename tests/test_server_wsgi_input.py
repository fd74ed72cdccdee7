"""wsgi.input: a file over the request body, pulled piece by piece."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from greenwire.server._wsgi_input import EMPTY_INPUT, WSGIInput


def source(*pieces: bytes) -> tuple[Callable[[], bytes], list[int]]:
    """A pull function handing out ``pieces`` then b"", and a count of its calls."""
    remaining = list(pieces)
    calls = [0]

    def pull() -> bytes:
        calls[0] += 1
        return remaining.pop(0) if remaining else b""

    return pull, calls


def test_read_all() -> None:
    stream = WSGIInput(source(b"ab", b"cd", b"e")[0])
    assert stream.read() == b"abcde"
    assert stream.done and stream.read() == b"" and stream.read(5) == b""


def test_read_sized_fills_across_pieces_and_keeps_the_rest() -> None:
    stream = WSGIInput(source(b"ab", b"cdef", b"g")[0])
    assert stream.read(3) == b"abc"
    assert stream.read(None) == b"defg"


def test_read_of_exactly_one_piece_returns_it_without_copy() -> None:
    piece = b"x" * 100
    stream = WSGIInput(source(piece)[0])
    assert stream.read(100) is piece


def test_reads_pull_only_what_they_need() -> None:
    pull, calls = source(b"abc", b"def")
    stream = WSGIInput(pull)
    assert stream.read(2) == b"ab"
    assert calls[0] == 1
    assert stream.read(1) == b"c"
    assert calls[0] == 1


def test_read_zero() -> None:
    pull, calls = source(b"abc")
    assert WSGIInput(pull).read(0) == b""
    assert calls[0] == 0


def test_readline_and_iteration() -> None:
    stream = WSGIInput(source(b"one\ntw", b"o\nthr", b"ee")[0])
    assert stream.readline() == b"one\n"
    assert list(stream) == [b"two\n", b"three"]


def test_readline_with_limit() -> None:
    stream = WSGIInput(source(b"abcdef\n")[0])
    assert stream.readline(4) == b"abcd"
    assert stream.readline(10) == b"ef\n"
    assert stream.readline() == b""


def test_readlines_with_hint() -> None:
    assert WSGIInput(source(b"a\nb\nc\n")[0]).readlines() == [b"a\n", b"b\n", b"c\n"]
    assert WSGIInput(source(b"a\nb\nc\n")[0]).readlines(3) == [b"a\n", b"b\n"]


def test_read1_returns_what_is_there() -> None:
    stream = WSGIInput(source(b"abc", b"def")[0])
    assert stream.read1(2) == b"ab"
    assert stream.read1() == b"c"
    assert stream.read1() == b"def"
    assert stream.read1() == b""


def test_discard_respects_its_limit() -> None:
    assert WSGIInput(source(b"a" * 10, b"b" * 10)[0]).discard(20)
    stream = WSGIInput(source(b"a" * 10, b"b" * 10, b"c")[0])
    assert not stream.discard(15)
    assert not stream.done


def test_errors_from_the_source_reach_the_reader() -> None:
    def pull() -> bytes:
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError):
        WSGIInput(pull).read()


def test_empty_input_is_always_at_its_end() -> None:
    assert EMPTY_INPUT.read() == b"" and EMPTY_INPUT.read(10) == b""
    assert EMPTY_INPUT.readline() == b"" and EMPTY_INPUT.readlines() == []
    assert list(EMPTY_INPUT) == [] and EMPTY_INPUT.read1() == b""
    assert EMPTY_INPUT.done and EMPTY_INPUT.discard(0)
