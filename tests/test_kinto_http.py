"""kinto-http, the official Python client, against a real ``kinto start`` using kinto-fxa.

The client authenticates the way its own documentation says: ``auth=BearerTokenAuth(token)``
(``kinto_http.BearerTokenAuth``, a ``requests`` auth class setting
``Authorization: Bearer <token>``); nothing patches headers by hand. Tokens come from the
local FxA server (a real HTTP server) and are verified by the Kinto process over HTTP.

One Kinto process per configuration serves the whole module (each test uses users of its
own, so their default buckets never meet).
"""

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kinto_http import BearerTokenAuth, Client, KintoException

from kinto_fxa.testing.fxa_server import LocalFxAServer
from tests.conftest import kinto_settings
from tests.helpers import KintoProcess


NOTES_SCOPE = "profile app-notes"
PAGE_SIZE = 3


def start_kinto(workdir: Path, settings: dict[str, Any]) -> Iterator[KintoProcess]:
    process = KintoProcess(workdir, settings)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def kinto(
    tmp_path_factory: pytest.TempPathFactory, fxa_server_session: LocalFxAServer
) -> Iterator[KintoProcess]:
    """Top-level client only: ``profile`` tokens, user id ``fxa:<uid>``; small pages."""
    settings = kinto_settings(fxa_server_session.oauth_uri, paginate_by=PAGE_SIZE)
    yield from start_kinto(tmp_path_factory.mktemp("kinto-http"), settings)


@pytest.fixture(scope="module")
def kinto_notes(
    tmp_path_factory: pytest.TempPathFactory, fxa_server_session: LocalFxAServer
) -> Iterator[KintoProcess]:
    """A named client ``notes``: tokens are routed among named clients only."""
    settings = kinto_settings(
        fxa_server_session.oauth_uri,
        **{
            "fxa-oauth.clients.notes.client_id": "notes-client",
            "fxa-oauth.clients.notes.required_scope": NOTES_SCOPE,
        },
    )
    yield from start_kinto(tmp_path_factory.mktemp("kinto-http-notes"), settings)


def new_email() -> str:
    """A user nobody else in the module uses (the Kinto processes outlive the tests)."""
    return f"user-{secrets.token_hex(6)}@example.com"


def client_for(kinto: KintoProcess, token: str, collection: str = "notes") -> Client:
    return Client(
        server_url=kinto.url + "/v1",
        auth=BearerTokenAuth(token),
        bucket="default",
        collection=collection,
        timeout=10,
    )


def status_of(excinfo: pytest.ExceptionInfo[KintoException]) -> int:
    response = excinfo.value.response
    assert response is not None, excinfo.value
    return int(response.status_code)


def test_bearer_token_auth_sets_the_authorization_header() -> None:
    # What kinto-http's auth object does to a request (so the tests below do use Bearer).
    import requests

    prepared = requests.Request("GET", "http://kinto.invalid/v1/").prepare()
    BearerTokenAuth("abc.def.ghi")(prepared)
    assert prepared.headers["Authorization"] == "Bearer abc.def.ghi"


def test_server_info_shows_the_fxa_capability_and_the_user(
    kinto: KintoProcess, fxa_server: LocalFxAServer
) -> None:
    uid = fxa_server.uid_for(new_email())
    info = client_for(kinto, fxa_server.mint_jwt(uid)).server_info()

    assert "fxa" in info["capabilities"]
    assert info["user"]["id"] == f"fxa:{uid}"
    assert "bucket" in info["user"]  # The default_bucket plugin tells the user's bucket id.


def test_server_info_with_an_opaque_token(kinto: KintoProcess, fxa_server: LocalFxAServer) -> None:
    uid = fxa_server.uid_for(new_email())
    info = client_for(kinto, fxa_server.mint_opaque(uid)).server_info()
    assert info["user"]["id"] == f"fxa:{uid}"
    assert fxa_server.calls["/v1/verify"] == 1


def test_records_crud_in_the_default_bucket(
    kinto: KintoProcess, fxa_server: LocalFxAServer
) -> None:
    client = client_for(kinto, fxa_server.mint_jwt(fxa_server.uid_for(new_email())))

    created = client.create_record(data={"title": "first"})["data"]
    assert created["title"] == "first"
    assert client.get_record(id=created["id"])["data"]["title"] == "first"

    client.update_record(id=created["id"], data={"title": "replaced"})
    replaced = client.get_record(id=created["id"])["data"]
    assert {k: v for k, v in replaced.items() if k != "last_modified"} == {
        "id": created["id"],
        "title": "replaced",
    }
    assert replaced["last_modified"] > created["last_modified"]
    client.patch_record(id=created["id"], data={"done": True})
    assert client.get_record(id=created["id"])["data"]["done"] is True
    assert [r["id"] for r in client.get_records()] == [created["id"]]

    deleted = client.delete_record(id=created["id"])  # kinto-http returns the tombstone.
    assert deleted["deleted"] is True
    assert client.get_records() == []
    with pytest.raises(KintoException) as excinfo:
        client.get_record(id=created["id"])
    assert status_of(excinfo) == 404


def test_a_batch_of_several_operations(kinto: KintoProcess, fxa_server: LocalFxAServer) -> None:
    client = client_for(kinto, fxa_server.mint_jwt(fxa_server.uid_for(new_email())))

    with client.batch() as batch:
        batch.create_record(id="a", data={"n": 1})
        batch.create_record(id="b", data={"n": 2})
        batch.create_record(id="c", data={"n": 3})
        batch.patch_record(id="a", data={"n": 10})
        batch.delete_record(id="b")
    results = batch.results()

    assert len(results) == 5
    assert results[0]["data"]["n"] == 1
    assert results[3]["data"]["n"] == 10
    assert results[4]["data"]["id"] == "b"
    assert results[4]["data"]["deleted"] is True
    records = sorted(client.get_records(), key=lambda r: r["id"])
    assert [(r["id"], r["n"]) for r in records] == [("a", 10), ("c", 3)]


