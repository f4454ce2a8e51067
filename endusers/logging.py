"""A logging filter that masks emails, phone numbers and card-like numbers in every log line."""

from __future__ import annotations

import logging

from endusers.privacy import LOG_MAX_CHARS, mask_text

TRACEBACK_MAX_CHARS = 20 * LOG_MAX_CHARS


def _bounded(text: str, limit: int) -> str:
    """Cut before masking, so a huge line (a 404 logs its whole path) costs a bounded amount of work."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [+{len(text) - limit} chars]"


class PiiMaskingFilter(logging.Filter):
    """Attach to handlers (see LOGGING in mejai/settings.py); rewrites the record, never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave the record for logging to report
            return True
        masked = mask_text(_bounded(message, LOG_MAX_CHARS))
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(_bounded(logging.Formatter().formatException(record.exc_info),
                                                 TRACEBACK_MAX_CHARS))
        elif record.exc_text:
            record.exc_text = mask_text(_bounded(record.exc_text, TRACEBACK_MAX_CHARS))
        if record.stack_info:
            record.stack_info = mask_text(_bounded(record.stack_info, TRACEBACK_MAX_CHARS))
        return True
