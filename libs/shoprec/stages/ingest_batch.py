"""One ingest of one set of inputs as a unit that survives a crash at any point.

An ingest writes up to nine commits (bronze, quarantine, silver, the catalog, items, users,
the ingest log), one table after another; Delta makes each commit atomic, not the set. So:

1. **Stage.** The batch's rows, parsed, validated and classified (kept / quarantined with a
   reason / duplicate), are written once to ``<data_root>/_staging/ingest/<batch>/rows``
   (Parquet), then a manifest beside them (``manifest.json``, written to a temporary name and
   renamed, so it is whole or absent): the counts, the ingest time, the tables' versions
   before the batch, and the attempt number. ``<batch>`` is the source and a hash of the
   input files' content (and the catalog's), so the same files are the same batch.
2. **Commit.** Every table commit of the batch carries the application transaction
   ``Txn("shoprec.ingest.<batch>", attempt)`` in that same commit (Delta's SetTransaction), and
   a commit whose txn the table already holds is skipped. The ingest log, which marks the
   files as done, is the last commit.
3. **Resume.** A rerun after a crash finds the manifest, reads the staged rows instead of
   classifying again (silver may already hold them: they would all look like duplicates), and
   applies only the commits that are missing. After the last commit the staging folder goes.
4. **Roll back** (a Python error, not a crash): the manifest is marked ``rolling_back`` first,
   the tables are restored to their versions from before the batch, then the folder goes; a
   crash during the rollback is finished by the next run before anything else. A restore
   need not remove the txn a table recorded, so a new attempt takes a higher version (one
   above any the tables hold) and is never mistaken for the rolled-back one.

5. **One at a time.** Two ingests into one data root would race: each de-duplicates against
   the silver it read, recomputes silver.items from the interactions it saw, and a rollback
   restores versions from before its own batch, dropping the other's commits. So an ingest
   holds ``<data_root>/_staging/ingest.lock`` (an exclusive ``flock``, which the kernel drops
   when the holder dies, SIGKILL included) from its first read to its last commit; a second
   ingest waits for it, saying whose it is. On a data root that is not a local path (object
   stores have no such lock) the scheduler must run one ingest at a time.

``shoprec stream`` hands each micro-batch's files to the same ingest: its key is their content
hash, which Spark's offset log keeps stable when a killed stream reruns the batch. A Kafka
micro-batch is first written as one file (its messages in offset order, named after its offset
ranges; the name is hashed with the content), so a rerun of it has the same key too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from shoprec import paths
from shoprec.errors import ShoprecError
from shoprec.ingest.files import SourceFile
from shoprec.tables import Tables, Txn

log = logging.getLogger(__name__)

LOCK = "ingest.lock"
STAGED = "staged"
ROLLING_BACK = "rolling_back"
_MANIFEST = "manifest.json"


@dataclass
class Manifest:
    """What a staged batch needs to finish after a crash (all JSON types)."""

    batch: str
    attempt: int
    ingested_at: str  # ISO, UTC: every row of the batch carries it
    before: dict[str, int | None]  # table versions before the batch's first commit
    counts: dict[str, Any]  # rows in, kept, quarantined, by reason, ... (the report's numbers)
    bronze_columns: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    state: str = STAGED


class IngestBatch:
    """The staging folder and manifest of one batch: ``Txn`` key, attempt, resume, rollback."""

    def __init__(self, data_root: str, source: str, files: Sequence[SourceFile], catalog: SourceFile | None):
        digest = hashlib.sha256()
        for sha in sorted(f.sha256 for f in files):
            digest.update(sha.encode())
        if catalog is not None:
            digest.update(b"catalog:" + catalog.sha256.encode())
        self.batch = f"{source}-{digest.hexdigest()[:16]}"
        self.folder = paths.staging(data_root, os.path.join("ingest", self.batch))
        self.rows_path = os.path.join(self.folder, "rows")
        self.manifest: Manifest | None = self._load()

    @property
    def app_id(self) -> str:
        return f"shoprec.ingest.{self.batch}"

    @property
    def txn(self) -> Txn:
        assert self.manifest is not None  # staged first
        return Txn(self.app_id, self.manifest.attempt)

    @property
    def ingested_at(self) -> datetime:
        assert self.manifest is not None
        return datetime.fromisoformat(self.manifest.ingested_at)

    def finish_rollback(self, tables: Tables) -> None:
        """A rollback a crash interrupted: restore what is left, then start afresh."""
        if self.manifest is not None and self.manifest.state == ROLLING_BACK:
            log.warning("ingest %s: finishing the rollback of attempt %d", self.batch, self.manifest.attempt)
            tables.roll_back(self.manifest.before)
            self.discard()

    def next_attempt(self, tables: Tables, names: Sequence[str]) -> int:
        """One above every attempt any table recorded for this batch (rolled back or not)."""
        return 1 + max((tables.txn_version(n, self.app_id) or 0 for n in names), default=0)

    def save(self, manifest: Manifest) -> None:
        """Write the manifest whole (temporary name, then rename): staged from here on."""
        os.makedirs(self.folder, exist_ok=True)
        tmp = os.path.join(self.folder, f".{_MANIFEST}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(manifest), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, os.path.join(self.folder, _MANIFEST))
        self.manifest = manifest

    def roll_back(self, tables: Tables) -> None:
        """Undo the batch's commits after an error; safe to interrupt (see the module doc)."""
        if self.manifest is None:
            return
        self.manifest.state = ROLLING_BACK
        self.save(self.manifest)
        tables.roll_back(self.manifest.before)
        self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        self.manifest = None

    def _load(self) -> Manifest | None:
        path = os.path.join(self.folder, _MANIFEST)
        if not os.path.isfile(path):
            return None  # never staged, or staged rows without a manifest: staged again
        with open(path, encoding="utf-8") as fh:
            return Manifest(**json.load(fh))


# ----------------------------------------------------------------------------- one at a time
@contextlib.contextmanager
def ingest_lock(data_root: str, timeout_s: float, poll_s: float = 1.0) -> Iterator[None]:
    """Hold the data root's ingest lock for the block; wait up to ``timeout_s`` for it."""
    if not paths.is_local(data_root):
        log.info("ingest lock: %s is not a local path; run one ingest at a time there", data_root)
        yield
        return
    path = paths.staging(paths.local_path(data_root), LOCK)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        _acquire(fh, path, timeout_s, poll_s)
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} since {datetime.now(UTC).isoformat(timespec='seconds')}\n")
            fh.flush()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _acquire(fh: Any, path: str, timeout_s: float, poll_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    waiting = False
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if waiting:
                log.info("ingest lock: acquired %s", path)
            return
        except BlockingIOError:
            holder = _holder(path)
            if not waiting:
                log.warning("ingest lock: another ingest holds %s (%s); waiting for it", path, holder)
                waiting = True
            if time.monotonic() >= deadline:
                raise ShoprecError(
                    f"another ingest has held {path} for over {timeout_s:g} s ({holder})",
                    hint="wait for it to finish, or raise ingest.lock_timeout_s",
                ) from None
            time.sleep(poll_s)


def _holder(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().strip() or "holder unknown"
    except OSError:
        return "holder unknown"
