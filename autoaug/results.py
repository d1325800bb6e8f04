"""Result files: Parquet rows and strict JSON documents, replaced atomically, readable by others (0644)."""
from __future__ import annotations

import json
import math
import os
import uuid
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
    # not mkstemp: its 0600 would survive the rename; a plain new file honours the umask (0644 by default)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def json_safe(data: Any) -> Any:
    """``data`` with every NaN or infinite float replaced by None (JSON null), in nested dicts and lists."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: json_safe(value) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_safe(value) for value in data]
    return data


def write_json(data: Any, path: str | Path) -> Path:
    """Strict JSON (no NaN, which most JSON readers reject): non-finite floats are written as null."""
    return write_atomic(Path(path), json.dumps(json_safe(data), indent=2, default=str, allow_nan=False) + "\n")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a result, for provenance."""
    import torch
    import torchvision

    import autoaug
    return {"autoaug": autoaug.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__}
