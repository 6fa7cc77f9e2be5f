"""Small path helpers shared by the table layer and ingest."""
from __future__ import annotations

import os
from urllib.parse import unquote


def local_path(uri: str) -> str:
    """``file:///a/b%20c`` (as Spark and delta-rs print local files) -> ``/a/b c``."""
    uri = unquote(uri)
    for prefix in ("file://", "file:"):
        if uri.startswith(prefix):
            uri = uri[len(prefix):]
            break
    return os.path.abspath(uri)
