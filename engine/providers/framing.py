"""Splitting a streamed reply body into events: Server-Sent Events or NDJSON lines.

Sans-IO: `EventReader.feed` takes raw (already content-decoded) bytes as they
arrive and returns the complete events in them; `EventReader.close` is called at the
end of the body and returns what was still pending. Two rules the providers' own SDKs
follow and a reader of real traffic needs:

- the text is UTF-8, read strictly: a byte sequence that is not UTF-8 is
  ``malformed_response`` (streamed or not, the same bytes read the same way), while a
  character split across two network chunks is of course fine;
- an event whose closing blank line never came (the connection ended right after it) is
  still an event: at the end of the body it is handed over, as the SDKs do.

SSE follows the WHATWG rules: lines end in CR, LF or CRLF (a CR at the end of one chunk
may be followed by its LF in the next); ``event`` and ``data`` fields (several ``data``
lines join with LF); lines starting with ``:`` are comments (keep-alives); an event with
no data is not dispatched.
"""

from __future__ import annotations

import codecs
import re
from typing import Final, Literal

from engine.errors import ProviderError

__all__ = ["Event", "EventReader", "Framing"]

Framing = Literal["sse", "ndjson"]
#: (event name, data): the SSE event name ("" when none or "message"), or "" for NDJSON.
Event = tuple[str, str]

#: A single line (or event) longer than this is not a stream this engine reads.
MAX_LINE: Final = 4 * 1024 * 1024
# Only CR, LF and CRLF end a line (not U+2028 and the others str.splitlines knows: JSON
# strings may hold those).
_LINE_END: Final = re.compile(r"\r\n|\r|\n")


class EventReader:
    """Reads one streamed body, chunk by chunk, into events."""

    def __init__(self, framing: Framing, provider: str = "") -> None:
        self.framing = framing
        self.provider = provider
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._buffer = ""
        self._cr = False  # the last chunk ended in CR: a LF starting the next one is its pair
        self._event = ""
        self._data: list[str] = []
        self._pending = 0  # characters of the event being collected

    def _text(self, data: bytes, final: bool) -> str:
        try:
            return self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise ProviderError(
                f"{self.provider + ': ' if self.provider else ''}the stream is not valid "
                f"UTF-8 (byte {exc.start} of a chunk: {exc.reason})",
                code="malformed_response",
                provider=self.provider or None,
            ) from None

    def _too_long(self) -> ProviderError:
        return ProviderError(
            f"{self.provider + ': ' if self.provider else ''}a stream line is longer than "
            f"{MAX_LINE} characters",
            code="malformed_response",
            provider=self.provider or None,
        )

    def feed(self, data: bytes) -> list[Event]:
        """The events completed by the next chunk of the body."""
        text = self._text(data, False)
        if not text:
            return []
        if self._cr and text.startswith("\n"):
            text = text[1:]
        self._cr = text.endswith("\r")
        whole = self._buffer + text
        # Most streams end their lines with LF alone: str.split is then the same split.
        lines = whole.split("\n") if "\r" not in whole else _LINE_END.split(whole)
        self._buffer = lines.pop()  # the unfinished last line ("" after a line end)
        if len(self._buffer) > MAX_LINE:
            raise self._too_long()
        events: list[Event] = []
        if self.framing != "sse":
            for line in lines:
                self._line(line, events)
            return events
        for line in lines:
            # The usual SSE lines, "data: ..." and the blank line ending an event, are read
            # here (as _line reads them); anything else goes to _line. Runs once per line.
            if not line:
                if self._data:
                    self._dispatch(events)
                else:
                    self._event = ""
            elif line.startswith("data: "):
                value = line[6:]
                self._data.append(value)
                self._pending += len(value)
                if self._pending > MAX_LINE:
                    raise self._too_long()
            else:
                self._line(line, events)
        return events

    def close(self) -> list[Event]:
        """The events still pending when the body ended (raises ``malformed_response`` if
        the body ended inside a UTF-8 character)."""
        events: list[Event] = []
        tail = self._buffer + self._text(b"", True)
        self._buffer = ""
        if tail:
            self._line(tail, events)
        if self.framing == "sse":
            self._dispatch(events)
        return events

    def _line(self, line: str, events: list[Event]) -> None:
        if self.framing == "ndjson":
            if line.strip():
                events.append(("", line))
            return
        if not line:
            self._dispatch(events)
            return
        if line.startswith(":"):
            return  # a comment: a keep-alive
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._pending += len(value)
            if self._pending > MAX_LINE:
                raise self._too_long()
        elif name == "event":
            self._event = value
        # "id" and "retry" mean nothing to a single request's stream; others are ignored.

    def _dispatch(self, events: list[Event]) -> None:
        if self._data:
            name = "" if self._event == "message" else self._event
            events.append((name, "\n".join(self._data)))
        self._event, self._data, self._pending = "", [], 0
