"""Logging setup, with secrets redacted from every record.

API keys reach us through the environment or configuration; whatever prints them
by accident (an exception from an SDK, a repr of a config) goes through the
:class:`RedactingFilter` first.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

_SECRET_ENV = re.compile(r"(API_KEY|_TOKEN|SECRET|PASSWORD|SIGNING_KEY)$")
_KEY_PATTERNS = (re.compile(r"sk-[A-Za-z0-9_\-]{8,}"), re.compile(r"(?i)bearer\s+[A-Za-z0-9._\-]{8,}"))
REDACTED = "[REDACTED]"


class _Secrets:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()

    def add(self, value: str | None) -> None:
        if value and len(value) >= 6:
            with self._lock:
                self._values.add(value)

    def from_environ(self) -> None:
        for name, value in os.environ.items():
            if _SECRET_ENV.search(name):
                self.add(value)

    def redact(self, text: str) -> str:
        for value in sorted(self._values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, REDACTED)
        for pattern in _KEY_PATTERNS:
            text = pattern.sub(REDACTED, text)
        return text


secrets = _Secrets()


def redact(text: str) -> str:
    """Remove every known secret (and anything shaped like an API key) from ``text``."""
    return secrets.redact(text)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = secrets.redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = secrets.redact(exc_text)
            record.exc_info = None
        if clean != message or record.args:
            record.msg, record.args = clean, None
        return True


def setup_logging(level: str = "INFO") -> None:
    """Plain timestamped lines on stderr (good for containers), secrets redacted."""
    secrets.from_environ()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiokafka logs every connection hiccup at ERROR; our own lines say what matters.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
