"""Keep credentials out of everything vireid writes: logs, events, reports, exceptions, `repr`.

Camera URLs often carry `user:password@` (RTSP, HTTP MJPEG), and many IP cameras take credentials in
the query instead (`?user=admin&pwd=...`, `&token=...`), and GStreamer pipelines in element
properties (`rtspsrc user-id=admin user-pw=...`). `redact(text)` replaces the user-info part of
every URL in a text, and the values of query parameters named like a credential, with `***`, so the
host and path stay visible for debugging while the secret never leaves the process. Sources keep the
real address only to open the stream.
"""

from __future__ import annotations

import logging
import re

# user-info up to the last `@` before the first `/`: a password with an unescaped `#`, `?` or `@` (which
# FFmpeg then fails to open, so the whole address lands in an error message) is covered too
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s]+)@")


# `?user=...&pwd=...`, and the path-style credentials of some cameras (`/user=admin_password=..._channel=1`)
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;/_](?:[a-z0-9_.-]*(?:pas|pwd|psw|token|secret|auth|signature|cred)[a-z0-9_.-]*"
    r"|[a-z0-9_.-]*key|user|username|login|loginuse|account|usr|u|p|pw|sig|session|sessionid))"
    r"=(?P<value>[^&#\s]*)",
    re.IGNORECASE,
)

# GStreamer element properties are space-separated `name=value` (`rtspsrc user-id=admin user-pw=...`,
# `souphttpsrc proxy-pw=...`, `srtsrc passphrase=...`), values optionally quoted.
_SECRET_PROPERTY = re.compile(
    r"(?<![^\s!,;\"'])"  # a property starts the text or follows a separator or a quote
    r"(?P<key>[a-z0-9_-]*(?:pass|pwd|-pw|token|secret|auth|cred)[a-z0-9_-]*|user-id|proxy-id|user|username"
    r"|login)\s*=\s*"
    r"(?P<value>(?:\([a-z0-9_]+\))?"  # a GStreamer type cast: (string)
    r"(?:\"(?:[^\"\\]|\\.)*\""  # "quoted, \" escapes kept inside"
    r"|\\\"(?:[^\"\\]|\\.)*?\\\""  # \"quoted inside a quoted value\"
    r"|'[^']*'|[^\s!,;\"']+))",  # 'quoted' or bare
    re.IGNORECASE,
)


_SECRETS: set[str] = set()  # literal values registered with `register_secret`
_SHORTEST_SECRET = 4  # shorter values would blank out ordinary words and numbers everywhere


def register_secret(value: str) -> None:
    """Redact `value` literally from now on, wherever it appears (e.g. a camera password a `--source`
    took from the environment, which the patterns below may not recognise in its place). Values
    shorter than 4 characters are not registered."""
    if len(value) >= _SHORTEST_SECRET:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` with every registered secret and the `user[:password]@` of every URL replaced by
    `***(@)`, the values of credential-like query parameters (`pwd=`, `password=`, `token=`, `user=`...)
    and of GStreamer properties (`user-id=`, `user-pw=`, `passphrase=`...) by `***`."""
    text = str(text)
    for secret in sorted(_SECRETS, key=len, reverse=True):  # a longer secret before one inside it
        text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    text = _SECRET_QUERY.sub(lambda m: f"{m['key']}=***" if m["value"] else m[0], text)
    return _SECRET_PROPERTY.sub(lambda m: f"{m['key']}=***", text)


class RedactingFilter(logging.Filter):
    """Redacts every record of the `vireid` logger, its traceback included (an exception from OpenCV or
    FFmpeg may quote the address it failed on)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_redaction(logger: logging.Logger | None = None) -> None:
    """Add `RedactingFilter` to the `vireid` logger (once)."""
    logger = logger or logging.getLogger("vireid")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())


def has_credentials(url: str) -> bool:
    """True when `url` carries user-info or a credential-like query parameter."""
    return redact(str(url)) != str(url)
