"""Browser sessions (flock._server.sessions): tokens, expiry on the clock given, the bound, and the
request checks the deny-by-default layer applies to cookie-authenticated requests."""

from __future__ import annotations

from flock import Principal
from flock._server.sessions import Sessions, forgery_safe, same_origin, session_token

ALICE = Principal(tenant="a", scopes={"read"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_stands_for_its_principal_until_it_expires_or_closes() -> None:
    clock = Clock()
    store = Sessions(ttl=60, clock=clock)
    token = store.open(ALICE)
    assert len(token) >= 40 and store.principal(token) == ALICE
    assert store.principal(token + "x") is None and store.principal(None) is None
    clock.now += 59
    assert store.principal(token) == ALICE
    clock.now += 1
    assert store.principal(token) is None and len(store) == 0  # expired and forgotten
    other = store.open(ALICE)
    store.close(other)
    assert store.principal(other) is None


def test_sessions_are_bounded() -> None:
    store = Sessions(ttl=60, clock=Clock(), limit=3)
    tokens = [store.open(ALICE) for _ in range(5)]
    assert len(store) == 3
    assert [store.principal(t) is not None for t in tokens] == [False, False, True, True, True]


def test_cookie_and_request_checks() -> None:
    assert session_token([(b"cookie", b"theme=dark; flock_session=abc123; x=1")]) == "abc123"
    assert session_token([(b"cookie", b"flock_session=")]) is None
    assert session_token([(b"authorization", b"Bearer k")]) is None
    assert forgery_safe("GET", [])
    assert not forgery_safe("POST", [(b"content-type", b"application/x-www-form-urlencoded")])
    assert not forgery_safe("POST", [(b"content-type", b"text/plain")])
    assert forgery_safe("POST", [(b"content-type", b"application/json; charset=utf-8")])
    assert forgery_safe("DELETE", [(b"x-flock-request", b"1")])
    host = (b"host", b"127.0.0.1:8000")
    assert same_origin([host])
    assert same_origin([host, (b"origin", b"http://127.0.0.1:8000")])
    assert not same_origin([host, (b"origin", b"http://evil.example")])
    assert not same_origin([host, (b"sec-fetch-site", b"same-site")])
    assert same_origin([host, (b"sec-fetch-site", b"same-origin")])
