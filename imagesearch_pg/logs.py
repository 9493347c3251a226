"""Structured, quiet-by-default logging: one line per record, `key=value` pairs from ``extra``."""

from __future__ import annotations

import logging
import threading
import time

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        line = f"{self.formatTime(record)} level={record.levelname.lower()} logger={record.name} msg={record.getMessage()!r}"
        line += "".join(f" {k}={v!r}" if isinstance(v, str) else f" {k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class Every:
    """True at most once per ``seconds``: for a condition that repeats on every request (the database is down),
    one log line now and then rather than one per request."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._next = 0.0
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                return False
            self._next = now + self.seconds
            return True


def configure(verbosity: int = 0) -> None:
    """WARNING by default; -v INFO; -vv DEBUG. Third-party chatter stays at WARNING."""
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("imagesearch_pg").setLevel([logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)])
    logging.getLogger("flask_app").setLevel([logging.WARNING, logging.INFO, logging.DEBUG][min(verbosity, 2)])
