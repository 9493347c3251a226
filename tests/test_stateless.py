"""Two `imagesearch serve` processes with homes of their own, as on two machines, against one database:
they share nothing but it (and the deployment's secret key, a setting), so keys, nonces, throttling counts,
tasks, download links and console sessions hold across both (docs/scaling.md, "Stateless services")."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time

import pytest
import requests
from cryptography.fernet import Fernet

from tests.http_requests import signed_request
from tests.pictures import encode, noise
from tests.serving import serving

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployment(engine, tmp_path_factory):
    """The environment both servers share: the database, the secret key, a results location in the
    database (a folder both reach, as a bucket would be)."""
    results = tmp_path_factory.mktemp("shared-results")
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_SECRET_KEY": Fernet.generate_key().decode(),
           "IMAGESEARCH_RESULTS_LOCATION": "stateless-results"}
    cli(env, tmp_path_factory.mktemp("admin"), "storage", "add", "stateless-results", str(results))
    yield env
    cli(env, tmp_path_factory.mktemp("admin"), "storage", "remove", "stateless-results")


def cli(env: dict, home, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "imagesearch_pg", *args], input=stdin, capture_output=True, text=True,
                          env={**__import__("os").environ, **env, "IMAGESEARCH_HOME": str(home)}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def call(port: int, key: tuple[str, str], action: str, fields: dict, headers: dict | None = None):
    body = "&".join(f"{k}={requests.utils.quote(str(v), safe='')}" for k, v in fields.items()).encode()
    headers = headers or signed_request(f"127.0.0.1:{port}", *key, body, action=action)
    response = requests.post(f"http://127.0.0.1:{port}/", data=body, headers=headers, timeout=60)
    return response, headers, body


def test_two_servers_share_nothing_but_the_database(deployment, tmp_path_factory):
    homes = [tmp_path_factory.mktemp("machine-a"), tmp_path_factory.mktemp("machine-b")]
    created = json.loads(cli(deployment, homes[0], "keys", "create", "--json"))  # made on machine A
    key = (created["AccessKeyId"], created["AccessKeySecret"])
    cli(deployment, homes[0], "instance", "create", "stateless", "--type", "generic", "--qps", "1")
    cli(deployment, homes[1], "users", "create", "ops", "--password-stdin", stdin="shared password\n")
    try:
        with serving({**deployment, "IMAGESEARCH_HOME": str(homes[0])}) as (_, port_a), \
                serving({**deployment, "IMAGESEARCH_HOME": str(homes[1])}) as (_, port_b):
            # A key made on one machine signs requests to the other.
            picture = base64.b64encode(encode(noise(160, 160, seed=8))).decode()
            added, _, _ = call(port_b, key, "AddImage",
                               {"InstanceName": "stateless", "ProductId": "p", "PicName": "1", "PicContent": picture})
            assert added.status_code == 200, added.text

            # A request seen by one server is a replay at the other (nonces are in the database).
            first, headers, body = call(port_a, key, "Detail", {"InstanceName": "stateless"})
            assert first.status_code == 200
            replay = requests.post(f"http://127.0.0.1:{port_b}/", data=body, headers=headers, timeout=30)
            assert replay.json()["Code"] == "SignatureNonceUsed"

            # One instance's QPS is counted across both servers.
            codes = []
            for port in (port_a, port_b, port_a, port_b):
                response, _, _ = call(port, key, "SearchImageByName",
                                      {"InstanceName": "stateless", "ProductId": "p", "PicName": "1"})
                codes.append(response.json().get("Code"))
            assert "Throttling" in codes, codes

            # A task submitted to one is run by a worker of either, and its link downloads from the other.
            time.sleep(1.1)
            dumped, _, _ = call(port_a, key, "DumpMeta", {"InstanceName": "stateless"})
            task_id = dumped.json()["Data"]["Id"]
            deadline = time.monotonic() + 90
            while True:
                listed, _, _ = call(port_b, key, "DumpMetaList", {"InstanceName": "stateless", "Id": task_id})
                if listed.status_code == 200 and listed.json()["Data"]["DumpMetaList"][0]["Status"] == "SUCCEEDED":
                    break
                assert time.monotonic() < deadline, listed.text
                time.sleep(0.5)
            link = listed.json()["Data"]["DumpMetaList"][0]["MetaUrl"]
            other = re.sub(r"//127\.0\.0\.1:\d+/", f"//127.0.0.1:{port_a}/", link)
            for url in (link, other):
                exported = requests.get(url, timeout=30)
                assert exported.status_code == 200 and json.loads(exported.text.splitlines()[0])["ProductId"] == "p"

            # A console session made on one server is good on the other (the key is in the database).
            browser = requests.Session()
            page = browser.get(f"http://127.0.0.1:{port_a}/login").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
            logged = browser.post(f"http://127.0.0.1:{port_a}/login",
                                  data={"name": "ops", "password": "shared password", "csrf_token": token})
            assert logged.status_code == 200 and "Overview" in logged.text
            assert "Overview" in browser.get(f"http://127.0.0.1:{port_b}/").text
    finally:
        cli(deployment, homes[0], "instance", "delete", "stateless", "--yes")
        cli(deployment, homes[0], "users", "delete", "ops")
