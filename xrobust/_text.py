"""Text from elsewhere (a server's answer, a file), made safe to show on a terminal.

:func:`clean_for_terminal` is the one place that does it: escape sequences (ANSI CSI, OSC,
other ESC sequences and their 8-bit forms), control characters, NULs, bidirectional-text
overrides and surrogates are removed; runs of white space become one space (or, with
``oneline=False``, line breaks are kept and other white space is collapsed); long text is
cut to ``limit`` characters with the count of what was left out; bytes that are not text
(not UTF-8, or mostly unprintable) are shown as their size and content type only.

>>> clean_for_terminal("\\x1b[2K\\r\\x1b[32maudit passed\\x1b[0m\\x00 ok")
'audit passed ok'
>>> clean_for_terminal("x" * 310, limit=300)[-23:]
'x… (10 more characters)'
>>> clean_for_terminal(b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR\\x00", content_type="image/png")
'<binary, 17 bytes, image/png>'
"""

from __future__ import annotations

import re

__all__ = ["as_text", "binary_summary", "clean_for_terminal"]

_LIMIT = 300

# ESC [ ... final (CSI), ESC ] ... BEL / ESC \ (OSC), ESC P/X/^/_ ... ESC \ (DCS, SOS, PM,
# APC), ESC followed by one more character, and the 8-bit forms (U+009B CSI, U+009D OSC,
# U+0090 DCS, ...). An unterminated string sequence runs to the end of the text.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|$)"
    r"|\x1b[ -/]*[0-~]?",
    re.S,
)
# What is left after the sequences: C0 and C1 controls (except white space), DEL,
# bidirectional embeddings / overrides / isolates (text that reads differently from how it
# is stored), and lone surrogates.
_CONTROLS = re.compile(
    "[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_SPACE = re.compile(r"\s+")
_SPACE_NO_BREAK = re.compile(r"[^\S\n]+")


def clean_for_terminal(
    text: str | bytes | bytearray,
    limit: int | None = _LIMIT,
    *,
    oneline: bool = True,
    content_type: str | None = None,
) -> str:
    """``text`` without escape sequences or control characters, at most ``limit`` characters.

    Args:
        text: the text, or bytes (decoded as UTF-8; bytes that are not text are shown as
            ``<binary, N bytes[, content_type]>``).
        limit: the most characters kept (None: no cut); the rest is replaced by
            ``… (N more characters)``.
        oneline: every run of white space becomes one space (else line breaks are kept).
        content_type: what the bytes claim to be, shown for binary data.

    Returns:
        The cleaned text (stripped of leading and trailing white space).
    """
    if isinstance(text, bytes | bytearray):
        decoded = as_text(text)
        if decoded is None:
            return binary_summary(len(text), content_type)
        text = decoded
    else:
        text = str(text)
    text = _ESCAPES.sub("", text)
    text = _CONTROLS.sub("", text)
    if oneline:
        text = _SPACE.sub(" ", text)
    else:
        text = _SPACE_NO_BREAK.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
        text = re.sub(r" ?\n ?", "\n", text)
    text = text.strip()
    if limit is not None and len(text) > limit:
        more = len(text) - limit
        text = f"{text[:limit]}… ({more} more character{'s' if more != 1 else ''})"
    return text


def as_text(data: bytes | bytearray, *, cut: bool = False) -> str | None:
    """``data`` decoded as UTF-8, or None when it is not text (not UTF-8, or more than one
    character in four a control character other than white space or ESC). With ``cut``, ``data`` is a prefix of something
    longer: a character split at its end is dropped."""
    data = bytes(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if not (cut and exc.start >= len(data) - 3 and exc.reason == "unexpected end of data"):
            return None
        text = data[: exc.start].decode("utf-8", "strict")
    return None if _mostly_unprintable(text) else text


def binary_summary(size: int, content_type: str | None = None) -> str:
    """How binary data is shown: ``<binary, N bytes, content/type>``."""
    kind = clean_for_terminal(content_type, 60) if content_type else ""
    return f"<binary, {size} byte{'s' if size != 1 else ''}{', ' + kind if kind else ''}>"


def _mostly_unprintable(text: str) -> bool:
    """More than one character in four is a control character (white space and ESC aside:
    text with escape sequences is text to clean, not binary data)."""
    if not text:
        return False
    sample = text[:4096]
    bad = sum(1 for c in sample if (c < " " and c not in "\t\n\r\x1b") or "\x7f" <= c <= "\x9f")
    return bad * 4 > len(sample)
