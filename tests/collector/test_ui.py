"""The web viewer over the demo's stored runs: over HTTP, and in Debian's Chromium.

The demo runs once (as in test_demo) into its own database; the viewer is served from a
thread on 127.0.0.1, with the artifact store the demo wrote to.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from aiohttp import web

from collector_service.store.artifacts import LocalArtifactStore
from collector_service.ui.app import TokenCheck, allow_all, build_app
from collector_service.ui.db import ViewerDatabase
from tests.collector.test_demo import POLLUTED_ENTITIES, Demo, expected_findings, run_demo
from tests.fix_db import DatabaseFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@dataclass
class Viewer:
    base: str
    demo: Demo


@pytest.fixture(scope="module")
def demo(databases: DatabaseFactory, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[Demo, Path]:
    data_dir = tmp_path_factory.mktemp("demo-ui")
    result = run_demo(databases, data_dir)
    assert result.result.returncode == 0, str(result)
    # Two versions: the polluted runs are "v2", the healthy ones "v1".
    with psycopg.connect(result.url) as conn:
        conn.execute("UPDATE xray_runs SET version = CASE WHEN entity = ANY(%s) THEN 'v2'"
                     " ELSE 'v1' END", (sorted(POLLUTED_ENTITIES),))
    return result, data_dir


def serve(url: str, data_dir: Path, allows: TokenCheck = allow_all) -> Iterator[str]:
    """The viewer on a free 127.0.0.1 port, in a thread, until the generator is closed."""
    loop = asyncio.new_event_loop()
    app = build_app(ViewerDatabase(url), LocalArtifactStore(data_dir / "artifacts"), allows)
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def viewer(demo: tuple[Demo, Path]) -> Iterator[Viewer]:
    result, data_dir = demo
    for base in serve(result.url, data_dir):
        yield Viewer(base, result)


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def worst(viewer: Viewer) -> dict[str, object]:
    found: dict[str, object] = expected_findings(viewer.demo.url)["worst"]
    return found


def test_runs_page_lists_every_run_and_filters_by_drop(viewer: Viewer) -> None:
    with psycopg.connect(viewer.demo.url) as conn:
        all_ids = {r[0] for r in conn.execute("SELECT run_id FROM xray_runs")}
        largest = dict(conn.execute("SELECT run_id, max(drop_ratio) FROM xray_steps"
                                    " GROUP BY run_id").fetchall())
    threshold = min(d for d in largest.values() if d is not None)  # some runs fall short
    flagged = {run for run, drop in largest.items() if drop is not None and drop > threshold}
    status, body = get(viewer.base + "/runs")
    assert status == 200
    assert set(re.findall(r'href="/runs/([^"?]+)"', body.decode())) == all_ids
    status, body = get(viewer.base + f"/runs?min_drop={threshold * 100}")
    assert set(re.findall(r'href="/runs/([^"?]+)"', body.decode())) == flagged
    assert flagged != all_ids
    status, body = get(viewer.base + "/runs?entity=B0CASE0002&status=ok")
    assert len(set(re.findall(r'href="/runs/([^"?]+)"', body.decode()))) == 1


def test_runs_page_pages_by_key_without_repeats(viewer: Viewer) -> None:
    from collector_service.ui import app as ui_app

    seen: list[str] = []
    old = ui_app.PAGE_SIZE
    ui_app.PAGE_SIZE = 4
    try:
        url: str | None = viewer.base + "/runs"
        while url:
            body = get(url)[1].decode()
            seen += re.findall(r'href="/runs/([^"?]+)"', body)
            nxt = re.search(r'href="([^"]+)" rel="next"', body)
            url = viewer.base + nxt.group(1).replace("&amp;", "&") if nxt else None
    finally:
        ui_app.PAGE_SIZE = old
    with psycopg.connect(viewer.demo.url) as conn:
        newest_first = [r[0] for r in conn.execute(
            "SELECT run_id FROM xray_runs ORDER BY started_at DESC, run_id DESC")]
    assert seen == newest_first


def test_steps_page_is_the_seed_query(viewer: Viewer) -> None:
    with psycopg.connect(viewer.demo.url) as conn:
        expected = {r[0] for r in conn.execute(
            "SELECT run_id FROM xray_steps WHERE step_type = 'filter' AND drop_ratio > 0.9")}
    status, body = get(viewer.base + "/steps?type=filter&min_drop=90")
    assert status == 200 and expected
    assert set(re.findall(r'href="/runs/([^"#]+)#step-', body.decode())) == expected
    assert get(viewer.base + "/steps?type=nope")[0] == 400


def test_bad_filter_is_named(viewer: Viewer) -> None:
    status, body = get(viewer.base + "/runs?min_drop=abc")
    assert status == 400 and b"drop &#39;abc&#39;" in body


def test_run_page_shows_funnel_drop_and_reject_reason(viewer: Viewer) -> None:
    w = worst(viewer)
    status, body = get(viewer.base + f"/runs/{w['run_id']}")
    text = body.decode()
    assert status == 200
    assert f"{w['candidates_in']} → {w['candidates_out']} (dropped {w['drop_ratio']:.1%})" \
        in text
    assert "category_mismatch" in text
    assert get(viewer.base + "/runs/no-such-run")[0] == 404


def test_artifact_download_is_the_stored_bytes(viewer: Viewer) -> None:
    with psycopg.connect(viewer.demo.url) as conn:
        row = conn.execute("SELECT artifact_id FROM xray_artifacts WHERE storage = 'local'"
                           " LIMIT 1").fetchone()
    assert row is not None, "the demo stored no artifact"
    status, body = get(viewer.base + f"/artifacts/{row[0]}")
    assert status == 200 and hashlib.sha256(body).hexdigest() == row[0]
    assert get(viewer.base + "/artifacts/nothex")[0] == 400


def test_viewer_session_cannot_write(viewer: Viewer) -> None:
    from collector_service.ui.db import READ_ONLY

    with psycopg.connect(viewer.demo.url, options=READ_ONLY) as conn, \
            pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("DELETE FROM xray_runs")


def test_tokens_are_required_when_configured(demo: tuple[Demo, Path]) -> None:
    result, data_dir = demo
    for base in serve(result.url, data_dir, lambda header: header == "Bearer s3cret"):
        assert get(base + "/runs")[0] == 401
        assert get(base + "/runs", {"Authorization": "Bearer wrong"})[0] == 401
        assert get(base + "/runs", {"Authorization": "Bearer s3cret"})[0] == 200
        assert get(base + "/runs", {"Cookie": "xray_ui_token=s3cret"})[0] == 200
        form = urllib.parse.urlencode({"token": "s3cret", "next": "/runs"}).encode()
        request = urllib.request.Request(base + "/login", data=form)

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as answer:
            opener.open(request, timeout=30)
        with answer.value:
            assert answer.value.code == 303
            cookie = answer.value.headers["Set-Cookie"]
        assert "xray_ui_token=s3cret" in cookie and "HttpOnly" in cookie


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def expected_diff(url: str, step_name: str) -> tuple[float, float]:
    """Median drop ratio of ``step_name`` in v1 and v2 runs, worked out here."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT r.version, s.drop_ratio FROM xray_steps s JOIN xray_runs r"
                            " USING (run_id) WHERE s.step_name = %s", (step_name,)).fetchall()
    return (median([d for v, d in rows if v == "v1"]), median([d for v, d in rows if v == "v2"]))


