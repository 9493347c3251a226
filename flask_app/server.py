"""Run the app: gunicorn with worker processes, or Flask's development server with --dev.

``run`` is the library's ``imagesearch_pg.servers`` entry point named ``http`` (pyproject.toml): the
``imagesearch serve`` command finds it there, so the library never imports this package.
"""

from __future__ import annotations

import logging
import os
import sys

from werkzeug.serving import WSGIRequestHandler

from flask_app import signature
from flask_app.front import logged_target
from imagesearch_pg.config import Settings
from imagesearch_pg.service import ImageSearch

log = logging.getLogger(__name__)


def prepare(settings: Settings) -> ImageSearch:
    """Work done once before serving: database up, schema checked, default models built on disk.

    The returned service must stay open while serving: with the embedded server, the last process to let
    go of it stops it. Its pooled connections are closed, since forked workers must not inherit them.
    """
    service = ImageSearch.open(settings)
    service.warm_up()
    service.database.release_connections()
    return service


def run(settings: Settings, *, host: str, port: int, workers: int, dev: bool, insecure_no_auth: bool = False) -> None:
    from flask_app import create_app

    service = prepare(settings)
    service.database.keep_running()  # the embedded server is started again if it dies
    if insecure_no_auth:
        log.warning(
            "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach %s:%s may read, add and delete "
            "pictures of every instance. Use it for local trials only.", host, port,
        )
    config = {"SETTINGS": settings, "INSECURE_NO_AUTH": insecure_no_auth}
    console_hint = console_line(service, host, port)
    master = os.getpid()
    try:
        if dev:
            print(console_hint, file=sys.stderr, flush=True)
            create_app(config).run(host=host, port=port, threaded=True, use_reloader=False,
                                   request_handler=RequestHandler)
        else:
            _gunicorn(config, host=host, port=port, workers=workers, console_hint=console_hint)
    finally:
        # gunicorn's workers are forks that leave through here too (on a reload or a max-requests restart):
        # what the master holds for all of them is the master's to let go.
        if os.getpid() == master:
            service.close()


class RequestHandler(WSGIRequestHandler):
    """Werkzeug's development server as the front behaves: it reports the headers sent more than once (its
    environ joins their values, or keeps the last Content-Type) and logs no query values."""

    def make_environ(self) -> dict:
        environ = super().make_environ()
        environ[signature.REPEATED_HEADERS] = signature.repeated(self.headers.keys())
        return environ

    def log_request(self, code="-", size="-") -> None:
        target = logged_target(getattr(self, "path", "-"))  # no path when the request line did not parse
        self.log("info", '"%s %s %s" %s %s', self.command, target, self.request_version, code, size)


def console_line(service: ImageSearch, host: str, port: int) -> str:
    """Where the web console is, and how to get in."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    users = service.console_users.listing()
    how = "log in as " + ", ".join(u.name for u in users[:3]) + (" ..." if len(users) > 3 else "") if users else \
        "no users yet: make one with `imagesearch users create NAME`"
    return f"web console: http://{shown}:{port}/ ({how})"


def _gunicorn(config: dict, *, host: str, port: int, workers: int, console_hint: str) -> None:
    import shutil
    import tempfile

    # Workers write their metrics into this directory (set before they import prometheus_client).
    metrics_dir = tempfile.mkdtemp(prefix="imagesearch-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    master = os.getpid()
    try:
        gunicorn_application(config, host=host, port=port, workers=workers, console_hint=console_hint).run()
    finally:
        if os.getpid() == master:  # not a worker leaving (see run)
            shutil.rmtree(metrics_dir, ignore_errors=True)


def gunicorn_application(config: dict, *, host: str, port: int, workers: int, console_hint: str):
    """The gunicorn application `serve` runs, configured (its ``cfg``) and not yet started."""
    from gunicorn.app.base import BaseApplication

    from flask_app import create_app

    def child_exit(server, worker):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    class Application(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            # Connections on an asyncio loop, requests on 4 threads (flask_app/front.py: why not gthread).
            self.cfg.set("worker_class", "flask_app.front.FrontWorker")
            self.cfg.set("threads", 4)
            self.cfg.set("keepalive", 2)
            self.cfg.set("timeout", 60)
            self.cfg.set("accesslog", "-")
            self.cfg.set("loglevel", "warning")  # quiet by default: start-up chatter only with -v
            self.cfg.set("preload_app", False)
            self.cfg.set("control_socket_disable", True)  # one shared path would clash between servers
            self.cfg.set("child_exit", child_exit)
            self.cfg.set("when_ready", lambda server: print(
                f"imagesearch-pg listening on http://{host}:{port} ({workers} workers)\n{console_hint}",
                file=sys.stderr, flush=True))

        def load(self):
            return create_app(config)

    return Application()
