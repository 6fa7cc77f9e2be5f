"""``shoprec serve``: the API on uvicorn, one process or several (``serve.workers``)."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from shoprec import paths
from shoprec.config import Config, load_config, mask_text
from shoprec.errors import EnvironmentProblem

# Worker processes rebuild the config from these (uvicorn imports the app by name in each).
ARGS_ENV = "SHOPREC_SERVE_ARGS"


def app_from_env():  # type: ignore[no-untyped-def]
    """The app of a worker process: the config its parent was started with."""
    from shoprec.serving.app import create_app

    a = json.loads(os.environ[ARGS_ENV])
    return create_app(load_config(a["env"], a["overrides"], a["conf_dir"], a["data_root"]))


def check_port(host: str, port: int) -> None:
    """One clear line before anything loads when the address cannot be bound."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise EnvironmentProblem(
                f"{host}:{port} is in use or cannot be bound ({exc.strerror})",
                hint="pick another with --port, or stop what listens there",
            ) from None


def serve(cfg: Config, load_args: dict) -> int:
    import uvicorn

    s = cfg.serve
    check_port(s.host, s.port)
    where = f"http://{s.host}:{s.port}"
    print(
        f"shoprec serve: {where} (OpenAPI docs at {where}/docs) for {mask_text(paths.local_path(cfg.data_root))}, "
        f"{s.workers} worker(s); Ctrl-C stops it",
        flush=True,
    )
    common: dict[str, Any] = {
        "host": s.host,
        "port": s.port,
        "access_log": False,
        "log_level": "warning",
        "lifespan": "on",
    }
    if s.workers > 1:
        os.environ[ARGS_ENV] = json.dumps(load_args)
        uvicorn.run("shoprec.serving.server:app_from_env", factory=True, workers=s.workers, **common)
    else:
        from shoprec.serving.app import create_app

        uvicorn.run(create_app(cfg), **common)
    return 0
