"""Loggers for websockets connections that never write an API key or token.

websockets logs every handshake header (``> Authorization: ...`` on a client,
``< Authorization: ...`` on a server) and the request path (which may carry
``?token=``) at DEBUG. Every socket the project opens or serves passes one of
these loggers, so ``recorder -vv`` shows the handshake without the secret.
"""

from __future__ import annotations

import logging
import re

__all__ = ["redact_query_token", "wire_logger"]

_TOKEN_IN_QUERY = re.compile(r"(?i)(token=)[^&\s]*")


def redact_query_token(text: str) -> str:
    """Replace the value of any ``token=`` query parameter in ``text``."""
    return _TOKEN_IN_QUERY.sub(r"\1[redacted]", text)


class _RedactSecrets(logging.Filter):
    """Rewrites a record's arguments so the secret never reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            if len(args) == 2 and str(args[0]).lower() == "authorization":
                record.args = (args[0], "[redacted]")
            elif isinstance(args[0], str) and "token=" in args[0].lower():
                record.args = (redact_query_token(args[0]), *args[1:])
        return True


def wire_logger(name: str) -> logging.Logger:
    """The logger ``name`` with the redacting filter attached (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, _RedactSecrets) for f in logger.filters):
        logger.addFilter(_RedactSecrets())
    return logger
