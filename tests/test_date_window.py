"""The request date's window on the production server, with the numbers the README gives: "an x-acs-date more
than 15 minutes from the server's clock (RequestExpired), a nonce seen before (SignatureNonceUsed)". The
dates are signed into the requests (14 and 16 minutes off leave a minute either side of the edge for the
request's own time); no clock is waited for. A nonce is kept as long as its request's date can still be
accepted: first seen 28 minutes ago, when its date was 14 minutes ahead of the server, it is still refused
now that the date is 14 minutes behind."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from flask_app import signature
from imagesearch_pg.store.tables import request_nonces
from tests.http_requests import post, signed_request


def dated(minutes: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(minutes=minutes)


@pytest.mark.parametrize("minutes", [-14, 14])
def test_a_date_up_to_15_minutes_from_the_servers_clock_is_accepted(server, credentials, shop, minutes):
    body = f"InstanceName={shop}".encode()
    status, answer = post(server, signed_request(server, *credentials, body, date=dated(minutes)), body)
    assert status == 200, answer


@pytest.mark.parametrize("minutes", [-16, 16])
def test_a_date_more_than_15_minutes_from_the_servers_clock_is_refused(server, credentials, shop, minutes):
    body = f"InstanceName={shop}".encode()
    status, answer = post(server, signed_request(server, *credentials, body, date=dated(minutes)), body)
    assert (status, answer.get("Code")) == (403, "RequestExpired"), answer
    assert "more than 15 minutes from the server's time" in answer["Message"]


def backdate(engine, nonce: str, minutes: int) -> None:
    with engine.begin() as conn:
        moved = conn.execute(sa.update(request_nonces).where(request_nonces.c.nonce == nonce)
                             .values(seen_at=request_nonces.c.seen_at - timedelta(minutes=minutes))).rowcount
    assert moved == 1


def kept(engine, nonce: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.exists().where(request_nonces.c.nonce == nonce))).scalar_one()


def test_a_nonce_is_kept_as_long_as_its_date_can_be_accepted(server, credentials, shop, keys, engine):
    body = f"InstanceName={shop}".encode()
    replayed = signed_request(server, *credentials, body, date=dated(-14))
    assert post(server, replayed, body)[0] == 200
    # As if it had first come 28 minutes ago, its date then 14 minutes ahead of the server's clock.
    backdate(engine, replayed["x-acs-signature-nonce"], 28)
    # Beside it, one seen 31 minutes ago: past any date the server accepts, so the forgetting has work to do.
    gone = signed_request(server, *credentials, body, date=dated(0), nonce=uuid.uuid4().hex)
    assert post(server, gone, body)[0] == 200
    backdate(engine, gone["x-acs-signature-nonce"], 31)

    keys.forget_nonces(signature.DATE_WINDOW)  # what the server does now and then, with the window it checks

    assert not kept(engine, gone["x-acs-signature-nonce"])
    assert kept(engine, replayed["x-acs-signature-nonce"])
    status, answer = post(server, replayed, body)  # its date is still within the window: only the nonce stops it
    assert (status, answer.get("Code")) == (403, "SignatureNonceUsed"), answer
