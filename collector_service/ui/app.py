"""The viewer's aiohttp application: routes, templates, token check and artifact download."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from collector_service.errors import StorageUnavailable
from collector_service.receive.artifact_http import send_verified
from collector_service.store.artifacts import (
    ArtifactCorrupted,
    ArtifactNotFound,
    ArtifactStore,
    valid_artifact_id,
    verified,
)
from collector_service.ui import charts, diff, pipelines
from collector_service.ui.db import ViewerDatabase
from collector_service.ui.diff import DiffRequest
from collector_service.ui.filters import RunFilters
from xray_otel.conventions import STEP_TYPES

TokenCheck = Callable[[str | None], bool]
"""``allows(authorization_header) -> bool``: whether a request may see the viewer."""

COOKIE = "xray_ui_token"
PAGE_SIZE = 50
STEP_PAGE = 200
"""Steps shown on one run page; longer runs page by key (``?from=SPAN_ID``)."""
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("collector_service.ui", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined)
_TEMPLATES.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False,
                                                    default=str)
_TEMPLATES.filters["percent"] = lambda v: "—" if v is None else f"{v:.1%}"
_TEMPLATES.filters["when"] = lambda v: "—" if v is None else v.strftime("%Y-%m-%d %H:%M:%S")


def allow_all(authorization: str | None) -> bool:
    return True


def build_app(db: ViewerDatabase, store: ArtifactStore | None,
              allows: TokenCheck = allow_all) -> web.Application:
    """The viewer; ``allows`` checks the bearer token (header, or the login cookie)."""
    app = web.Application(middlewares=[_token_middleware(allows)])
    viewer = _Viewer(db, store, allows)
    app.add_routes([
        web.get("/", _home),
        web.get("/runs", viewer.runs),
        web.get("/runs/{run_id}", viewer.run),
        web.get("/diff", viewer.diff),
        web.get("/steps", viewer.steps),
        web.get("/pipelines", viewer.pipelines),
        web.get("/artifacts/{artifact_id}", viewer.artifact),
        web.get("/login", viewer.login_form),
        web.post("/login", viewer.login),
        web.static("/static", str(_static_dir())),
    ])

    async def lifecycle(_: web.Application) -> Any:
        await db.open()
        yield
        await db.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def _home(_: web.Request) -> web.Response:
    return _redirect("/runs")


def _static_dir() -> Any:
    from importlib import resources
    return resources.files("collector_service.ui").joinpath("static")


def _token_middleware(allows: TokenCheck) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ("/login",) or request.path.startswith("/static/"):
            return await handler(request)
        header = request.headers.get("Authorization")
        cookie = request.cookies.get(COOKIE)
        if allows(header) or (cookie is not None and allows(f"Bearer {cookie}")):
            try:
                return await handler(request)
            except StorageUnavailable as exc:
                return _page("error.html", 503, title="Database unavailable", message=str(exc))
        if header is not None or "text/html" not in request.headers.get("Accept", ""):
            return web.Response(status=401, text="a bearer token is required\n",
                                headers={"WWW-Authenticate": 'Bearer realm="xray"'})
        return _redirect("/login?" + urlencode({"next": request.path_qs}))

    return check


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _page(name: str, status: int = 200, **context: Any) -> web.Response:
    html = _TEMPLATES.get_template(name).render(**context)
    return web.Response(status=status, text=html, content_type="text/html")


class _Viewer:
    def __init__(self, db: ViewerDatabase, store: ArtifactStore | None,
                 allows: TokenCheck) -> None:
        self._db = db
        self._store = store
        self._allows = allows

    async def runs(self, request: web.Request) -> web.Response:
        try:
            filters = RunFilters.parse(request.query)
        except ValueError as exc:
            return _page("error.html", 400, title="Bad filter", message=str(exc))
        rows = await self._db.rows("runs", filters.params(PAGE_SIZE + 1))
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        next_url = None
        if more:
            last = rows[-1]
            next_url = "/runs?" + urlencode({**filters.query(),
                                             "after": last["started_at"].isoformat(),
                                             "after_id": last["run_id"]})
        return _page("runs.html", title="Runs", runs=rows, filters=filters,
                     statuses=RunFilters.STATUSES, next_url=next_url)

    async def run(self, request: web.Request) -> web.Response:
        run_id = request.match_info["run_id"]
        run = await self._db.row("run", {"run_id": run_id})
        if run is None:
            return _page("error.html", 404, title="No such run",
                         message=f"No run {run_id!r} is stored.")
        start = request.query.get("from") or None
        steps = await self._db.rows("run_steps", {"run_id": run_id, "from": start,
                                                  "limit": STEP_PAGE + 1})
        if start is not None and not steps:
            return _page("error.html", 404, title="No such step",
                         message=f"Run {run_id!r} has no step with span id {start!r}.")
        page_of = request.path
        next_url = None
        if len(steps) > STEP_PAGE:
            next_url = f"{page_of}?{urlencode({'from': steps.pop()['span_id']})}"
        prev_url = None
        if start is not None:
            before = await self._db.rows("run_steps_before", {"run_id": run_id, "from": start,
                                                              "limit": STEP_PAGE})
            prev_url = (f"{page_of}?{urlencode({'from': before[-1]['span_id']})}"
                        if before else None)
        for step in steps:
            step["anchor"] = charts.step_anchor(step)
            step["reasons"], step["why_rest"] = charts.split_why(step["why_json"])
        groups = await self._db.rows("run_funnel", {"run_id": run_id,
                                                    "bars": charts.MAX_BARS})
        paged = next_url is not None or prev_url is not None
        funnel = (charts.run_funnel(groups, page_of) if paged or
                  any(g["steps"] > 1 for g in groups) else charts.funnel(steps))
        return _page("run.html", title=f"Run {run_id}", run=run, steps=steps, funnel=funnel,
                     bar_width=charts.BAR_WIDTH, next_url=next_url, prev_url=prev_url,
                     page_size=STEP_PAGE)

    async def steps(self, request: web.Request) -> web.Response:
        query = request.query
        step_type = query.get("type", "")
        try:
            if step_type and step_type not in STEP_TYPES:
                raise ValueError(f"type {step_type!r}: use one of {', '.join(sorted(STEP_TYPES))}")
            filters = RunFilters.parse({k: query.get(k, "") for k in
                                        ("pipeline", "since", "until", "min_drop")})
        except ValueError as exc:
            return _page("error.html", 400, title="Bad filter", message=str(exc))
        params = filters.params(PAGE_SIZE)
        rows = await self._db.rows("steps", {
            "step_type": step_type or None, "min_drop": params["min_drop"],
            "pipeline": params["pipeline"], "since": params["since"],
            "until": params["until"], "limit": PAGE_SIZE})
        return _page("steps.html", title="Steps by drop ratio", steps=rows, filters=filters,
                     step_type=step_type, types=sorted(STEP_TYPES))

    async def pipelines(self, request: web.Request) -> web.Response:
        try:
            days = pipelines.parse_days(request.query.get("days", ""))
        except ValueError as exc:
            return _page("error.html", 400, title="Bad filter", message=str(exc))
        rows = await self._db.rows("pipeline_days", {"since": pipelines.since(days)})
        return _page("pipelines.html", title="Pipelines", days=days,
                     pipelines=pipelines.group(rows), spark_width=pipelines.SPARK_WIDTH,
                     spark_height=pipelines.SPARK_HEIGHT)

    async def diff(self, request: web.Request) -> web.Response:
        if not request.query:
            return _page("diff.html", title="Funnel diff", request=DiffRequest(), rows=None,
                         problem=None)
        try:
            wanted = DiffRequest.parse(request.query)
        except ValueError as exc:
            return _page("diff.html", 400, title="Funnel diff",
                         request=DiffRequest(**{k: v for k, v in request.query.items()
                                                if k in DiffRequest.__dataclass_fields__}),
                         rows=None, problem=str(exc))
        rows = diff.shape(await self._db.run(diff.QUERY, wanted.params()))
        return _page("diff.html", title="Funnel diff", request=wanted, rows=rows, problem=None)

    async def artifact(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["artifact_id"].lower()
        if not valid_artifact_id(key):
            return web.Response(status=400, text=f"{key!r} is not an artifact id\n")
        info = await self._db.row("artifact", {"artifact_id": key})
        if info is None or info["storage"] == "summary" or self._store is None:
            return web.Response(status=404, text=f"artifact {key} is not stored; see the "
                                                 "preview on its run page\n")
        chunks = verified(key, self._store.open(key))
        try:
            held = await asyncio.to_thread(next, chunks, None)
        except (ArtifactNotFound, ArtifactCorrupted) as exc:
            return web.Response(status=404 if isinstance(exc, ArtifactNotFound) else 500,
                                text=f"{exc}\n")
        response = web.StreamResponse(headers={
            "Content-Type": info["content_type"], "Content-Length": str(info["size_bytes"]),
            "Content-Disposition": f'attachment; filename="{key}"'})
        await response.prepare(request)
        await send_verified(response, key, held, chunks)
        await response.write_eof()
        return response

    async def login_form(self, request: web.Request) -> web.Response:
        return _page("login.html", title="Sign in", next=_safe_next(request.query.get("next")),
                     failed=False)

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token = str(form.get("token", "")).strip()
        target = _safe_next(str(form.get("next", "")))
        if not token or not self._allows(f"Bearer {token}"):
            return _page("login.html", 401, title="Sign in", next=target, failed=True)
        response = _redirect(target)
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response


def _safe_next(target: str | None) -> str:
    """Only paths on this site: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/runs"
    return target
