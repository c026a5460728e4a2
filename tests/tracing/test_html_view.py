"""`flock traces show ID --html FILE`: a self-contained page, rendered in real headless Chromium."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from browser import CHROMIUM, Elements, chromium
from trace_support import Recorder

from flock import cli
from flock._tracing.trace_html import render_html
from flock._tracing.trace_query import TraceStore
from flock._tracing.trace_store import SQLiteSpanExporter

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's `chromium` is not installed (apt-get install -y chromium)"
)


def write_page(recorded: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    db, trace_id = recorded
    page = tmp_path / "out" / "trace.html"
    assert cli.main(["traces", "show", trace_id[:8], "--db", str(db), "--html", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    return page


def test_page_is_self_contained(recorded: tuple[Path, str], tmp_path: Path, capsys) -> None:
    html = write_page(recorded, tmp_path, capsys).read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "<link" not in html and "@import" not in html and "url(http" not in html
    assert not re.search(r"""<script[^>]+src=|<img[^>]+src=|fetch\(|XMLHttpRequest""", html)
    # the only URL is the SVG namespace, which browsers never fetch
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}


def test_untrusted_names_cannot_break_out_of_the_page(db: Path, tmp_path: Path) -> None:
    exporter = SQLiteSpanExporter(db)
    rec = Recorder(exporter)
    evil = "</script><script>alert(1)</script><b>"
    with (
        rec.span(f"flock.run {evil}", 0, 10, flock__run__name=evil) as run,
        rec.span(f"flock.activate {evil}", 1, 9, run, flock__agent=evil, flock__input__types=[evil]),
    ):
        pass
    rec.provider.force_flush()
    with TraceStore(db) as store:
        trace = store.load(store.resolve("latest"))
    html = render_html(trace)
    assert evil not in html
    assert "<script>alert(1)" not in html
    assert html.count("<script") == 2  # the data island and the page script, nothing injected


@needs_chromium
def test_chromium_shows_the_run(recorded: tuple[Path, str], tmp_path: Path, capsys) -> None:
    page = write_page(recorded, tmp_path, capsys)
    result = chromium(page, tmp_path, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = Elements()
    dom.feed(result.stdout)
    [html] = [e for e in dom.elements if e[0] == "html"]
    assert html[1].get("data-ready") == "true"  # the page script ran to the end without an error

    node_labels = [e for e in dom.elements if "node" in e[1].get("class", "").split()]
    keys = {e[1]["data-key"] for e in node_labels}
    assert keys == {
        "source:external",
        "type:Idea",
        "agent:planner",
        "type:Plan",
        "type:Task",
        "agent:worker",
        "type:Result",
        "agent:reviewer",
        "type:Report",
    }
    failed = [e[1]["data-key"] for e in node_labels if "failed" in e[1]["class"].split()]
    assert failed == ["agent:worker"]
    edges = {(e[1]["data-from"], e[1]["data-to"]) for e in dom.elements if "edge" in e[1].get("class", "")}
    assert ("type:Task", "agent:worker") in edges
    assert ("agent:worker", "type:Result") in edges
    assert ("type:Result", "agent:reviewer") in edges

    names = dom.text("name")
    assert names[0] == "flock.run research"
    assert names.count("flock.activate worker") == 3
    assert "execute_tool web_search" in names and "flock.reask" in names
    infos = " ".join(dom.text("info"))
    assert "tokens 420 in / 180 out" in infos
    assert "ContractViolation" in infos
    assert "2,870 in / 840 out" in " ".join(dom.text("card"))
    assert any(t.startswith("1") and t.endswith("Errors") for t in dom.text("card"))
    assert len([e for e in dom.elements if "row" in e[1].get("class", "").split()]) == 31
    titles = [t for t in dom.text("title") if t]
    assert {"planner", "worker", "reviewer", "Idea", "Task", "Result"} <= set(titles)


@needs_chromium
def test_a_span_link_opens_its_details(recorded: tuple[Path, str], tmp_path: Path, capsys) -> None:
    db, _ = recorded
    page = write_page(recorded, tmp_path, capsys)
    with TraceStore(db) as store:
        trace = store.load(store.resolve("latest"))
    failed = next(s for s in trace.spans if s.is_error and s.name == "flock.evaluate worker")
    result = chromium(page, tmp_path, "--dump-dom", fragment=f"#span={failed.span_id}")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = Elements()
    dom.feed(result.stdout)
    [details] = [e for e in dom.elements if e[1].get("id") == "details"]
    text = "".join(details[2])
    assert text.startswith(f"flock.evaluate workerspan {failed.span_id} · ERROR")
    assert "flock.engine" in text and "DSPyEngine" in text  # the attribute table
    assert "Event exception" in text and "[REDACTED]" in text  # the exception event, scrubbed
    [selected] = [e for e in dom.elements if "sel" in e[1].get("class", "").split()]
    assert selected[1]["data-id"] == failed.span_id


@needs_chromium
def test_chromium_screenshot(recorded: tuple[Path, str], tmp_path: Path, capsys) -> None:
    page = write_page(recorded, tmp_path, capsys)
    shot = tmp_path / "shot.png"
    result = chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1400,900", "--hide-scrollbars")
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1400, 900)
    assert len(data) > 30_000  # a blank page compresses to a few kilobytes; this one has content


def test_the_page_shows_model_latency_percentiles(recorded: tuple[Path, str], tmp_path: Path, capsys) -> None:
    from flock._tracing.latency import percentiles
    from flock._tracing.trace_view import fmt_duration

    db, trace_id = recorded
    with TraceStore(db) as store:
        trace = store.load(store.resolve(trace_id[:8]))
    chats = [(s.end_ns - s.start_ns) / 1e9 for s in trace.spans if s.category == "model"]
    assert len(chats) >= 2
    html = write_page(recorded, tmp_path, capsys).read_text()
    section = html.split('<section id="latency">', 1)[1].split("</section>", 1)[0]
    p50, p90, p99, top = percentiles(chats)
    cells = [f"<td>{fmt_duration(int(q * 1e9))}</td>" for q in (p50, p90, p99, top)]
    assert f"<tr><td>openai/gpt-4.1</td><td>{len(chats)}</td>{''.join(cells)}</tr>" in section
