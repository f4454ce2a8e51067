"""Logging filters of the project: a client's fault is one warning line, not an ERROR with a traceback."""

from __future__ import annotations

import logging


class ClientErrorAsWarning(logging.Filter):
    """For django.security.RequestDataTooBig (and the other 'too many' refusals): Django logs them as
    ERROR with a traceback, though the client sent too much; make them one WARNING line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True