def test_listing_past_one_page(kinto: KintoProcess, fxa_server: LocalFxAServer) -> None:
    client = client_for(kinto, fxa_server.mint_jwt(fxa_server.uid_for(new_email())))
    total = 2 * PAGE_SIZE + 1
    with client.batch() as batch:
        for i in range(total):
            batch.create_record(id=f"r{i}", data={"i": i})

    # One page is what the server sends at a time (paginate_by)...
    assert len(client.get_records(pages=1)) == PAGE_SIZE
    # ...and kinto-http follows Next-Page (with the token) to the end.
    records = client.get_records()
    assert sorted(r["i"] for r in records) == list(range(total))
    assert len(list(client.get_paginated_records())) == 3  # Pages of 3, 3 and 1.


def test_two_users_cannot_read_each_others_default_bucket(
    kinto: KintoProcess, fxa_server: LocalFxAServer
) -> None:
    alice = client_for(kinto, fxa_server.mint_jwt(fxa_server.uid_for(new_email())))
    bob = client_for(kinto, fxa_server.mint_jwt(fxa_server.uid_for(new_email())))
    record = alice.create_record(data={"secret": "alice's"})["data"]
    alice_bucket = alice.server_info()["user"]["bucket"]
    bob_bucket = bob.server_info()["user"]["bucket"]
    assert alice_bucket != bob_bucket

    # "default" is each user's own bucket: Bob's is empty.
    assert bob.get_records() == []
    # Alice's bucket, named explicitly, is closed to Bob.
    with pytest.raises(KintoException) as excinfo:
        bob.get_record(id=record["id"], bucket=alice_bucket)
    assert status_of(excinfo) == 403
    with pytest.raises(KintoException) as excinfo:
        bob.get_records(bucket=alice_bucket)
    assert status_of(excinfo) == 403
    with pytest.raises(KintoException) as excinfo:
        bob.create_record(data={"from": "bob"}, bucket=alice_bucket)
    assert status_of(excinfo) == 403
    assert [r["id"] for r in alice.get_records(bucket=alice_bucket)] == [record["id"]]


def refused_tokens(fxa_server: LocalFxAServer, scope: str, client_id: str) -> dict[str, str]:
    uid = fxa_server.uid_for(new_email())
    an_hour_ago = int(time.time()) - 3600
    return {
        "expired": fxa_server.mint_jwt(
            uid, scope=scope, client_id=client_id, iat=an_hour_ago - 60, ttl=60
        ),
        "unknown key": fxa_server.mint_jwt(
            uid, scope=scope, client_id=client_id, signing_key=LocalFxAServer.new_key()
        ),
        "missing scope": fxa_server.mint_jwt(uid, scope="openid", client_id=client_id),
        "unknown opaque": secrets.token_hex(32),
    }


REFUSED = ("expired", "unknown key", "missing scope", "unknown opaque")


@pytest.mark.parametrize("kind", REFUSED)
def test_a_refused_token_raises_kinto_http_exception_with_the_401(
    kinto: KintoProcess, fxa_server: LocalFxAServer, kind: str
) -> None:
    token = refused_tokens(fxa_server, "profile", "kinto-client")[kind]
    client = client_for(kinto, token)

    with pytest.raises(KintoException) as excinfo:
        client.create_record(data={"title": "never stored"})
    assert status_of(excinfo) == 401
    response = excinfo.value.response
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert response.json()["errno"] == 104  # Kinto's "missing or invalid authorization".
    # Anonymous, not an error, on the public root.
    assert "user" not in client.server_info()


def test_a_token_of_the_named_client(
    kinto_notes: KintoProcess, fxa_server: LocalFxAServer
) -> None:
    uid = fxa_server.uid_for(new_email())
    token = fxa_server.mint_jwt(uid, scope=NOTES_SCOPE, client_id="notes-client")
    client = client_for(kinto_notes, token)

    user = client.server_info()["user"]
    assert user["id"] == f"fxa:{uid}-notes"
    assert f"fxa:{uid}" in user["principals"]  # So data can be shared with the person.
    created = client.create_record(data={"title": "a note"})["data"]
    assert [r["id"] for r in client.get_records()] == [created["id"]]
    # The bucket is the notes user's own one.
    assert client.get_bucket()["data"]["id"] == user["bucket"]


@pytest.mark.parametrize("kind", [*REFUSED, "top-level scope only"])
def test_a_refused_token_of_the_named_client_raises_the_401(
    kinto_notes: KintoProcess, fxa_server: LocalFxAServer, kind: str
) -> None:
    tokens = refused_tokens(fxa_server, NOTES_SCOPE, "notes-client")
    # With named clients, tokens are routed among them only: a valid ``profile`` token
    # (the top-level required scope) matches none of them.
    tokens["top-level scope only"] = fxa_server.mint_jwt(
        fxa_server.uid_for(new_email()), scope="profile", client_id="kinto-client"
    )
    client = client_for(kinto_notes, tokens[kind])

    with pytest.raises(KintoException) as excinfo:
        client.get_records()
    assert status_of(excinfo) == 401
    assert excinfo.value.response.headers["WWW-Authenticate"].startswith("Bearer ")
