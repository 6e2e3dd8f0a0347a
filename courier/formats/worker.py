"""Decode workers: a large window's files are transcoded to NDJSON (TreeReader.transcode) by
the courier process and `decode_workers - 1` helper processes at once, one core each.

Files are shared out dynamically: whoever creates a file's claim first (O_EXCL in the work
folder) transcodes it; the courier process takes files from the front, helpers from the back,
so the courier starts at once and a helper joins when it has started (~0.7 s: it imports
courier). A helper that fails leaves its files to the courier process, which transcodes
whatever has no result, so a helper can make a run faster but never break it.

Helpers are plain subprocesses (`python -m courier.formats.worker TASK.json`), not
multiprocessing: a spawned multiprocessing child re-runs the parent's main script (breaking
scripts without an `if __name__ == "__main__"` guard), and a forked one would inherit the
engine's threads and open database. A helper writes its results (bad records included) to a
JSON file next to its task, so no pipe can fill up.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from courier.formats.options import TreeOptions
from courier.plan import BadRecord, InputFile

if TYPE_CHECKING:
    from courier.formats.arrow_tree import TreeReader

log = logging.getLogger("courier.formats")

Result = tuple[InputFile | None, list[BadRecord]]


def claim(claims: Path, index: int) -> bool:
    try:
        os.close(os.open(claims / str(index), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def run_workers(
    reader: TreeReader, files: list[InputFile], options: TreeOptions, out_dir: Path, workers: int
) -> Iterator[Result]:
    """Transcode files with this process and workers - 1 helpers; yield results in file order."""
    claims = out_dir / "claims"
    claims.mkdir(exist_ok=True)
    opts = dataclasses.asdict(options)
    opts["record_path"] = list(options.record_path)
    opts["force_list"] = sorted(options.force_list)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    helpers = []
    for n in range(workers - 1):
        task = out_dir / f"helper-{n}.task.json"
        task.write_text(
            json.dumps(
                {
                    "format": reader.format,
                    "options": opts,
                    "out_dir": str(out_dir),
                    "claims": str(claims),
                    "files": [[f.key, str(f.path), f.size] for f in files],
                }
            )
        )
        output = open(out_dir / f"helper-{n}.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [sys.executable, "-m", "courier.formats.worker", str(task)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
        helpers.append((proc, task, output))
    results: dict[int, Result] = {}
    try:
        for index, f in enumerate(files):
            if claim(claims, index):
                results[index] = reader.transcode(index, f, options, out_dir)
        for proc, task, output in helpers:
            code = proc.wait()
            output.close()
            done = task.with_suffix(".result")
            if code != 0 or not done.exists():
                tail = Path(output.name).read_text(errors="replace").strip().splitlines()[-3:]
                log.warning("a decode helper failed (exit %s): %s", code, " | ".join(tail))
                continue
            for entry in json.loads(done.read_text()):
                results[entry["index"]] = (
                    produced_from_json(entry["produced"]),
                    [BadRecord(*b) for b in entry["bad"]],
                )
    finally:
        for proc, _, output in helpers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            output.close()
    for index, f in enumerate(files):
        if index not in results:  # claimed by a helper that did not finish it
            results[index] = reader.transcode(index, f, options, out_dir)
        yield results[index]


def produced_to_json(f: InputFile | None) -> list[Any] | None:
    """A helper's transcoded file for its result file (read back by produced_from_json)."""
    if f is None:
        return None
    keys = None if f.keys is None else sorted(f.keys)
    return [f.key, str(f.path), f.size, f.records, keys]


def produced_from_json(value: list[Any] | None) -> InputFile | None:
    if value is None:
        return None
    key, path, size, records, keys = value
    return InputFile(key, Path(path), size, records, None if keys is None else frozenset(keys))


def work(task_path: Path) -> None:
    """A helper: claim files from the back of the list until none is left."""
    from courier.formats.arrow_tree import TreeReader
    from courier.formats.base import get_reader

    task = json.loads(task_path.read_text())
    reader = get_reader(task["format"])
    assert isinstance(reader, TreeReader)
    options = TreeOptions.parse(task["options"])
    out_dir, claims = Path(task["out_dir"]), Path(task["claims"])
    out: list[dict[str, Any]] = []
    for index in reversed(range(len(task["files"]))):
        if not claim(claims, index):
            continue  # taken by the courier process (from the front) or another helper
        key, path, size = task["files"][index]
        produced, bad = reader.transcode(index, InputFile(key, Path(path), size), options, out_dir)
        out.append(
            {
                "index": index,
                "produced": produced_to_json(produced),
                "bad": [[b.file, b.line, b.reason, b.raw] for b in bad],
            }
        )
    result = task_path.with_suffix(".result")
    tmp = result.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(result)


if __name__ == "__main__":
    try:
        work(Path(sys.argv[1]))
    except Exception:
        traceback.print_exc()
        sys.exit(1)
