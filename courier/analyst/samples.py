"""Land the sample payloads under samples/ as the ingest API would (for `make run` and tests).

samples/STREAM.ndjson|json holds payloads as clients send them to stream STREAM (one per line,
or one document); a JSON stream lands each payload as one NDJSON line, each element of an
array as its own line when the stream sets batch_arrays. XML samples are left to the streams'
own examples.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from courier.analyst import payloads
from courier.errors import FormatError
from courier.project import Project
from courier.storage.base import StorageBackend

SAMPLES = Path("samples")


def sample_files(project: Project) -> dict[str, Path]:
    """stream id -> its sample file, for the JSON streams that have one."""
    folder = project.root / SAMPLES
    out: dict[str, Path] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        stream = project.streams.get(path.stem)
        if stream is None or stream.payload != "json":
            continue
        if path.suffix.lower() in (".ndjson", ".jsonl", ".json"):
            out[path.stem] = path
    return out


def land_samples(
    project: Project, storage: StorageBackend, day: date, hour: int = 12
) -> dict[str, int]:
    """Land each JSON stream's samples as one part file of `day` at `hour`; records per stream."""
    landed: dict[str, int] = {}
    for stream_id, path in sample_files(project).items():
        stream = project.streams[stream_id]
        documents = payloads.json_documents(path.read_text(encoding="utf-8"), str(path))
        records = []
        for doc in documents:
            if isinstance(doc, list) and stream.batch_arrays:
                records.extend(doc)
            elif isinstance(doc, dict):
                records.append(doc)
            else:
                raise FormatError(
                    f"{path}: stream {stream_id} takes one JSON object per payload"
                    + ("" if stream.batch_arrays else " (it does not set batch_arrays)")
                )
        key = f"{stream_id}/{day:%Y/%m/%d}/{hour:02d}/part-samples-000000.ndjson"
        storage.write_bytes(key, payloads.to_ndjson(records))
        landed[stream_id] = len(records)
    return landed


def sample_couriers(project: Project) -> list[str]:
    """Couriers reading a stream that has samples."""
    streams = set(sample_files(project))
    return [c.name for c in project.couriers.values() if c.stream in streams]
