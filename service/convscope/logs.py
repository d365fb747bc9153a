"""Log lines that carry the request id of the call they were written for, as readable text or
one JSON object per line (``--log-format``), the same in the server and in its worker processes.

The server's interceptor sets the id for each call (``rpc/observability.py``); the worker pool
sends it with every request, and a worker sets it while it serves that request. A worker is
started with the server's level and format (``configured``).
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass

request_id: ContextVar[str] = ContextVar("convscope_request_id", default="-")


@dataclass(frozen=True)
class LogSettings:
    level: str = "INFO"
    format: str = "text"  # "text" (one readable line) or "json" (one object per line)


_configured: LogSettings | None = None


class RequestIdFilter(logging.Filter):
    """Stamps every record with the request id of the call being handled ("-" outside calls)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,  # the server's, or the worker process's that wrote it
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    """``log_format``: "text" (one readable line) or "json" (one object per line)."""
    global _configured
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    _configured = LogSettings(level, log_format)


def configured() -> LogSettings | None:
    """What ``configure_logging`` set in this process (None: logging was left as it was)."""
    return _configured
