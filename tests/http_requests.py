"""Hand-made requests to a test server: signed as the SDK signs them, or changed as a hostile client would."""

from __future__ import annotations

import requests

from benchmarks import signed_requests


def signed_request(endpoint, key_id, secret, body: bytes, *, action="Detail", **changes) -> dict[str, str]:
    return signed_requests.signed_headers(endpoint, key_id, secret, body, action=action, **changes)


def post(endpoint, headers, body: bytes, query="") -> tuple[int, dict]:
    response = requests.post(f"http://{endpoint}/" + (f"?{query}" if query else ""), data=body, headers=headers, timeout=30)
    return response.status_code, response.json()
