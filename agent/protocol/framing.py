"""NETCONF message framing over SSH (RFC 6242 §4), sans-IO.

A :class:`Framer` turns received bytes into complete messages and frames outgoing
messages. It does no I/O: the caller ``feed()``s whatever arrived and then drains
``next_message()`` until it returns ``None`` (as with h11's ``receive_data`` /
``next_event``).

Two framings:

* end-of-message (base:1.0, and always for ``<hello>``): ``<message>]]>]]>``
* chunked (base:1.1): ``\\n#<len>\\n<data>`` repeated, then ``\\n##\\n``

Every session starts in EOM mode. Once both hellos advertised base:1.1 the
caller extracts the peer's hello and calls :meth:`Framer.set_chunked`; bytes that
were already fed but not consumed are then parsed as chunked. For this reason the
EOM reader never looks past the first complete message it has not handed out.

A :class:`FramingError` means the byte stream can no longer be trusted (RFC 6242
§4.2: the session must be terminated); once raised, the framer keeps raising it.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

EOM = b"]]>]]>"
END_OF_CHUNKS = b"\n##\n"
MAX_CHUNK_SIZE = 4294967295
_MAX_DIGITS = len(str(MAX_CHUNK_SIZE))  # 10
# "\n#" + up to 10 digits + "\n": the LF closing a chunk header lies before this offset.
_MAX_HEADER = 2 + _MAX_DIGITS + 1
_LF = 0x0A
_HASH = 0x23
_ZERO = 0x30
# Compact the receive buffer once this many consumed bytes sit at its front.
_COMPACT_AT = 1 << 16

Mode = Literal["eom", "chunked"]


class FramingError(Exception):
    """The peer broke RFC 6242 framing (bad chunk header, stray bytes, ...)."""


class MessageTooLarge(FramingError):
    """A message grew beyond ``max_message_size``."""


class Framer:
    """Sans-IO NETCONF framer for one direction pair of one session."""

    def __init__(self, max_message_size: int = 16 * 2**20) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self.max_message_size = max_message_size
        self.mode: Mode = "eom"
        self._buf = bytearray()
        self._pos = 0  # start of the unconsumed bytes in _buf
        self._error: FramingError | None = None
        # EOM reader
        self._scan = 0  # resume the delimiter search here (absolute offset in _buf)
        self._eom_end = -1  # offset of the delimiter ending the next message, if found
        # chunked reader
        self._ready: deque[bytes] = deque()
        self._msg = bytearray()  # chunks of the message being received
        self._in_msg = False  # at least one chunk header of the current message seen
        self._remaining = 0  # bytes of the current chunk still to come

    # -- receiving ---------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes. Raises :class:`FramingError` on a protocol violation."""
        if self._error is not None:
            raise self._error
        if not data:
            return
        self._buf += data
        try:
            if self.mode == "chunked":
                self._parse_chunked()
            elif self._eom_end < 0:
                self._find_eom()
        except FramingError as exc:
            self._error = exc
            raise

    def next_message(self) -> bytes | None:
        """Return the next complete message, or ``None`` if more data is needed.

        May raise :class:`FramingError` for data that followed an already
        complete message in the same ``feed()``.
        """
        if self._error is not None:
            raise self._error
        try:
            if self.mode == "chunked":
                if not self._ready:
                    self._parse_chunked()
                return self._ready.popleft() if self._ready else None
            return self._next_eom()
        except FramingError as exc:
            self._error = exc
            raise

    def set_chunked(self) -> None:
        """Switch to chunked framing; unconsumed bytes are re-read as chunked."""
        if self.mode == "chunked":
            return
        self.mode = "chunked"
        self._eom_end = -1
        self._scan = self._pos

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as (part of) a message."""
        return len(self._buf) - self._pos + len(self._msg)

    # -- sending -----------------------------------------------------------------

    def encode(self, message: bytes | bytearray | memoryview) -> bytes:
        """Frame one outgoing message in the current mode."""
        if self.mode == "eom":
            return bytes(message) + EOM
        n = len(message)
        if n == 0:
            raise ValueError("chunked framing cannot carry an empty message")
        if n <= MAX_CHUNK_SIZE:
            return b"".join((b"\n#%d\n" % n, message, END_OF_CHUNKS))
        view = memoryview(message)
        parts: list[bytes | memoryview] = []
        for start in range(0, n, MAX_CHUNK_SIZE):
            piece = view[start : start + MAX_CHUNK_SIZE]
            parts += (b"\n#%d\n" % len(piece), piece)
        parts.append(END_OF_CHUNKS)
        return b"".join(parts)

    # -- EOM reader ----------------------------------------------------------------

    def _find_eom(self) -> None:
        """Look for the delimiter ending the next message, searching new bytes only."""
        buf = self._buf
        idx = buf.find(EOM, self._scan)
        if idx >= 0:
            if idx - self._pos > self.max_message_size:
                raise MessageTooLarge(f"message exceeds {self.max_message_size} bytes")
            self._eom_end = idx
            return
        end = len(buf)
        # The last 5 bytes may be the start of a delimiter split across feeds.
        self._scan = max(self._pos, end - (len(EOM) - 1))
        pending = end - self._pos
        if pending > self.max_message_size:
            pending -= _partial_delimiter(buf, pending)
            if pending > self.max_message_size:
                raise MessageTooLarge(f"message exceeds {self.max_message_size} bytes")

    def _next_eom(self) -> bytes | None:
        if self._eom_end < 0:
            self._find_eom()
            if self._eom_end < 0:
                return None
        with memoryview(self._buf) as view:
            msg = bytes(view[self._pos : self._eom_end])
        self._pos = self._scan = self._eom_end + len(EOM)
        self._eom_end = -1
        self._compact()
        return msg

    # -- chunked reader ------------------------------------------------------------

    def _parse_chunked(self) -> None:
        buf = self._buf
        end = len(buf)
        pos = self._pos
        ready = self._ready
        limit = self.max_message_size
        try:
            with memoryview(buf) as view:
                while pos < end:
                    if self._remaining:
                        take = min(self._remaining, end - pos)
                        self._msg += view[pos : pos + take]
                        pos += take
                        self._remaining -= take
                        continue
                    # A chunk header or end-of-chunks marker starts here.
                    if buf[pos] != _LF:
                        raise FramingError(f"expected LF at chunk header, got {_show(buf, pos)}")
                    if end - pos < 3:
                        if end - pos == 2 and buf[pos + 1] != _HASH:
                            raise FramingError(
                                f"expected '#' in chunk header, got {_show(buf, pos + 1)}"
                            )
                        break
                    if buf[pos + 1] != _HASH:
                        raise FramingError(
                            f"expected '#' in chunk header, got {_show(buf, pos + 1)}"
                        )
                    if buf[pos + 2] == _HASH:  # end-of-chunks
                        if end - pos < 4:
                            break
                        if buf[pos + 3] != _LF:
                            raise FramingError("expected LF after end-of-chunks '##'")
                        if not self._in_msg:
                            raise FramingError("end-of-chunks without a preceding chunk")
                        ready.append(bytes(self._msg))
                        self._msg = bytearray()
                        self._in_msg = False
                        pos += 4
                        continue
                    lf = buf.find(b"\n", pos + 2, pos + _MAX_HEADER)
                    if lf < 0:
                        _check_partial_size(buf[pos + 2 : min(end, pos + _MAX_HEADER)])
                        break
                    size = _chunk_size(buf[pos + 2 : lf])
                    if len(self._msg) + size > limit:
                        raise MessageTooLarge(f"message exceeds {limit} bytes")
                    pos = lf + 1
                    self._in_msg = True
                    # Fast path: a whole one-chunk message is already here.
                    stop = pos + size
                    if not self._msg and stop + 4 <= end and buf[stop : stop + 4] == END_OF_CHUNKS:
                        ready.append(bytes(view[pos:stop]))
                        self._in_msg = False
                        pos = stop + 4
                    else:
                        self._remaining = size
        finally:
            self._pos = pos
            self._compact()

    # -- buffer --------------------------------------------------------------------

    def _compact(self) -> None:
        pos = self._pos
        if pos == len(self._buf):
            self._buf.clear()
        elif pos >= _COMPACT_AT and pos * 2 >= len(self._buf):
            del self._buf[:pos]
        else:
            return
        self._pos = 0
        self._scan -= pos
        if self._eom_end >= 0:
            self._eom_end -= pos


def _chunk_size(digits: bytes | bytearray) -> int:
    """Validate ``1*DIGIT`` of a chunk header: 1..4294967295, no leading zero."""
    if not digits or not digits.isdigit() or digits[0] == _ZERO:
        raise FramingError(f"invalid chunk size {bytes(digits)!r}")
    size = int(digits)
    if size > MAX_CHUNK_SIZE:
        raise FramingError(f"chunk size {size} exceeds {MAX_CHUNK_SIZE}")
    return size


def _check_partial_size(partial: bytes | bytearray) -> None:
    """Reject a chunk header that cannot become valid, before its LF arrives."""
    if len(partial) >= _MAX_HEADER - 2:
        raise FramingError(f"chunk header {bytes(partial)!r} has no LF")
    if partial and (not partial.isdigit() or partial[0] == _ZERO):
        raise FramingError(f"invalid chunk size {bytes(partial)!r}")
    if len(partial) == _MAX_DIGITS and int(partial) > MAX_CHUNK_SIZE:
        raise FramingError(f"chunk size {bytes(partial)!r} exceeds {MAX_CHUNK_SIZE}")


def _partial_delimiter(buf: bytearray, pending: int) -> int:
    """Length of the longest prefix of ``]]>]]>`` that the last ``pending`` bytes end with."""
    for n in range(min(len(EOM) - 1, pending), 0, -1):
        if buf.endswith(EOM[:n]):
            return n
    return 0


def _show(buf: bytearray, pos: int) -> str:
    return repr(bytes(buf[pos : pos + 16]))
