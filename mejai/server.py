"""The web server: daphne, with request bodies bounded at the socket and an access log without personal data.

`python -m mejai.server [daphne options] mejai.asgi:application` — every daphne option works.

Why not plain daphne: daphne (through Twisted) buffers a whole request body and then queues all
of it for the application at once, so a 300 MB POST costs 300 MB of memory whatever the
application does. Here a request whose declared length is over `REQUEST_MAX_BODY_BYTES` is
answered 413 at once, and a chunked one is answered 413 and disconnected the moment it passes the
limit; nothing past the limit is kept. And daphne's access log prints paths with their query
strings (emails, phone numbers) straight to stdout, past the logging filters; here it goes
through the `mejai.access` logger — without query strings and masked like every log line.
"""

from __future__ import annotations

import io
import logging
import os
import sys

from django.core.exceptions import ImproperlyConfigured

access_logger = logging.getLogger("mejai.access")


def _limit() -> int:
    from django.conf import settings

    return int(getattr(settings, "REQUEST_MAX_BODY_BYTES", settings.RUNTIME_MAX_BODY_BYTES))


def bounded_request_class(base):
    """A daphne WebRequest subclass that never holds more than the body limit."""

    class BoundedWebRequest(base):
        _mejai_received = 0
        _mejai_refused = False

        def gotLength(self, length):
            super().gotLength(length)
            if length is not None and length > _limit():
                self._mejai_refuse(declared=length)

        def handleContentChunk(self, data):
            if self._mejai_refused:
                return
            self._mejai_received += len(data)
            if self._mejai_received > _limit():
                self._mejai_refuse(declared=None)
                return
            super().handleContentChunk(data)

        def _mejai_refuse(self, *, declared: int | None) -> None:
            from mejai.asgi_guards import too_large_body

            self._mejai_refused = True
            limit = _limit()
            logging.getLogger("mejai.request").warning(
                "request body over %d bytes refused (413) by the server: %s %s%s", limit,
                (self.method or b"").decode("latin-1"), (self.uri or b"").split(b"?")[0][:200].decode("latin-1"),
                f" (Content-Length {declared})" if declared is not None else "")
            body = too_large_body(limit)
            transport = self.channel.transport if self.channel is not None else None
            if transport is None:
                return
            transport.write(
                b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json; charset=utf-8\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
            )
            # Stops reading the socket, sends what is written, closes: the rest of the body is never read.
            transport.loseConnection()
            self.content.close()
            self.content = io.BytesIO()  # bytes still in this read buffer land here and are dropped

        def process(self):
            if self._mejai_refused:
                return None  # answered already; the application never sees this request
            return super().process()

    BoundedWebRequest.__name__ = BoundedWebRequest.__qualname__ = "BoundedWebRequest"
    return BoundedWebRequest


class MaskedAccessLog:
    """daphne's access-log stream, as log records: no query strings, personal data masked by the filter."""

    def write(self, line: str) -> None:
        line = line.rstrip("\n")
        if not line:
            return
        # '… "GET /path?email=… HTTP" 200 …' → drop every query string; the PII filter masks the rest.
        head, quote, rest = line.partition('"')
        request, quote2, tail = rest.partition('"')
        request = " ".join(part.split("?", 1)[0] for part in request.split(" "))
        access_logger.info("%s%s%s%s%s", head, quote, request, quote2, tail)

    def flush(self) -> None:
        pass


def install() -> None:
    """Patch daphne's request class and access log (call before daphne builds its server)."""
    import daphne.access
    import daphne.cli
    import daphne.http_protocol

    if not getattr(daphne.http_protocol.WebRequest, "_mejai_bounded", False):
        bounded = bounded_request_class(daphne.http_protocol.WebRequest)
        bounded._mejai_bounded = True
        # HTTPFactory.buildProtocol reads this module global for every connection.
        daphne.http_protocol.WebRequest = bounded

    original = daphne.access.AccessLogGenerator

    class MaskedAccessLogGenerator(original):
        def __init__(self, stream):
            super().__init__(MaskedAccessLog() if stream in (sys.stdout, sys.stderr) else stream)

    daphne.cli.AccessLogGenerator = MaskedAccessLogGenerator


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mejai.settings")
    import django

    try:
        django.setup()
    except ImproperlyConfigured as exc:
        sys.exit(f"mejai: {exc}")
    install()
    from daphne.cli import CommandLineInterface

    CommandLineInterface().run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