def test_diff_page_shows_the_polluted_filter_shift(viewer: Viewer) -> None:
    w = worst(viewer)
    base, head = expected_diff(viewer.demo.url, str(w["step_name"]))
    assert head > base
    status, body = get(viewer.base + "/diff?pipeline=competitor_search&base=v1&head=v2")
    text = body.decode()
    assert status == 200
    row = re.search(rf'<th scope="row">{w["step_name"]}</th>(.*?)</tr>', text, re.S)
    assert row is not None
    assert f"{(head - base) * 100:+.1f} pts" in row.group(1)
    assert "category_mismatch" in row.group(1)
    status, body = get(viewer.base + "/diff?pipeline=competitor_search&base=v1")
    assert status == 400 and b"give the head side a version or a time window" in body


def test_xray_diff_command_shares_the_query(viewer: Viewer, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    w = worst(viewer)
    base, head = expected_diff(viewer.demo.url, str(w["step_name"]))
    result = subprocess.run(
        [sys.executable, "-m", "collector_service.cli.main", "diff", "--pipeline",
         "competitor_search", "--base", "v1", "--head", "v2", "--json",
         "--database-url", viewer.demo.url], capture_output=True, text=True, timeout=60,
        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    changes = [abs(r["drop_change"] or 0) for r in rows]
    assert changes == sorted(changes, reverse=True), "largest shift first"
    (row,) = [r for r in rows if r["step_name"] == w["step_name"]]
    assert row["drop_change"] == pytest.approx(head - base)
    shares = {s["reason"]: s for s in row["reject_shares"]}
    assert shares["category_mismatch"]["head"] > (shares["category_mismatch"]["base"] or 0)
    table = subprocess.run([a for a in result.args if a != "--json"], capture_output=True,
                           text=True, timeout=60, cwd=tmp_path)
    line = next(x for x in table.stdout.splitlines() if x.startswith(str(w["step_name"])))
    assert f"{(head - base) * 100:+.1f} pts" in line and "category_mismatch" in line


@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium is absent "
                    "(apt-get install -y chromium chromium-driver)")
def test_debugging_story_in_chromium(viewer: Viewer, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    w = worst(viewer)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto(viewer.base + "/runs")
            page.get_by_label("A step drops more than (%)").fill(
                str(float(w["drop_ratio"]) * 100 - 1))  # type: ignore[arg-type]
            page.get_by_role("button", name="Filter").click()
            page.get_by_role("link", name=str(w["run_id"])).click()
            expect(page.locator("svg[aria-labelledby=funnel-title]")).to_contain_text(
                f"(dropped {w['drop_ratio']:.1%})")
            expect(page.locator(f"#step-{w['seq']}")).to_contain_text("category_mismatch")
            link = page.get_by_role("link", name="download").first
            artifact_id = (link.get_attribute("href") or "").rsplit("/", 1)[-1]
            with page.expect_download() as info:
                link.click()
            saved = tmp_path / "artifact"
            info.value.save_as(saved)
            assert hashlib.sha256(saved.read_bytes()).hexdigest() == artifact_id
            page.get_by_role("link", name="Funnel diff").click()
            page.get_by_label("Pipeline").fill("competitor_search")
            page.get_by_role("group", name="Base").get_by_label("Version").fill("v1")
            page.get_by_role("group", name="Head").get_by_label("Version").fill("v2")
            page.get_by_role("button", name="Compare").click()
            expect(page.locator("tbody")).to_contain_text("category_mismatch")
            expect(page.get_by_role("rowheader", name=str(w["step_name"]))).to_be_visible()
        finally:
            browser.close()


def test_collector_serves_the_viewer_with_ui_port_and_its_tokens(
        demo: tuple[Demo, Path]) -> None:
    from collector_service.config import CollectorConfig
    from collector_service.server import CollectorThread

    result, data_dir = demo
    config = CollectorConfig(database_url=result.url, data_dir=data_dir, grpc_port=0,
                             http_port=0, ui_port=0, spool_max_bytes=0,
                             auth_tokens=("s3cret",))
    with CollectorThread(config) as endpoints:
        assert endpoints.ui_port is not None
        base = f"http://127.0.0.1:{endpoints.ui_port}"
        assert get(base + "/runs")[0] == 401
        status, body = get(base + "/runs", {"Authorization": "Bearer s3cret"})
        assert status == 200 and b'href="/runs/' in body


Day = tuple[str, str, str]


def expected_pipeline_days(url: str) -> dict[Day, tuple[float | None, list[str]]]:
    """Per (pipeline, step, UTC day): the median drop ratio and top 3 reasons, in Python."""
    drops: dict[Day, list[float]] = {}
    reasons: dict[Day, dict[str, int]] = {}
    with psycopg.connect(url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        for pipeline, step, day, drop in conn.execute(
                "SELECT COALESCE(s.pipeline, r.pipeline), s.step_name, s.started_at::date,"
                " s.drop_ratio FROM xray_steps s LEFT JOIN xray_runs r USING (run_id)"):
            values = drops.setdefault((pipeline or "", step or "", day.isoformat()), [])
            if drop is not None:
                values.append(drop)
        for pipeline, step, day, reason, count in conn.execute(
                "SELECT pipeline, step_name, started_at::date, reason, count"
                " FROM xray_reject_reasons"):
            totals = reasons.setdefault((pipeline or "", step or "", day.isoformat()), {})
            totals[reason] = totals.get(reason, 0) + count
    result: dict[Day, tuple[float | None, list[str]]] = {}
    for key, values in drops.items():
        ranked = sorted(reasons.get(key, {}).items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        result[key] = (median(values) if values else None,
                       [f"{reason}: {total}" for reason, total in ranked])
    return result


def test_pipelines_page_shows_daily_median_drop_and_top_reasons(viewer: Viewer) -> None:
    expected = expected_pipeline_days(viewer.demo.url)
    assert any(reasons for _, reasons in expected.values())  # the demo reports reasons
    status, body = get(viewer.base + "/pipelines")
    assert status == 200
    page = body.decode()
    shown: dict[Day, tuple[str, list[str]]] = {}
    for section in re.findall(r'<section class="step trend" (.*?)</section>', page, re.S):
        pipeline, step = (html.unescape(v) for v in re.findall(r'data-(?:pipeline|step)="([^"]*)"',
                                                                 section)[:2])
        assert "<polyline points=" in section
        days = re.findall(r'<tr class="day"><td>([^<]+)</td>.*?class="median">([^<]+)</td>'
                          r'\s*<td class="reasons">(.*?)</td>', section, re.S)
        assert [d for d, _, _ in days] == sorted((d for d, _, _ in days), reverse=True)
        for day, shown_median, cell in days:
            shown[(pipeline, step, day)] = (
                html.unescape(shown_median),
                [html.unescape(r) for r in re.findall(r'<span class="reason">([^<]+)</span>',
                                                      cell)])
    assert shown == {key: ("—" if m is None else f"{m:.1%}", reasons)
                     for key, (m, reasons) in expected.items()}
    assert "/pipelines" in get(viewer.base + "/runs")[1].decode()
    status, body = get(viewer.base + "/pipelines?days=0")
    assert status == 400 and b"days 0 is outside" in body


LOAD_LONG_RUN = """
INSERT INTO xray_runs (run_id, pipeline, status, started_at, trace_id, span_id)
VALUES ('long', 'p', 'ok', now(), md5('long'), 'ffffffffffffffff');
INSERT INTO xray_steps (run_id, seq, step_name, step_type, candidates_in, candidates_out,
                        status, started_at, trace_id, span_id)
SELECT 'long', CASE WHEN i <= 400 THEN i END, 'step-' || i, 'filter', 10000 - i, 9999 - i,
       'running', now() + make_interval(secs => i % 3),
       md5('long'), lpad(to_hex(1000 - i), 16, '0')
FROM generate_series(1, 450) AS i;
"""


def test_long_run_pages_its_steps_and_joins_funnel_bars(
        databases: DatabaseFactory, tmp_path: Path) -> None:
    from collector_service.store.migrate import apply_migrations
    from collector_service.ui import app as ui_app
    from collector_service.ui import charts

    url = databases.create()
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        conn.execute(LOAD_LONG_RUN)
        expected = [f"step-{seq}" if seq is not None else f"span-{span}" for seq, span in
                    conn.execute("SELECT seq, span_id FROM xray_steps ORDER BY seq NULLS LAST,"
                                 " started_at, span_id")]
    assert len(expected) == 450 > ui_app.STEP_PAGE
    for base in serve(url, tmp_path):
        pages: list[list[str]] = []
        next_url: str | None = "/runs/long"
        while next_url is not None:
            status, body = get(base + html.unescape(next_url))
            assert status == 200
            page = body.decode()
            pages.append(re.findall(r'<section id="([^"]+)" class="step"', page))
            found = re.search(r'<a href="([^"]+)" rel="next">', page)
            next_url = found[1] if found else None
            if len(pages) == 1:
                assert 'rel="prev"' not in page
                assert 0 < page.count('class="bar-in"') <= charts.MAX_BARS
                assert "(8 steps)" in page  # 450 steps in 60 bars of 7 or 8
            else:
                previous = re.search(r'<a href="([^"]+)" rel="prev">', page)
                assert previous is not None
                back = get(base + html.unescape(previous[1]))[1].decode()
                assert re.findall(r'<section id="([^"]+)" class="step"', back) == pages[-2]
        assert [len(p) for p in pages] == [200, 200, 50]
        assert [anchor for p in pages for anchor in p] == expected
        status, body = get(base + "/runs/long?from=nosuchspan")
        assert status == 404 and b"no step with span id" in body
