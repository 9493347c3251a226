"""The hostile-request corpus (tests/hostile_corpus.py, over all 14 actions: bad parameters, encodings,
methods, paths, headers sent twice) and a signature fuzz: every refused request gets its status, its Code
and a JSON body, and leaves the database as it was, row for row.

The server's limits are the shipped ones: a request answered Throttling (adds, updates and deletes are
admitted at 5/s and 20/s per instance, before their parameters are read) is sent again a moment later, as
a client of the service would; the target instance's QPS plan, a setting of the instance, is high.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa

from benchmarks.signed_requests import form_encoded, rpc_signed
from tests import hostile_corpus as corpus
from tests.http_requests import signed_request
from tests.pictures import encode, noise
from tests.raw_http import exchange, request_bytes, with_repeat

# Every table a request could change, digested row by row (nonces and request counts are the requests'
# own bookkeeping: a refused request is still counted and its nonce still used up).
DIGEST = sa.text(
    "SELECT (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM imagesearch.instances t),"
    " (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM imagesearch.pictures t),"
    " (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM imagesearch.encoders t),"
    " (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM imagesearch.access_keys t),"
    " (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM imagesearch.tasks t),"
    " (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM imagesearch.task_errors t),"
    " (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM imagesearch.storage_locations t)"
)


@pytest.fixture(scope="module")
def target(service, tmp_path_factory):
    """An instance holding one picture (stored/1.jpg) with its attributes, and a storage location
    "hostile-local" with a folder /p and a symlink /out that leads out of it."""
    name = "hostile-target"
    if name in {i.name for i in service.list_instances()}:
        service.delete_instance(name)
    service.create_instance(name, "generic", qps=100_000)
    root = tmp_path_factory.mktemp("hostile-location")
    (root / "p").mkdir()
    (root / "out").symlink_to(root.parent)
    if "hostile-local" in {location.name for location in service.storage.listing()}:
        service.storage.remove("hostile-local")
    service.storage.add("hostile-local", str(root))
    service.add_image(name, "stored", "1.jpg", encode(noise(150, 150, seed=3)),
                      attributes=corpus_attributes())
    yield name
    service.delete_instance(name)
    service.storage.remove("hostile-local")


def corpus_attributes():
    from imagesearch_pg.service import Attributes

    return Attributes(int_attr=3, str_attr="red")


def digest(engine) -> tuple:
    with engine.connect() as conn:
        return tuple(conn.execute(DIGEST).one())


def encoded(fields: dict) -> bytes:
    pairs = []
    for name, value in fields.items():
        if name == "__twice__":
            pairs.append(f"{value}={quote(fields[value], safe='')}")
        elif value is not None:
            pairs.append(f"{name}={quote(value, safe='')}")
    return "&".join(pairs).encode()


def request_fields(target: str, action: str, changes: dict) -> dict:
    fields = {"InstanceName": target, **corpus.VALID[action]}
    fields.update(changes)
    return fields


def send(server, credentials, action: str, body: bytes, *, method="POST", path="/", content_type=None):
    """The answer to the request, signed; while it is Throttling, signed and sent again after a pause."""
    options = {} if content_type is None else {"content_type": content_type}
    for _ in range(100):  # 10 s: the limits admit the next ones within one
        headers = signed_request(server, *credentials, body, action=action, **options)
        response = requests.request(method, f"http://{server}{path}", data=body, headers=headers, timeout=60)
        if response.status_code != 429:
            break
        time.sleep(0.1)
    return response


def assert_refused(response, status, code, before, engine):
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    answer = response.json()
    assert (response.status_code, answer.get("Code")) == (status, code), answer
    assert answer["Message"] and answer["RequestId"]
    assert digest(engine) == before


def send_rpc(server, credentials, action: str, fields: dict, *, method="POST") -> requests.Response:
    """The answer to the request signed in the RPC style (the Node.js SDK's placement: the common parameters
    in the query string, the action's in the form body); while it is Throttling, signed and sent again."""
    signed = {name: value for name, value in fields.items() if name != "__twice__" and value is not None}
    for _ in range(100):
        query, _ = rpc_signed(*credentials, action, signed, method=method)
        response = requests.request(method, f"http://{server}/?{form_encoded(query)}", data=encoded(fields),
                                    headers={"content-type": "application/x-www-form-urlencoded"}, timeout=60)
        if response.status_code != 429:
            break
        time.sleep(0.1)
    return response


@pytest.mark.parametrize("style", ["ACS3", "RPC"])
@pytest.mark.parametrize("case", corpus.cases(), ids=lambda case: case[0])
def test_hostile_parameters(server, credentials, target, engine, case, style):
    _, action, changes, status, code = case
    before = digest(engine)
    fields = request_fields(target, action, changes)
    if style == "RPC":
        response = send_rpc(server, credentials, action, fields)
    else:
        response = send(server, credentials, action, encoded(fields))
    if status is None:  # accepted on purpose (see the corpus)
        assert response.status_code == 200, response.text[:300]
        return
    assert_refused(response, status, code, before, engine)


WIRE = [
    ("invalid-utf8-value", lambda body: body + b"&StrAttr=%FF%FE", None, "POST", "/", 400, "InvalidParameter"),
    ("json-body", lambda body: b'{"InstanceName": "x"}', "application/json", "POST", "/", 400, "MissingParameter"),
    ("get", lambda body: body, None, "GET", "/", 403, "SignatureDoesNotMatch"),  # the method is signed
    ("put", lambda body: body, None, "PUT", "/", 405, "MethodNotAllowed"),
    ("other-path", lambda body: body, None, "POST", "/v1/", 404, "InvalidPath"),
]


@pytest.mark.parametrize("action", corpus.ACTIONS)
@pytest.mark.parametrize("wire", WIRE, ids=lambda wire: wire[0])
def test_hostile_encodings_methods_and_paths(server, credentials, target, engine, action, wire):
    _, change, content_type, method, path, status, code = wire
    before = digest(engine)
    body = change(encoded(request_fields(target, action, {})))
    response = send(server, credentials, action, body, method=method, path=path, content_type=content_type)
    assert_refused(response, status, code, before, engine)


@pytest.mark.parametrize("action", corpus.ACTIONS)
@pytest.mark.parametrize("repeat", corpus.REPEATED_HEADERS, ids=lambda repeat: repeat[0])
def test_a_header_sent_twice_is_refused_before_the_action_is_read(server, credentials, target, engine, action, repeat):
    _, name, value, before = repeat
    body = encoded(request_fields(target, action, {}))
    headers = with_repeat(signed_request(server, *credentials, body, action=action), name,
                          value.format(length=len(body)), before=before)
    unchanged = digest(engine)
    status, answer = exchange(server, request_bytes(headers, body))
    expected = corpus.REFUSED_AS_HTTP.get(name, (403, "SignatureDoesNotMatch", "more than once"))
    assert (status, answer["Code"]) == expected[:2] and expected[2] in answer["Message"], answer
    assert answer["RequestId"] and digest(engine) == unchanged


def test_the_corpus_is_large_and_covers_every_action():
    cases = corpus.cases()
    assert len(cases) + (len(WIRE) + len(corpus.REPEATED_HEADERS)) * len(corpus.ACTIONS) > 500  # the README: "over 500"
    assert {action for _, action, *_ in cases} == set(corpus.ACTIONS) and len(corpus.ACTIONS) == 14


# ---- the signature fuzz ------------------------------------------------------------------------------

DESTRUCTIVE = {
    "DeleteImage": {"ProductId": "stored", "PicName": "1.jpg"},
    "UpdateImage": {"ProductId": "stored", "PicName": "1.jpg", "IntAttr": "99"},
    "AddImage": {"ProductId": "fuzz", "PicName": "1.jpg", "PicContent": corpus.GOOD_PICTURE},
}


def _different(rng: random.Random, value: str) -> str:
    while True:
        changed = value[:-1] + rng.choice("0123456789abcdefXYZ") if value else "x"
        if changed.strip() != value.strip():
            return changed


def mutate(rng: random.Random, headers: dict, body: bytes) -> tuple[str, dict, bytes, str, str, str]:
    """One change to a valid signed request: (what, headers, body, method, path, query)."""
    headers = dict(headers)
    kind = rng.choice(["body-byte", "header-value", "drop-header", "extra-acs-header", "signature-digit",
                       "signed-list", "credential", "date", "query", "method", "path", "append-body"])
    method, path, query = "POST", "/", ""
    if kind == "body-byte":
        at = rng.randrange(len(body))
        body = body[:at] + bytes([body[at] ^ (1 + rng.randrange(255))]) + body[at + 1:]
    elif kind == "append-body":
        body = body + b"&IsDeleteByFilter=true"
    elif kind == "header-value":
        name = rng.choice([n for n in headers if n != "Authorization"])
        headers[name] = _different(rng, headers[name])
    elif kind == "drop-header":
        del headers[rng.choice(["x-acs-action", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256",
                                "x-acs-version", "content-type", "Authorization"])]
    elif kind == "extra-acs-header":
        headers[rng.choice(["x-acs-action-override", "x-acs-security-token", "x-acs-signature-method"])] = "x"
    elif kind == "signature-digit":
        auth = headers["Authorization"]
        at = rng.randrange(len(auth) - 64, len(auth))
        headers["Authorization"] = auth[:at] + ("0" if auth[at] != "0" else "1") + auth[at + 1:]
    elif kind == "signed-list":
        auth = headers["Authorization"]
        names = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
        names.remove(rng.choice(names))
        headers["Authorization"] = auth.replace(auth.split("SignedHeaders=")[1].split(",")[0], ";".join(names))
    elif kind == "credential":
        auth = headers["Authorization"]
        key = auth.split("Credential=")[1].split(",")[0]
        headers["Authorization"] = auth.replace(key, _different(rng, key))
    elif kind == "date":
        headers["x-acs-date"] = rng.choice(["2020-01-01T00:00:00Z", "yesterday", headers["x-acs-date"][:-1] + "+01:00"])
    elif kind == "query":
        query = rng.choice(["IsDeleteByFilter=true&Filter=int_attr%3E0", "ProductId=other", "Action=DeleteImage"])
    elif kind == "method":
        method = rng.choice(["PUT", "PATCH", "DELETE"])
    elif kind == "path":
        path = rng.choice(["/x", "/%2F", "/%2e"])  # (requests itself turns "//" and "/?" into "/")
    return kind, headers, body, method, path, query


def test_signature_fuzz_refuses_every_mutation_and_changes_nothing(server, credentials, target, engine):
    rng = random.Random(20261201)
    kinds: dict[str, int] = {}
    for _ in range(1000):
        action = rng.choice(list(DESTRUCTIVE))
        body = encoded({"InstanceName": target, **DESTRUCTIVE[action]})
        headers = signed_request(server, *credentials, body, action=action)
        kind, headers, body, method, path, query = mutate(rng, headers, body)
        kinds[kind] = kinds.get(kind, 0) + 1
        before = digest(engine)
        response = requests.request(method, f"http://{server}{path}" + (f"?{query}" if query else ""), data=body,
                                    headers=headers, timeout=60)
        assert response.status_code in (400, 403, 404, 405), (kind, response.status_code, response.text[:300])
        assert response.json()["Code"] and response.headers["Content-Type"].startswith("application/json")
        assert digest(engine) == before, kind
    assert len(kinds) == 12 and min(kinds.values()) >= 40, kinds
    # The same requests unchanged do what they say: the refusals above came from the mutations.
    for action in ("UpdateImage", "DeleteImage"):
        response = send(server, credentials, action, encoded({"InstanceName": target, **DESTRUCTIVE[action]}))
        assert response.status_code == 200 and digest(engine) != before
        before = digest(engine)


# ---- the signature fuzz, RPC style -------------------------------------------------------------------

# Changes that make another request: each is refused on its own.
RPC_CHANGES = ["value", "added-to-query", "added-to-form", "removed", "duplicated", "recased", "timestamp",
               "stale", "nonce", "signature", "method", "path", "authorization", "action-header",
               "version-header", "signature-method"]
# Changes that keep the request (the same parameters, encoded or placed otherwise): refused as a replay of it.
RPC_SAME = ["re-encoded", "moved-to-form", "moved-to-query"]


def rpc_mutate(rng: random.Random, kind: str, query: dict, form: dict):
    """One change to a signed RPC call: (method, path, query string, form body, headers)."""
    method, path, headers = "POST", "/", {}
    query, form = dict(query), dict(form)
    if kind == "value":
        name = rng.choice([n for n in form if n != "InstanceName"])
        form[name] = _different(rng, form[name])
    elif kind == "added-to-query":
        query[rng.choice(["IsDeleteByFilter", "Filter", "RegionId"])] = "x"
    elif kind == "added-to-form":
        form[rng.choice(["IsDeleteByFilter", "StrAttr", "Crop"])] = "true"
    elif kind == "removed":
        place = rng.choice([query, form])
        del place[rng.choice([n for n in place if n not in ("Action", "AccessKeyId", "Signature")])]
    elif kind == "recased":
        name = rng.choice([n for n in form if n != "InstanceName"])
        form[name.lower()] = form.pop(name)
    elif kind == "timestamp":
        query["Timestamp"] = query["Timestamp"][:-2] + ("0" if query["Timestamp"][-2] != "0" else "1") + "Z"
    elif kind == "nonce":
        query["SignatureNonce"] = _different(rng, query["SignatureNonce"])
    elif kind == "signature":
        query["Signature"] = ("A" if query["Signature"][0] != "A" else "B") + query["Signature"][1:]
    elif kind == "method":
        method = rng.choice(["GET", "PUT", "DELETE"])
    elif kind == "path":
        path = rng.choice(["/x", "/%2F", "/%2e"])
    elif kind == "authorization":
        headers["Authorization"] = "ACS3-HMAC-SHA256 Credential=k,SignedHeaders=host,Signature=" + "0" * 64
    elif kind == "action-header":
        headers["x-acs-action"] = "DeleteImage" if query["Action"] != "DeleteImage" else "UpdateImage"
    elif kind == "version-header":
        headers["x-acs-version"] = "2019-03-25"
    elif kind == "signature-method":
        query["SignatureMethod"] = "HMAC-SHA256"
    elif kind == "moved-to-form":
        name = rng.choice(["Timestamp", "SignatureNonce", "Format", "Version", "SignatureMethod", "SignatureVersion"])
        form[name] = query.pop(name)
    elif kind == "moved-to-query":
        name = rng.choice(list(form))
        query[name] = form.pop(name)
    query_string, body = form_encoded(query), form_encoded(form)
    if kind == "duplicated":
        name, value = rng.choice(list(form.items()))
        body += f"&{form_encoded({name: value})}"
    elif kind == "re-encoded":  # a letter of the nonce as its escape
        at = next(i for i, c in enumerate(query["SignatureNonce"]) if c.isalpha())
        escaped = "%" + format(ord(query["SignatureNonce"][at]), "02X")
        query_string = query_string.replace(f"SignatureNonce={query['SignatureNonce']}",
                                            f"SignatureNonce={query['SignatureNonce'][:at]}{escaped}"
                                            f"{query['SignatureNonce'][at + 1:]}")
    return method, path, query_string, body, headers


def test_rpc_signature_fuzz_refuses_every_mutation_and_changes_nothing(server, credentials, target, engine):
    rng = random.Random(20261208)
    kinds: dict[str, int] = {}
    now = datetime.now(timezone.utc)
    for _ in range(600):
        kind = rng.choice(RPC_CHANGES + RPC_SAME)
        kinds[kind] = kinds.get(kind, 0) + 1
        action = "UpdateImage" if kind in RPC_SAME else rng.choice(list(DESTRUCTIVE))
        params = {"InstanceName": target, **DESTRUCTIVE[action]}
        stamp = now - timedelta(minutes=20) if kind == "stale" else None
        query, form = rpc_signed(*credentials, action, params, timestamp=stamp)
        if kind in RPC_SAME:  # the call itself first: it is accepted, and it is the one the change replays
            original = requests.post(f"http://{server}/?{form_encoded(query)}", data=form_encoded(form),
                                     headers={"content-type": "application/x-www-form-urlencoded"}, timeout=60)
            assert original.status_code in (200, 404, 429), original.text[:300]  # 404: an earlier test deleted it
        method, path, query_string, body, headers = rpc_mutate(rng, kind, query, form)
        before = digest(engine)
        response = requests.request(method, f"http://{server}{path}?{query_string}", data=body,
                                    headers={"content-type": "application/x-www-form-urlencoded", **headers},
                                    timeout=60)
        assert response.status_code in (400, 403, 404, 405), (kind, response.status_code, response.text[:300])
        assert response.json()["Code"] and response.headers["Content-Type"].startswith("application/json")
        if kind in RPC_SAME:
            assert response.json()["Code"] == "SignatureNonceUsed", (kind, response.text[:300])
        assert digest(engine) == before, kind
    assert len(kinds) == len(RPC_CHANGES + RPC_SAME) and min(kinds.values()) >= 15, kinds
