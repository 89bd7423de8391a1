"""The HTTP server around the app: aiohttp's own, except that the errors it answers by itself use our JSON error
shape too.

A request aiohttp's parser refuses (a request line or header over 8,190 bytes, a control character in a
header, a bad method), a handler timeout, and an exception that escapes the middlewares never reach
`error_middleware`: aiohttp answers them from `RequestHandler.handle_error` with a plain-text body. Here that
method answers `{"error": {...}}` with a Chinese message instead; everything else about the protocol is
aiohttp's. `python app.py serve` and the tests' client serve the app through `AppRunner` below.

aiohttp would log a refused request at ERROR with the parser's message, which quotes the raw request line or
header (`Got more than 8190 bytes when reading: bytearray(b'/api/v1/...?q=...')`): a patient's name or ID number
in a query would land in the log. Such a refusal is logged by its error class and the client's address only."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from miniprogram_api.middleware import error_parts


class JsonErrorRequestHandler(RequestHandler):
    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):  # the parser refused the bytes: the client's mistake, not ours
            # Like aiohttp, a bad method on a connection's first request (TLS or junk on the port) is only noise.
            noise = isinstance(exc, BadHttpMethod) and self._request_count == 1
            log = self.logger.debug if noise else self.logger.warning
            log("refused a malformed request from %s: %s (HTTP %s)", request.remote, type(exc).__name__, status)
            if request.writer.output_size > 0:
                raise ConnectionError("Response is sent already, cannot send another response with the error message")
        else:
            # aiohttp's version logs the error and refuses when a response has already started; keep both.
            super().handle_error(request, status, exc, message)
        code, text = error_parts(status)
        body = json.dumps({"error": {"code": code, "message": text, "detail": {}}}, ensure_ascii=False)
        response = web.Response(status=status, text=body, content_type="application/json")
        response.force_close()
        return response


class JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """`web.AppRunner` whose connections are served by `JsonErrorRequestHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = JsonErrorServer  # same state, one overridden factory method
        return server


async def _serve(app: web.Application, host: str, port: int, reuse_port: bool | None = None,
                 **runner_args: Any) -> None:
    runner = AppRunner(app, handle_signals=True, **runner_args)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port).start()
        await asyncio.Event().wait()  # until SIGINT/SIGTERM (handle_signals) ends the loop
    finally:
        await runner.cleanup()


def run(app: web.Application, host: str, port: int, *, reuse_port: bool | None = None, **runner_args: Any) -> None:
    """Serve `app` until interrupted: `web.run_app`, with this module's runner (`reuse_port`: one of several
    processes sharing the port, `serve --workers N`)."""
    try:
        asyncio.run(_serve(app, host, port, reuse_port, **runner_args))
    except (web.GracefulExit, KeyboardInterrupt):
        pass
