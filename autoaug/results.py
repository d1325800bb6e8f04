"""Result files: Parquet rows and JSON documents, always replaced atomically."""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from autoaug.policy import write_atomic


def write_parquet(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``rows`` (dicts; missing keys become nulls) as one Parquet table, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def write_json(data: Any, path: str | Path) -> Path:
    return write_atomic(Path(path), json.dumps(data, indent=2, default=str) + "\n")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a result, for provenance."""
    import torch
    import torchvision

    import autoaug
    return {"autoaug": autoaug.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__}
