"""A logging filter that masks emails, phone numbers and card-like numbers in every log line."""

from __future__ import annotations

import logging

from endusers.privacy import mask_text


class PiiMaskingFilter(logging.Filter):
    """Attach to handlers (see LOGGING in mejai/settings.py); rewrites the record, never drops it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave the record for logging to report
            return True
        masked = mask_text(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True
