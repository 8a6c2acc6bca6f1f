"""The daemon's HTTP side (`tunesched scheduler --http HOST:PORT`): a read-only dashboard, its
JSON API and Prometheus `/metrics`, served by tornado from one thread of the daemon's process.

Tornado because it is already a dependency, serves every open dashboard from one event loop
(no thread per browser) and brings the templates and static files a dashboard needs. Pages
are HTML shells without data (pages/, one base template);
they poll the JSON API and the server-drawn SVG charts (`svg`) with the user's bearer token,
so the same tokens and TLS certificate as gRPC guard every route that returns data.

    GET /api/jobs[?state=S]         jobs the caller may see, newest first
    GET /api/jobs/ID                one job: summary, curve, task rows, leases
    GET /api/jobs/ID/curve.svg      its best-latency curve
    GET /api/runners                runners (live leases) and hosts (cores, GPUs, foreign load)
    GET /api/timeline[?window=S]    leases live or ended in the last S seconds (default 600)
    GET /api/timeline.svg[?window=S]  the same as a Gantt chart of every host core and GPU
    GET /metrics                    Prometheus exposition
    GET /, /jobs/ID, /runners, /timeline   the pages

Errors are one line of JSON, {"error": "..."}, with the HTTP status that fits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import threading
from http import HTTPStatus
from importlib import resources
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from scheduler.service import dashboard, svg
from scheduler.service.auth import METADATA_KEY, Caller
from scheduler.service.errors import Unauthenticated

log = logging.getLogger(__name__)

STATIC = resources.files("scheduler.service") / "static"  # script and style
PAGES = resources.files("scheduler.service") / "pages"  # the HTML shells
DEFAULT_WINDOW_S = 600.0
MAX_WINDOW_S = 7 * 86400.0


class HttpError(tornado.web.HTTPError):
    """An error the client caused: its status and a one-line message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, reason=HTTPStatus(status).phrase)
        self.message = message


class _Handler(tornado.web.RequestHandler):
    """Authenticates data routes; turns every error into one line of JSON."""

    daemon: Any

    def initialize(self, daemon: Any) -> None:
        self.daemon = daemon

    def caller(self) -> Caller:
        header = self.request.headers.get("Authorization", "")
        try:
            return self.daemon.config.auth.client([(METADATA_KEY, header)])
        except Unauthenticated:
            raise HttpError(401, "missing or unknown token: send 'Authorization: Bearer "
                            "<your tunesched token>' (the dashboard asks for it)") from None

    def window(self) -> float:
        raw = self.get_query_argument("window", str(DEFAULT_WINDOW_S))
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not 0 < value <= MAX_WINDOW_S:
            raise HttpError(400, f"window must be seconds in (0, {MAX_WINDOW_S:.0f}], "
                            f"got {raw[:40]!r}")
        return value

    def visible_job(self, job_id: str, view: dashboard.View, caller: Caller) -> Any:
        record = view.jobs.get(job_id)
        if not dashboard.can_see(caller, record):  # another user's job: as if absent
            raise HttpError(404, f"no job {job_id[:64]!r}: list jobs at /api/jobs")
        return record

    def send_json(self, data: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(data, separators=(",", ":")))

    def send_svg(self, text: str) -> None:
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "no-store")
        self.finish(text)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = getattr(exc, "message", "") or HTTPStatus(status_code).phrase
        if status_code >= 500:
            message = "internal error: see the scheduler's log"
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'Bearer realm="tunesched"')
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": message}) + "\n")

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if not isinstance(value, tornado.web.HTTPError):
            log.error("dashboard request %s failed", self.request.uri, exc_info=(typ, value, tb))


class _NotFound(_Handler):
    def prepare(self) -> None:
        raise HttpError(404, f"no route {self.request.path[:80]!r}: see /api/jobs, "
                        "/api/runners, /api/timeline, /metrics")


class _Jobs(_Handler):
    def get(self) -> None:
        caller, state = self.caller(), self.get_query_argument("state", "")
        rows = dashboard.jobs(dashboard.take_view(self.daemon, since=math.inf), caller)
        self.send_json({"jobs": [r for r in rows if not state or r["state"] == state]})


class _Job(_Handler):
    def get(self, job_id: str) -> None:
        caller = self.caller()
        view = dashboard.take_view(self.daemon)
        self.send_json(dashboard.job_detail(view, self.visible_job(job_id, view, caller),
                                            caller))


