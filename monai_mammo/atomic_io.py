"""Atomic file writes: a reader never sees a half-written datalist, checkpoint, report or image.

Every writer goes through :func:`atomic_path`: the content is written to a temporary file in the
destination's folder (same file system), which then replaces the destination with ``os.replace``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block succeeds and is
    removed when it fails. Parent folders are created.

    Example::

        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "out.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("done")
        >>> target.read_text()
        'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the replace); return the path."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    return Path(path)


def atomic_write_json(
    path: str | os.PathLike, content: Any, indent: int = 2, default: Callable[[Any], Any] | None = None
) -> Path:
    """Write ``content`` as JSON (``indent``, ``default`` as for ``json.dumps``) atomically."""
    text = json.dumps(content, indent=indent, default=default) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))
