"""``horovodrun`` for one machine, on loopback only, with nothing secret on a command line.

    python -m shoprec.hybrid.loopback <horovodrun arguments>

Horovod's launcher binds its rendezvous and task servers to every interface (its
``find_port`` uses the address ``''``) and starts each Gloo rank as ``env K=V ... python ...``
with the whole environment it was given on that command line, where ``ps`` shows it to
every user of the machine. For local training neither is needed: this module binds those
servers to 127.0.0.1 and runs Horovod's own command line; the caller passes it only the
variables training needs (``rank_environment``) and hands secrets over in a file only the
user can read (``write_secrets`` / ``load_secrets``), which each rank reads at start.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from shoprec.config import is_secret_name

LOOPBACK = "127.0.0.1"
SECRETS_ENV = "SHOPREC_RANK_SECRETS"

# What a rank needs from its parent's environment: finding Python and shoprec, locale,
# temp space, and the knobs of TensorFlow, the BLAS threads, Horovod and shoprec itself.
_KEEP_NAMES = {
    *("PATH", "LD_LIBRARY_PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR"),
    *("PYTHONPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "JAVA_HOME"),
}
_KEEP_PREFIXES = (
    *("LC_", "TF_", "XLA_", "OMP_", "KMP_", "MKL_", "OPENBLAS_"),
    *("HOROVOD_", "SHOPREC_", "PYTHON", "CUDA_", "NCCL_"),
)
# Besides secret-looking names (config.is_secret_name: token, password, key, credentials...),
# the credentials a rank may need to reach the tracking server or object storage.
_CREDENTIAL_PREFIXES = ("MLFLOW_TRACKING_USERNAME", "AWS_", "AZURE_", "GOOGLE_")


def is_secret(name: str) -> bool:
    return is_secret_name(name) or name.upper().startswith(_CREDENTIAL_PREFIXES)


def rank_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``env`` a local rank needs, secrets left out."""
    return {
        k: v
        for k, v in env.items()
        if (k in _KEEP_NAMES or k.startswith(_KEEP_PREFIXES)) and not is_secret(k) and k != SECRETS_ENV
    }


def write_secrets(env: Mapping[str, str], path: str) -> str | None:
    """The secret variables of ``env`` as JSON at ``path``, readable by the user only; None
    (and no file) when there are none."""
    secrets = {k: v for k, v in env.items() if is_secret(k)}
    if not secrets:
        return None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(secrets, fh)
    return path


def load_secrets() -> None:
    """In a rank: put the secrets the launcher left (``$SHOPREC_RANK_SECRETS``) into the environment."""
    path = os.environ.get(SECRETS_ENV)
    if path and os.path.exists(path):
        with open(path) as fh:
            os.environ.update(json.load(fh))


def loopback_interface() -> str:
    """The name of the interface holding 127.0.0.1 (``lo`` on Linux, ``lo0`` on macOS): where
    Gloo's own sockets go (horovodrun's ``--network-interfaces``)."""
    import socket

    import psutil

    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == LOOPBACK for a in addresses):
            return name
    return "lo"


def horovodrun_command(command: list[str], num_proc: int) -> list[str]:
    """This module's command line running ``command`` on ``num_proc`` local Gloo ranks."""
    return [
        sys.executable,
        "-m",
        "shoprec.hybrid.loopback",
        "-np",
        str(num_proc),
        "--gloo",
        "--network-interfaces",
        loopback_interface(),
        "-H",
        f"localhost:{num_proc}",
        *command,
    ]


def _loopback_find_port(server_factory: Callable[[tuple[str, int]], Any]) -> tuple[Any, int]:
    """Horovod's ``find_port`` on 127.0.0.1: a free port the OS picks."""
    server = server_factory((LOOPBACK, 0))
    return server, server.server_address[1]


def _bind_to_loopback() -> None:
    # Horovod imports find_port by name into each module that starts a server.
    from horovod.runner.common.util import network as common_network
    from horovod.runner.http import http_server
    from horovod.runner.util import network

    for module in (network, http_server, common_network):
        module.find_port = _loopback_find_port  # patched on purpose: Horovod has no bind option


def main(argv: list[str] | None = None) -> int:
    _bind_to_loopback()
    from horovod.runner.launch import run_commandline

    sys.argv = ["horovodrun", *(sys.argv[1:] if argv is None else argv)]
    run_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
