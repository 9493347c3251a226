"""Download links as shipped (README: "links to GET /downloads/... on the server, signed and valid for 24 hours
(links made outside a request point at IMAGESEARCH_PUBLIC_URL, which serve sets to its own address)").

A link's expiry is read from the link and compared with the clock read before and after it was made: no
clock is waited for. The link made outside a request is the processResultUrl of a callback sent by the
worker that `imagesearch serve` starts, with no IMAGESEARCH_PUBLIC_URL set."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from alibabacloud_imagesearch20201214 import models as sdk

from imagesearch_pg.errors import RequestExpired
from imagesearch_pg.service.tasks import META, Tasks
from tests.batch_folders import run_to_end, write_folder
from tests.pictures import encode, noise
from tests.serving import serving
from tests.test_api import sdk_client

DAY = 24 * 3600
PATIENCE = 120.0  # seconds the server's worker may take to run the task and call back on a busy machine


def expires(link: str) -> int:
    return int(parse_qs(urlsplit(link).query)["Expires"][0])


def test_a_listed_export_link_is_valid_for_24_hours(service, server, credentials, shop):
    service.add_image(shop, "p", "1", encode(noise(120, 120, seed=78)), crop=False)
    task = run_to_end(service, service.tasks.submit_export(shop))
    assert task.state == "succeeded"
    before = time.time()
    listed = sdk_client(server, *credentials).dump_meta_list(sdk.DumpMetaListRequest(instance_name=shop, id=task.id))
    after = time.time()
    link = listed.body.data.dump_meta_list[0].meta_url
    assert link.startswith(f"http://{server}/downloads/meta/{task.id}?")
    assert int(before) + DAY <= expires(link) <= after + DAY
    fetched = requests.get(link, timeout=30)
    assert fetched.status_code == 200 and json.loads(fetched.text.splitlines()[0])["ProductId"] == "p"


def test_a_link_is_accepted_for_24_hours_and_refused_after(service, shop):
    """With the link code's clock given: the link made now is checked 24 hours less a second later, and 24
    hours and a second later."""
    task = run_to_end(service, service.tasks.submit_export(shop))
    now = [float(int(time.time()))]
    made = now[0]
    tasks = Tasks(service.instances, service.storage, service.settings, clock=lambda: now[0])
    link = tasks.link(task, META)
    query = {name: values[0] for name, values in parse_qs(urlsplit(link).query).items()}
    assert int(query["Expires"]) == made + DAY
    now[0] = made + DAY - 1
    assert tasks.check_link(META, task.id, query["Expires"], query["Signature"]).id == task.id
    now[0] = made + DAY + 1
    with pytest.raises(RequestExpired):
        tasks.check_link(META, task.id, query["Expires"], query["Signature"])


class Receiver:
    """An HTTP endpoint that keeps the first POST's JSON body and says when it came."""

    def __init__(self):
        self.body: dict | None = None
        self.came = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if receiver.body is None:
                    receiver.body = body
                    receiver.came.set()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/done"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.httpd.shutdown()
    made.httpd.server_close()


@pytest.fixture
def folder_location(service, tmp_path):
    name = f"links-{uuid.uuid4().hex[:12]}"
    service.storage.add(name, str(tmp_path))
    yield name, tmp_path
    service.storage.remove(name)


def test_serves_worker_links_to_serves_own_address_for_24_hours(engine, settings, credentials, shop, receiver,
                                                                 folder_location, monkeypatch):
    monkeypatch.delenv("IMAGESEARCH_PUBLIC_URL", raising=False)
    location, root = folder_location
    path = write_folder(root, ["{not json"], {})  # one failed line: the callback links to the error report
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home), "IMAGESEARCH_CALLBACK_ALLOWED_NETWORKS": "127.0.0.0/8"}
    with serving(env, workers=1, extra=("--task-workers", "1")) as (_, port):
        before = time.time()
        submitted = sdk_client(f"127.0.0.1:{port}", *credentials).increase_instance(sdk.IncreaseInstanceRequest(
            instance_name=shop, bucket_name=location, path=path, callback_address=receiver.url)).body
        assert receiver.came.wait(PATIENCE), "no callback came"
        after = time.time()
        link = receiver.body["processResultUrl"]
        assert link.startswith(f"http://127.0.0.1:{port}/downloads/errors/{submitted.data.id}?"), receiver.body
        assert int(before) + DAY <= expires(link) <= after + DAY
        fetched = requests.get(link, timeout=30)
        assert fetched.status_code == 200 and json.loads(fetched.text)["content"] == "{not json"
