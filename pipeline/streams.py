"""A file's bytes as a stream of pieces: decompressed step by step, split into lines, counted and decoded
as they pass, so reading a file holds a piece of it, not the file.

A compressed stream that is cut or corrupt ends early, and says where (`Pieces.broken`), so the
records before the break are kept.
"""

import codecs
import io
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

CHUNK = 1 << 16  # compressed bytes per step: a corrupt step loses at most its own output
BLOCK = 1 << 20  # bytes per piece of an uncompressed file
WIDE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)  # UTF-32 LE starts like UTF-16 LE
NON_BLANK = re.compile(rb"[^\r\n]*[^\s][^\r\n]*")  # one match per line holding more than whitespace


def _decompressor(comp: str):
    """(new decompressor, the errors a corrupt stream raises) for .gz or .zst."""
    if comp == ".gz":
        return (lambda: zlib.decompressobj(16 + zlib.MAX_WBITS)), (zlib.error,)
    import zstandard

    return zstandard.ZstdDecompressor().decompressobj, (zstandard.ZstdError,)


def _filled(f, pending: bytes) -> bytes:
    """`pending` and, when it is shorter than a step, what follows it in `f`, up to a step."""
    while len(pending) < CHUNK:
        more = f.read(CHUNK)
        if not more:
            break
        pending += more
    return pending


def _rest_is_padding(f, pending: bytes) -> tuple[bool, bytes]:
    """Whether only NUL bytes (or nothing) follow a finished member, and the bytes read to know."""
    while not pending.strip(b"\x00"):
        more = f.read(CHUNK)
        if not more:
            return True, pending
        pending += more
    return False, pending


def inflate(f, comp: str, size: int):
    """Decompressed pieces of a .gz/.zst file object of `size` bytes, member after member, fed in CHUNK-byte steps
    from each member's start; a generator whose value is why the stream broke, or None."""
    new, errors = _decompressor(comp)
    pos, pending = 0, b""
    while True:
        padding, pending = _rest_is_padding(f, pending)
        if padding:
            return None
        d, start = new(), 0
        while True:
            pending = _filled(f, pending)
            if not pending:
                return f"{comp[1:]} stream cut short after {size} bytes (no end-of-stream marker)"
            step, pending = pending[:CHUNK], pending[CHUNK:]
            try:
                yield d.decompress(step)
            except errors as err:
                return f"corrupt {comp[1:]} data near byte {pos + start}: {err}"
            if d.eof:
                break
            start += CHUNK
        pending = d.unused_data + pending
        pos += start


class Pieces:
    """A file's decompressed bytes, piece by piece; iterate it again to read it again. After each full
    pass `broken` says why a compressed stream ended early (None when it did not)."""

    def __init__(self, path: Path, comp: str):
        self.path, self.comp, self.broken = path, comp, None

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as f:
            if self.comp:
                self.broken = yield from inflate(f, self.comp, self.path.stat().st_size)
            else:
                yield from iter(lambda: f.read(BLOCK), b"")


def head(pieces: Iterator[bytes], n: int) -> tuple[bytes, Iterator[bytes]]:
    """The first `n` bytes (fewer when the stream is shorter) and every piece, those bytes included."""
    got = []
    while sum(map(len, got)) < n:
        piece = next(pieces, None)
        if piece is None:
            break
        got.append(piece)
    first = b"".join(got)
    return first[:n], _chain([first], pieces)


def blocks(data: bytes | bytearray) -> Iterator[bytes]:
    """Bytes held whole, as BLOCK-byte pieces."""
    view = memoryview(data)
    yield from (bytes(view[i:i + BLOCK]) for i in range(0, len(data), BLOCK))


def _chain(first: list[bytes], rest: Iterator[bytes]) -> Iterator[bytes]:
    yield from (p for p in first if p)
    yield from rest


