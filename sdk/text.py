"""Text that reaches a terminal, a log or a file name: what counts as invisible, and how it is shown.

Names, camera labels and model-card fields come from users, databases and downloaded files; a control
character in one (`\\x1b[2J`, `\\r`, a newline) would clear a terminal, overwrite a printed line or
forge a log line. New text with such characters is refused where it enters (identity names, cameras,
card fields); text that is already stored is shown escaped.
"""

from __future__ import annotations

import unicodedata

INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
"""Control, format (zero-width, bidi overrides), line and paragraph separators, and lone surrogates
(undecodable bytes of a file name, which OpenCV and SQLite cannot take)."""
JOINERS = frozenset({"\u200c", "\u200d"})
"""Zero-width non-joiner and joiner: format characters that Persian and Indic names need."""


def has_invisible(text: str) -> bool:
    """Whether `text` holds a character of `INVISIBLE` (the joiners excepted)."""
    return any(unicodedata.category(c) in INVISIBLE and c not in JOINERS for c in text)


def printable(text: object) -> str:
    """`text` as is when it shows as written, else its Python `repr` (escapes visible, quotes added)."""
    value = str(text)
    return repr(value) if has_invisible(value) else value
