"""Text from data made safe to print on a terminal.

Names and texts in a project come from outside files: an annotator called "\\x1b[31mbob" would
turn a terminal red, a carriage return would overwrite the line before it, and a right-to-left
override would reorder what follows. Everything the CLI prints that holds data goes through
`for_terminal`, which writes such characters as visible escapes instead.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def for_terminal(text: object, *, keep_newlines: bool = False) -> str:
    """`text` with every character a terminal would act on (control characters, format characters
    such as bidirectional overrides) written as an escape (\\x1b, \\u202e); `keep_newlines` keeps
    line breaks of a multi-line message."""
    text = str(text)
    if text.isprintable():  # the usual case: nothing to do, at C speed
        return text
    out = []
    for ch in text:
        if ch.isprintable() or (keep_newlines and ch == "\n"):
            out.append(ch)
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)