class _Curve(_Handler):
    def get(self, job_id: str) -> None:
        caller = self.caller()
        view = dashboard.take_view(self.daemon, since=math.inf)
        record = self.visible_job(job_id, view, caller)
        self.send_svg(svg.curve_svg(record.curve, record.untuned_us))


class _Runners(_Handler):
    def get(self) -> None:
        caller = self.caller()
        self.send_json(dashboard.runners(dashboard.take_view(self.daemon, since=math.inf),
                                         caller))


class _Timeline(_Handler):
    def get(self) -> None:
        caller, window = self.caller(), self.window()
        view = dashboard.take_view(self.daemon, since=self.daemon.config.clock() - window)
        self.send_json({"now": view.now, "window_s": window,
                        "leases": dashboard.timeline(view, caller)})


class _Gantt(_Handler):
    def get(self) -> None:
        caller, window = self.caller(), self.window()
        view = dashboard.take_view(self.daemon, since=self.daemon.config.clock() - window)
        self.send_svg(svg.gantt_svg(view.runners, dashboard.timeline(view, caller), view.now,
                                    window))


class _Metrics(_Handler):
    def get(self) -> None:
        self.caller()  # any valid user token when access control is on
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(generate_latest(self.daemon.metrics.registry))


class _Page(_Handler):
    """A page shell (pages/PAGE.html, a tornado template): HTML without data, which its
    script fetches with the user's token."""

    def initialize(self, daemon: Any, page: str = "") -> None:  # type: ignore[override]
        self.daemon, self.page = daemon, page

    def get(self, *_: str) -> None:
        self.render(f"{self.page}.html", page=self.page)


def make_app(daemon: Any) -> tornado.web.Application:
    d = {"daemon": daemon}
    job = r"(job-[0-9a-f]{1,32})"
    return tornado.web.Application([
        (r"/api/jobs", _Jobs, d),
        (rf"/api/jobs/{job}", _Job, d),
        (rf"/api/jobs/{job}/curve\.svg", _Curve, d),
        (r"/api/runners", _Runners, d),
        (r"/api/timeline", _Timeline, d),
        (r"/api/timeline\.svg", _Gantt, d),
        (r"/metrics", _Metrics, d),
        (r"/", _Page, {**d, "page": "jobs"}),
        (rf"/jobs/{job}", _Page, {**d, "page": "job"}),
        (r"/runners", _Page, {**d, "page": "runners"}),
        (r"/timeline", _Page, {**d, "page": "timeline"}),
        (r"/static/(.*)", tornado.web.StaticFileHandler, {"path": str(STATIC)}),
    ], default_handler_class=_NotFound, default_handler_args=d, compress_response=True,
        template_path=str(PAGES))


class WebServer:
    """The dashboard served from its own thread and event loop until `stop()`."""

    def __init__(self, daemon: Any, address: str,
                 tls_files: tuple[str, str] | None = None) -> None:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"--http wants HOST:PORT, got {address!r}")
        try:
            self._sockets = tornado.netutil.bind_sockets(int(port), host.strip("[]"))
        except OSError as exc:
            raise OSError(f"cannot serve the dashboard on {address}: {exc.strerror}") from exc
        self.address = f"{host}:{self._sockets[0].getsockname()[1]}"
        self.scheme = "https" if tls_files else "http"
        self._ssl: ssl.SSLContext | None = None
        if tls_files:
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(*tls_files)
        self._app = make_app(daemon)
        self._loop = asyncio.new_event_loop()
        self._server: tornado.httpserver.HTTPServer | None = None
        self._thread = threading.Thread(target=self._run, name="dashboard", daemon=True)
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}/"

    def start(self) -> WebServer:
        self._thread.start()
        self._ready.wait()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def listen() -> None:
            self._server = tornado.httpserver.HTTPServer(self._app, ssl_options=self._ssl,
                                                         xheaders=False)
            self._server.add_sockets(self._sockets)
            self._ready.set()

        self._loop.run_until_complete(listen())
        self._loop.run_forever()
        self._loop.close()

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.stop()
                await self._server.close_all_connections()
            self._loop.stop()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(close(), self._loop)
            self._thread.join(timeout=10)
