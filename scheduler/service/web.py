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
import gzip
import json
import logging
import math
import ssl
import threading
import time
from collections.abc import Callable
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
# answers are shared for this long (the pages poll every second); gzip above GZIP_MIN_BYTES
CACHE_TTL_S = 0.5
GZIP_LEVEL, GZIP_MIN_BYTES = 1, 1024  # level 1: 3-4x faster than 6, 1.3x larger
MAX_CACHED = 256
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


class Cache:
    """Recent answers by route, query and what the caller may see: dashboards polling every
    second share one rendering (and one gzip) per `ttl` seconds, so five open dashboards cost
    the daemon about what one does. Used from the event loop's thread only."""

    def __init__(self, ttl: float = CACHE_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._items: dict[tuple, tuple[float, str, bytes, bytes]] = {}

    def get(self, key: tuple, make: Callable[[], tuple[str, bytes]]) -> tuple[str, bytes, bytes]:
        """(content type, body, gzipped body or b"") for `key`, made again once stale."""
        now = self.clock()
        hit = self._items.get(key)
        if hit is None or now - hit[0] > self.ttl:
            kind, body = make()
            packed = gzip.compress(body, GZIP_LEVEL) if len(body) > GZIP_MIN_BYTES else b""
            if len(self._items) > MAX_CACHED:  # drop what went stale
                self._items = {k: v for k, v in self._items.items() if now - v[0] <= self.ttl}
            hit = self._items[key] = (now, kind, body, packed)
        return hit[1], hit[2], hit[3]


class Shared:
    """What the data routes keep between requests: lease dicts of ended leases
    (`dashboard.Views`) and the Gantt's markup of ended leases, per scope and window, drawn
    in seconds since `epoch` (this server's start)."""

    def __init__(self, daemon: Any) -> None:
        self.views = dashboard.Views(daemon)
        self.epoch = daemon.config.clock()
        self.gantt_memos: dict[tuple[str, float], dict[tuple, str]] = {}


class _DataHandler(_Handler):
    """A route that returns data: authenticated, rendered by `render`, cached briefly."""

    cache: Cache

    def initialize(self, daemon: Any, cache: Cache | None = None,  # type: ignore[override]
                   shared: Shared | None = None) -> None:
        self.daemon, self.cache = daemon, cache or Cache(0.0)
        self.shared = shared or Shared(daemon)

    def view(self, since: float = 0.0, job_id: str = "") -> dashboard.View:
        return self.shared.views.take(since, job_id)

    def render(self, caller: Caller, *args: str) -> tuple[str, bytes]:
        raise NotImplementedError

    def get(self, *args: str) -> None:
        caller = self.caller()
        scope = "*" if caller.admin else caller.name
        # the arguments a route reads, not every one sent (other arguments share the answer)
        query = tuple(self.get_query_argument(name, "") for name in ("state", "window"))
        kind, body, packed = self.cache.get((self.request.path, query, scope),
                                            lambda: self.render(caller, *args))
        self.set_header("Content-Type", kind)
        self.set_header("Cache-Control", "no-store")
        self.set_header("Vary", "Accept-Encoding, Authorization")
        if packed and "gzip" in self.request.headers.get("Accept-Encoding", ""):
            self.set_header("Content-Encoding", "gzip")
            body = packed
        self.finish(body)


def _json(data: Any) -> tuple[str, bytes]:
    return "application/json", json.dumps(data, separators=(",", ":")).encode()


def _svg(text: str) -> tuple[str, bytes]:
    return "image/svg+xml", text.encode()


class _Jobs(_DataHandler):
    def render(self, caller: Caller, *_: str) -> tuple[str, bytes]:
        state = self.get_query_argument("state", "")
        rows = dashboard.jobs(self.view(since=math.inf), caller)
        return _json({"jobs": [r for r in rows if not state or r["state"] == state]})


class _Job(_DataHandler):
    def render(self, caller: Caller, *args: str) -> tuple[str, bytes]:
        view = self.view(job_id=args[0])
        return _json(dashboard.job_detail(view, self.visible_job(args[0], view, caller), caller))


class _Curve(_DataHandler):
    def render(self, caller: Caller, *args: str) -> tuple[str, bytes]:
        view = self.view(since=math.inf)
        record = self.visible_job(args[0], view, caller)
        return _svg(svg.curve_svg(record.curve, record.untuned_us))


class _Runners(_DataHandler):
    def render(self, caller: Caller, *_: str) -> tuple[str, bytes]:
        return _json(dashboard.runners(self.view(since=math.inf),
                                       caller))


class _Timeline(_DataHandler):
    def render(self, caller: Caller, *_: str) -> tuple[str, bytes]:
        window = self.window()
        view = self.view(since=self.daemon.config.clock() - window)
        return _json({"now": view.now, "window_s": window,
                      "leases": dashboard.timeline(view, caller)})


class _Gantt(_DataHandler):
    def render(self, caller: Caller, *_: str) -> tuple[str, bytes]:
        window = self.window()
        view = self.view(since=self.daemon.config.clock() - window)
        scope = "*" if caller.admin else caller.name
        memos = self.shared.gantt_memos
        if len(memos) > MAX_CACHED:  # many scopes and windows: start again
            memos.clear()
        memo = memos.setdefault((scope, window), {})
        return _svg(svg.gantt_svg(view.runners, dashboard.timeline(view, caller), view.now,
                                  window, epoch=self.shared.epoch, memo=memo))


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


def make_app(daemon: Any, cache_ttl_s: float = CACHE_TTL_S) -> tornado.web.Application:
    d = {"daemon": daemon}
    c = {**d, "cache": Cache(cache_ttl_s), "shared": Shared(daemon)}
    job = r"(job-[0-9a-f]{1,32})"
    return tornado.web.Application([
        (r"/api/jobs", _Jobs, c),
        (rf"/api/jobs/{job}", _Job, c),
        (rf"/api/jobs/{job}/curve\.svg", _Curve, c),
        (r"/api/runners", _Runners, c),
        (r"/api/timeline", _Timeline, c),
        (r"/api/timeline\.svg", _Gantt, c),
        (r"/metrics", _Metrics, d),
        (r"/", _Page, {**d, "page": "jobs"}),
        (rf"/jobs/{job}", _Page, {**d, "page": "job"}),
        (r"/runners", _Page, {**d, "page": "runners"}),
        (r"/timeline", _Page, {**d, "page": "timeline"}),
        (r"/static/(.*)", tornado.web.StaticFileHandler, {"path": str(STATIC)}),
    ], default_handler_class=_NotFound, default_handler_args=d, template_path=str(PAGES))


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
