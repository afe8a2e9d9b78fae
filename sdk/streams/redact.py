"""Keep credentials out of everything vireid writes: logs, events, reports, exceptions, `repr`.

Camera URLs often carry `user:password@` (RTSP, HTTP MJPEG). `redact(text)` replaces the user-info part
of every URL in a text with `***`, so the host and path stay visible for debugging while the secret
never leaves the process. Sources keep the real address only to open the stream.
"""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s]+)@")


def redact(text: str) -> str:
    """`text` with the `user[:password]@` of every URL replaced by `***@`."""
    return _USERINFO.sub(r"\g<scheme>***@", str(text))


def has_credentials(url: str) -> bool:
    """True when `url` carries user-info (a user name or a password)."""
    return bool(_USERINFO.search(str(url)))