def lines(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Lines of a byte stream, as `bytes.splitlines` would split the whole (\\n, \\r\\n, \\r), one piece at a time:
    a line that runs past a piece, or a \\r that a \\n may follow, waits for the next piece."""
    carry: list[bytes] = []
    for piece in pieces:
        end = max(piece.rfind(b"\n"), piece.rfind(b"\r", 0, len(piece) - 1))
        if end < 0:
            carry.append(piece)
            continue
        yield from b"".join([*carry, piece[:end + 1]]).splitlines()
        carry = [piece[end + 1:]]
    yield from b"".join(carry).splitlines()


class NonBlank:
    """Pieces passed on as they are, counting the lines that hold more than whitespace (`lines`, complete after a
    full pass), as splitting the whole would. \\r and \\n each end a line here: the blank lines between do not count."""

    def __init__(self, pieces: Iterable[bytes]):
        self.pieces, self.lines = pieces, 0

    def __iter__(self) -> Iterator[bytes]:
        self.lines, carry = 0, []
        for piece in self.pieces:
            yield piece
            end = max(piece.rfind(b"\n"), piece.rfind(b"\r"))
            if end < 0:
                carry.append(piece)
            else:
                self.lines += len(NON_BLANK.findall(b"".join([*carry, piece[:end + 1]])))
                carry = [piece[end + 1:]]
        self.lines += len(NON_BLANK.findall(b"".join(carry)))


def decode(data: bytes, partial: bool = False) -> str:
    """UTF-8 (with or without BOM) or BOM-marked UTF-16/32; anything else raises UnicodeDecodeError.

    `partial` (a stream cut short) drops an incomplete character at the very end instead of failing.
    """
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        encoding = "utf-32"
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    else:
        encoding = "utf-8-sig"
    return codecs.getincrementaldecoder(encoding)().decode(data, final=not partial)


def after_bom(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The pieces without a leading UTF-8 BOM."""
    start, every = head(iter(pieces), len(codecs.BOM_UTF8))
    if start == codecs.BOM_UTF8:
        yield next(every)[len(codecs.BOM_UTF8):]
    yield from every


def utf8_error(pieces: Iterable[bytes], partial: Callable[[], bool]) -> UnicodeDecodeError | None:
    """What `decode(whole, partial())` of a UTF-8 stream would raise (positions after a BOM, as there), or None;
    `partial` is asked once the stream has ended (whether it was cut short is known only then)."""
    decoder, done = codecs.getincrementaldecoder("utf-8")(), 0
    for piece, final in _with_end(after_bom(pieces), partial):
        held = len(decoder.getstate()[0])  # bytes of an incomplete character the decoder keeps from the last piece
        try:
            decoder.decode(piece, final=final)
        except UnicodeDecodeError as err:
            return UnicodeDecodeError(err.encoding, err.object, done - held + err.start, done - held + err.end, err.reason)
        done += len(piece)
    return None


def _with_end(pieces: Iterator[bytes], partial: Callable[[], bool]) -> Iterator[tuple[bytes, bool]]:
    """(piece, False) for each piece, then (b"", not partial()): the decoder's last call."""
    yield from ((p, False) for p in pieces)
    yield b"", not partial()


class Reader(io.RawIOBase):
    """Pieces as a binary file object, for io.TextIOWrapper (csv reads text lines from one)."""

    def __init__(self, pieces: Iterable[bytes]):
        self._pieces, self._left = iter(pieces), memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._left:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            self._left = memoryview(piece)
        n = min(len(buffer), len(self._left))
        buffer[:n], self._left = self._left[:n], self._left[n:]
        return n


def text_stream(pieces: Iterable[bytes]) -> io.TextIOWrapper:
    """UTF-8 text (a BOM dropped) with newlines untranslated, as io.StringIO(text, newline='') reads it; the stream
    was checked with `utf8_error` first, so only an incomplete last character of a cut stream is dropped."""
    return io.TextIOWrapper(io.BufferedReader(Reader(pieces), BLOCK), encoding="utf-8-sig", errors="ignore", newline="")
