"""The access log of the app: the path and the names of the query parameters, never a value that can name a
patient.

aiohttp's default line logs `request.path_qs` and the Referer, so `GET /api/v1/referrals?q=张三` landed in the
log percent-encoded (`q=%E5%BC%A0%E4%B8%89`), where no redaction pattern can recognise a name. Recognising
personal data in values is a losing game (names, free text, encodings); keeping only the values of an
allowlist of parameters whose values are codes, dates or opaque cursors is not. Every other value is written
as `…`, so the log still shows which filters a request used. The Referer is left out: it carries the
mini-program page, whose query may hold anything the page put there.

The class is set through the application's `handler_args`, so every runner serving the app (`run_app`, the
tests' server, the benchmarks) logs this way."""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

HIDDEN = "…"
# Query parameters whose values are enumerations, dates, numbers or opaque cursors, never a person.
SAFE_PARAMETERS = frozenset({"box", "status", "direction", "from", "to", "limit", "cursor", "state", "kind",
                             "after", "unread"})


def loggable_query(request: BaseRequest) -> str:
    """The query string as the access log writes it: allowlisted values kept, every other value hidden."""
    parts = [f"{name}={value if name in SAFE_PARAMETERS else HIDDEN}" for name, value in request.query.items()]
    return "?" + "&".join(parts) if parts else ""


class PrivateAccessLogger(AbstractAccessLogger):
    """`remote [time] "METHOD /path?name=… HTTP/1.1" status bytes seconds "User-Agent"`.

    aiohttp's AccessLogger looks its field formatters up on its own class, so a subclass cannot replace how
    it writes the request line; this logger writes the whole line itself."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        try:
            started = AccessLogger._format_t(request, response, time)
            line = (f"{request.method} {request.path}{loggable_query(request)} "
                    f"HTTP/{request.version.major}.{request.version.minor}")
            agent = request.headers.get("User-Agent", "-")
            self.logger.info('%s %s "%s" %s %s %.6f "%s"', request.remote or "-", started, line, response.status,
                             response.body_length, time, agent)
        except Exception:
            self.logger.exception("Error in access logging")
