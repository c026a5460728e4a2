"""Serving on an address nothing can listen on fails at once with one clear error, not uvicorn's exit
from inside its startup (a SystemExit in an exception group)."""

from __future__ import annotations

import socket

import pytest

from flock import ApiKeys, ConfigurationError, Flock, Principal
from flock.cli import main

pytestmark = pytest.mark.anyio

AUTH = ApiKeys({"address-test-key": Principal(tenant="a", scopes={"read"})})


async def test_a_port_in_use_says_to_choose_another() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(ConfigurationError) as caught:
            await Flock().serve("127.0.0.1", port, auth=AUTH)
    assert str(caught.value) == (
        f"cannot serve on 127.0.0.1:{port}: the port is already in use (another server, or an earlier one "
        "still running): choose another port (--port, or port=) or stop that process."
    )


async def test_a_host_that_does_not_resolve_says_which_addresses_work() -> None:
    with pytest.raises(ConfigurationError, match=r"the host name does not resolve .*127\.0\.0\.1 for this"):
        await Flock().serve("no-such-host.invalid", 8000, auth=AUTH)


def test_flock_serve_reports_a_port_in_use_in_one_line(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tiny_app.py").write_text("from flock import Flock\nflock = Flock()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLOCK_API_KEYS", '{"address-test-key": {"tenant": "a", "scopes": ["read"]}}')
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "tiny_app:flock", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err == f"flock: error: cannot serve on 127.0.0.1:{port}: the port is already in use " + (
        "(another server, or an earlier one still running): choose another port (--port, or port=) or "
        "stop that process.\n"
    )
