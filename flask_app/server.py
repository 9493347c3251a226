"""Run the app: gunicorn with worker processes, or Flask's development server with --dev."""

from __future__ import annotations

import logging

from imagesearch_pg.config import Settings
from imagesearch_pg.store.database import Database
from imagesearch_pg.vision.encoders import DEFAULT_ENCODER, EncoderRegistry
from imagesearch_pg.vision.subject import SubjectDetector

log = logging.getLogger(__name__)


def prepare(settings: Settings) -> Database:
    """Work done once before serving: database up, schema checked, default models built on disk.

    Returns the database handle; with the embedded server it must stay open while serving,
    since the last process to let go of the server stops it.
    """
    database = Database.connect(settings)
    database.ensure_schema()
    EncoderRegistry(settings.model_cache, settings.onnx_threads).get(DEFAULT_ENCODER).model_path()
    SubjectDetector(settings.model_cache).model_path()  # fails here, clearly, if its package is missing
    # Forked workers must not inherit pooled connections.
    database.engine.dispose()
    return database


def run(settings: Settings, *, host: str, port: int, workers: int, dev: bool, insecure_no_auth: bool = False) -> None:
    from flask_app import create_app

    database = prepare(settings)
    if insecure_no_auth:
        log.warning(
            "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can reach %s:%s may read, add and delete "
            "pictures of every instance. Use it for local trials only.", host, port,
        )
    config = {"SETTINGS": settings, "INSECURE_NO_AUTH": insecure_no_auth}
    try:
        if dev:
            create_app(config).run(host=host, port=port, threaded=True, use_reloader=False)
        else:
            _gunicorn(config, host=host, port=port, workers=workers)
    finally:
        database.close()


def _gunicorn(config: dict, *, host: str, port: int, workers: int) -> None:
    import os
    import shutil
    import tempfile

    from gunicorn.app.base import BaseApplication

    from flask_app import create_app

    # Workers write their metrics into this directory (set before they import prometheus_client).
    metrics_dir = tempfile.mkdtemp(prefix="imagesearch-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir

    def child_exit(server, worker):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    class Application(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", 4)
            self.cfg.set("timeout", 60)
            self.cfg.set("accesslog", "-")
            self.cfg.set("loglevel", "warning")  # quiet by default: start-up chatter only with -v
            self.cfg.set("preload_app", False)
            self.cfg.set("control_socket_disable", True)  # one shared path would clash between servers
            self.cfg.set("child_exit", child_exit)

        def load(self):
            return create_app(config)

    try:
        Application().run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
