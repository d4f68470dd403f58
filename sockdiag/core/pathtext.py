"""PURE: socket names and paths (bytes to the kernel) <-> one lossless, printable text form.

The rule (the same for the text table and for JSON, so a name read from either gives back the
kernel's exact bytes):

  * the bytes are read as UTF-8;
  * every printable character is itself, except the backslash, which is written `\\\\`;
  * every other byte is written `\\xNN` (two lower-case hex digits): bytes that are not valid
    UTF-8, and each byte of a character that is not printable (str.isprintable() is False:
    control characters such as \\n and \\x1c, DEL, C1 controls, format characters such as
    U+202E RIGHT-TO-LEFT OVERRIDE, line/paragraph separators, non-space blanks, unassigned).

So the text never holds a control character, a newline or an invisible character, and
`\\xNN` always means the byte NN: `path_bytes` reverses `path_text` exactly, and only texts
that `path_text` can produce are accepted by it (one text per name).

Unix socket names (`unix_name_text`) add one rule on top, as ss does: an abstract name (its
first byte is NUL) is `@` and the rest; a filesystem path that itself starts with `@` has that
`@` written `\\x40`, so the two never look alike.
"""

from __future__ import annotations

_HEX = "0123456789abcdef"


def path_text(raw: bytes) -> str:
    """Bytes -> the lossless printable text described above (`b'a\\nb'` -> `'a\\\\x0ab'`)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable() and "\\" not in text:
        return text  # the common case: nothing to escape
    out = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        if ch == "\\":
            out.append("\\\\")
        elif "\udc80" <= ch <= "\udcff":  # a byte that is not UTF-8
            out.append("\\x%02x" % (ord(ch) - 0xDC00))
        elif ch.isprintable():
            out.append(ch)
        else:
            out.extend("\\x%02x" % b for b in ch.encode("utf-8"))
    return "".join(out)


def path_bytes(text: str) -> bytes:
    """The inverse of path_text. ValueError for a text path_text never produces (a lone `\\`,
    `\\X`, upper-case hex, or a character path_text would have escaped)."""
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "\\":
            if not ch.isprintable():
                raise ValueError(f"unescaped non-printable character at {i}: {ch!r}")
            out += ch.encode("utf-8")  # a surrogate is not printable, so this cannot fail
            i += 1
            continue
        nxt = text[i + 1:i + 2]
        if nxt == "\\":
            out.append(0x5C)
            i += 2
        elif nxt == "x" and len(text) >= i + 4 and text[i + 2] in _HEX and text[i + 3] in _HEX:
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            raise ValueError(f"bad escape at {i}: {text[i:i + 4]!r}")
    raw = bytes(out)
    if path_text(raw) != text:  # e.g. `\x41` for `A`: not the one canonical text of these bytes
        raise ValueError(f"not a canonical path text: {text!r}")
    return raw


def unix_name_text(name: bytes) -> str:
    """A unix socket name -> text: abstract (leading NUL) as `@rest`, a path starting with `@`
    as `\\x40...`, everything through path_text. An unnamed socket (b'') is ''."""
    if name[:1] == b"\0":
        return "@" + path_text(name[1:])
    text = path_text(name)
    return "\\x40" + text[1:] if text[:1] == "@" else text


def unix_name_bytes(text: str) -> bytes:
    """The inverse of unix_name_text (ValueError for a text it never produces)."""
    if text[:1] == "@":
        raw = b"\0" + path_bytes(text[1:])
    elif text[:4] == "\\x40":
        raw = b"@" + path_bytes(text[4:])  # path_text(b"@" + t) is "@" + path_text(t)
    else:
        raw = path_bytes(text)
    if unix_name_text(raw) != text:  # "\\x00..." spells an abstract name the long way
        raise ValueError(f"not a canonical unix name text: {text!r}")
    return raw
