"""Splitting streamed bodies into events: whatever the line endings, fields and chunk
boundaries, the reader gives the events the WHATWG rules give (checked against a plain
reading of those rules, written here line by line)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.providers.framing import EventReader


def reference(body: str) -> list[tuple[str, str]]:
    """The events of a whole SSE body, read by the rules in the plainest way."""
    events = []
    name, data = "", []
    for line in re.split(r"\r\n|\r|\n", body):
        if line == "":
            if data:
                events.append(("" if name == "message" else name, "\n".join(data)))
            name, data = "", []
            continue
        if line.startswith(":"):
            continue
        field, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    if data:  # the last event's blank line never came: still an event
        events.append(("" if name == "message" else name, "\n".join(data)))
    return events


def read(body: bytes, cuts: list[int]) -> list[tuple[str, str]]:
    reader = EventReader("sse")
    events = []
    start = 0
    for cut in sorted(set(cuts)):
        events += reader.feed(body[start:cut])
        start = cut
    events += reader.feed(body[start:])
    return events + reader.close()


_values = st.lists(st.sampled_from([*'ab {}":,[]é€', "data", "event", "[DONE]"]), max_size=8).map(
    "".join
)
_lines = st.one_of(
    st.builds(lambda v: f"data: {v}", _values),
    st.builds(lambda v: f"data:{v}", _values),
    st.builds(lambda v: f"event: {v}", st.sampled_from(["", "message", "delta", "error"])),
    st.builds(lambda v: f": {v}", _values),  # a comment
    st.builds(lambda v: f"id: {v}", _values),
    st.just("data"),
    st.just(""),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(_lines, max_size=25),
    ends=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1, max_size=3),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_sse_events_match_the_rules_whatever_the_chunks(lines, ends, cuts):
    body = "".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
    raw = body.encode()
    assert read(raw, cuts) == reference(body)


def test_usual_lf_stream_and_crlf_stream_read_alike():
    events = [f'data: {{"n": {i}}}' for i in range(5)]
    lf = "".join(f"{e}\n\n" for e in events) + "data: [DONE]\n\n"
    crlf = lf.replace("\n", "\r\n")
    assert read(lf.encode(), [3, 17, 40]) == read(crlf.encode(), [4, 18, 41]) == reference(lf)
    assert read(lf.encode(), [])[-1] == ("", "[DONE]")
