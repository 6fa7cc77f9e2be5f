"""Fault injection at commit boundaries, for the fault tests (tests/faults/).

A job that writes several tables can die between any two commits (SIGKILL, a lost driver,
an OOM). To prove that a rerun then converges, the table layer calls ``after_commit`` after
every commit it makes, and a test decides there that the process dies:

- ``SHOPREC_FAULT_AFTER_COMMIT=<layer.table>[#<n>]`` in the environment: the process kills
  itself with SIGKILL right after its n-th commit (default 1st) to that table, as a real
  crash would: no ``finally``, no rollback, no flush.
- ``crash_after(name, n)`` inside a test's process: ``after_commit`` raises ``Crash`` instead,
  which the rollback code lets through untouched (a crash leaves the tables as they are).

Outside tests neither is set and ``after_commit`` costs a dictionary lookup.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections import Counter
from collections.abc import Iterator

ENV = "SHOPREC_FAULT_AFTER_COMMIT"

_commits: Counter[str] = Counter()
_armed: tuple[str, int] | None = None


class Crash(BaseException):
    """A simulated crash (``crash_after``): like SIGKILL, nothing may clean up after it."""


def after_commit(name: str) -> None:
    """Called by the table layer after each commit to ``name``; dies where a test asked."""
    spec = os.environ.get(ENV)
    if spec is None and _armed is None:
        return
    _commits[name] += 1
    if spec is not None and _matches(spec, name, _commits[name]):
        os.kill(os.getpid(), signal.SIGKILL)
    if _armed is not None and _armed == (name, _commits[name]):
        raise Crash(f"simulated crash after commit {_commits[name]} to {name}")


@contextlib.contextmanager
def crash_after(name: str, n: int = 1) -> Iterator[None]:
    """Raise ``Crash`` right after the n-th commit to table ``name`` made inside the block."""
    global _armed
    _commits.clear()
    _armed = (name, n)
    try:
        yield
    finally:
        _armed = None
        _commits.clear()


def _matches(spec: str, name: str, count: int) -> bool:
    table, _, nth = spec.partition("#")
    return table == name and count == (int(nth) if nth else 1)
