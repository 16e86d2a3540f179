"""Start the viewer on a host and port: for ``xray ui`` and for ``xray collector --ui-port``."""

from __future__ import annotations

import ssl

from aiohttp import web

from collector_service.errors import ConfigError
from collector_service.store.artifacts import ArtifactStore
from collector_service.ui.app import TokenCheck, allow_all, build_app
from collector_service.ui.db import ViewerDatabase


async def start_viewer(database_url: str, store: ArtifactStore | None, host: str, port: int,
                       allows: TokenCheck = allow_all,
                       ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, int]:
    """The running viewer and the port it took (``port`` 0: a free one)."""
    runner = web.AppRunner(build_app(ViewerDatabase(database_url), store, allows),
                           access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, ssl_context=ssl_context).start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(f"the web viewer cannot listen on {host}:{port}: {exc.strerror}; "
                          "choose another port") from exc
    return runner, runner.addresses[0][1]
