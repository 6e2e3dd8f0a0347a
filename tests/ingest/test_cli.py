"""`courier token create`, `courier land` and the stream checks of `courier validate`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cbor2
import jwt
import xmltodict

from tests.ingest.helpers import (
    SECRET,
    environment,
    landed_cbor,
    landed_json,
    landing,
    make_project,
    part_files,
    rsa_key,
    wait_until,
    wal_segments,
    write,
)
from tests.ingest.test_payloads import POS


def courier(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "courier", "--project", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment() if env is None else env,
    )


def test_token_create_prints_the_token_alone(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    proc = courier(root, "token", "create", "--stream", "events", "--days", "2")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and proc.stdout.count(".") == 2
    claims = jwt.decode(proc.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["stream"] == "events" and claims["tenant"] == "acme"
    expected = (datetime.now(UTC) + timedelta(days=2)).timestamp()
    assert abs(claims["exp"] - expected) < 60
    rs = courier(root, "token", "create", "--stream", "signed")
    assert rs.returncode == 0, rs.stderr
    assert jwt.get_unverified_header(rs.stdout.strip())["alg"] == "RS256"
    jwt.decode(rs.stdout.strip(), rsa_key().public_key(), algorithms=["RS256"])
    globex = courier(root, "token", "create", "--stream", "globex")
    assert jwt.decode(globex.stdout.strip(), SECRET, algorithms=["HS256"])["tenant"] == "globex"


def test_token_create_errors(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    env = {k: v for k, v in environment().items() if k != "COURIER_JWT_SECRET"}
    missing = courier(root, "token", "create", "--stream", "events", env=env)
    assert missing.returncode == 1 and missing.stdout == ""
    assert "auth.secret" in missing.stderr and "Traceback" not in missing.stderr
    unknown = courier(root, "token", "create", "--stream", "nope")
    assert unknown.returncode == 1 and "no stream named 'nope'" in unknown.stderr
    bad_days = courier(root, "token", "create", "--stream", "events", "--days", "0")
    assert bad_days.returncode == 2


def test_land_json_ndjson_and_partition(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    one = write(tmp_path, "one.json", '{\n  "id": "f1",\n  "n": 1\n}\n')
    many = write(tmp_path, "many.ndjson", '{"id": "l1"}\n\n{"id": "l2"}\n{"id": "l3"}\n')
    proc = courier(
        root, "land", "events", str(one), str(many), "--at", "2026-11-22T07:30:00Z", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["payloads"] == 4 and out["records"] == 4 and len(out["parts"]) == 1
    (part,) = part_files(root, "events")  # visible as soon as the command returned
    assert part.relative_to(landing(root)).as_posix() == out["parts"][0]
    assert out["parts"][0].startswith("events/2026/11/22/07/part-land-")
    assert part.read_bytes() == b'{"id":"f1","n":1}\n{"id":"l1"}\n{"id":"l2"}\n{"id":"l3"}\n'
    assert not wal_segments(root) and not any((root / ".courier" / "wal").iterdir())
    text = courier(root, "land", "events", str(one))
    assert (
        text.returncode == 0 and "landed 1 record(s)" in text.stdout and "part-land-" in text.stdout
    )


def test_land_xml_whole_or_split_and_batch_arrays(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    xml = tmp_path / "pos-records.xml"
    xml.write_bytes(POS)
    assert courier(root, "land", "pos", str(xml)).returncode == 0
    assert landed_cbor(root, "pos") == [xmltodict.parse(POS)]
    split = courier(root, "land", "pos", str(xml), "--split", "--json")
    assert split.returncode == 0, split.stderr
    assert json.loads(split.stdout)["records"] == 2
    items = landed_cbor(root, "pos")  # parts are named by content: the whole doc in any order
    whole = xmltodict.parse(POS)
    assert items.count(whole) == 1
    assert [i["record"]["@id"] for i in items if i != whole] == ["r1", "r2"]
    assert all(cbor2.dumps(i) for i in items)
    arrays = write(tmp_path, "arrays.ndjson", '[{"id": "a1"}, {"id": "a2"}]\n[{"id": "a3"}]\n')
    batch = courier(root, "land", "batch", str(arrays), "--json")
    assert json.loads(batch.stdout)["records"] == 3 and json.loads(batch.stdout)["payloads"] == 2
    assert [r["id"] for r in landed_json(root, "batch")] == ["a1", "a2", "a3"]


def test_land_refuses_bad_files_and_lands_nothing(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    good = write(tmp_path, "good.ndjson", '{"id": "g1"}\n')
    bad = write(tmp_path, "bad.ndjson", '{"id": "b1"}\n{"id": \n')
    array = write(tmp_path, "array.json", '[{"id": "x"}]')
    big = tmp_path / "big.json"
    big.write_text('{"pad": "' + "x" * 300_000 + '"}')
    proc = courier(root, "land", "events", str(good), str(bad), str(array), str(big))
    assert proc.returncode == 1
    assert f"{bad}:2" in proc.stderr and "invalid JSON" in proc.stderr
    assert str(array) in proc.stderr and "JSON array" in proc.stderr
    assert str(big) in proc.stderr and "--split" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not part_files(root)
    xml = write(tmp_path, "bomb.xml", '<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>')
    refused = courier(root, "land", "pos", str(xml))
    assert refused.returncode == 1 and "DOCTYPE" in refused.stderr
    missing = courier(root, "land", "events", str(tmp_path / "absent.json"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    assert courier(root, "land", "nope", str(good)).returncode == 1


def test_land_with_storage_down_keeps_payloads_for_later(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    blocker = landing(root)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("storage is down")
    first = write(tmp_path, "first.json", '{"id": "kept"}')
    proc = courier(root, "land", "events", str(first), "--timeout", "1")
    assert proc.returncode == 1
    assert "safe in the write-ahead log" in proc.stderr and "Traceback" not in proc.stderr
    assert len(wal_segments(root)) == 1
    blocker.unlink()
    second = write(tmp_path, "second.json", '{"id": "next"}')
    again = courier(root, "land", "events", str(second))
    assert again.returncode == 0, again.stderr
    deadline = time.monotonic() + 10
    while wal_segments(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(r["id"] for r in landed_json(root, "events")) == ["kept", "next"]


def test_validate_checks_streams(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    env = {k: v for k, v in environment().items() if not k.startswith("COURIER_")}
    ok = courier(root, "validate", env=env)  # referenced variables not set here: still valid
    assert ok.returncode == 0, ok.stderr
    write(root, "config/streams/literal.toml", 'payload = "json"\n[auth]\nsecret = "x"\n')
    write(root, "config/streams/nosecret.toml", 'payload = "json"\n')
    write(root, "config/streams/rsnokey.toml", 'payload = "json"\n[auth]\nalgorithm = "RS256"\n')
    write(
        root,
        "config/streams/typo.toml",
        'payload = "json"\nrate_limt = 5\n[auth]\nsecret = "${S}"\n',
    )
    write(root, "config/streams/badtype.toml", 'payload = "csv"\n[auth]\nsecret = "${S}"\n')
    write(root, "config/streams/elsewhere.toml", 'storage = "nowhere"\n[auth]\nsecret = "${S}"\n')
    write(
        root,
        "config/couriers/pos_wrong.toml",
        'stream = "pos"\nformat = "ndjson"\nfile_tag = "pos"\n',
    )
    proc = courier(root, "validate", "--json", env={**env, "S": "short"})
    assert proc.returncode == 1
    errors = "\n".join(json.loads(proc.stdout)["errors"])
    assert "literal.toml [auth.secret]: the secret is written in the file" in errors
    assert "nosecret.toml [auth.secret]: HS256 needs a secret" in errors
    assert "rsnokey.toml [auth.public_key]: RS256 needs a public key" in errors
    assert "typo.toml [rate_limt]: unknown key" in errors
    assert "typo.toml [auth.secret]" in errors and "at least 32" in errors
    assert "badtype.toml [payload]" in errors
    assert "elsewhere.toml [storage]" in errors and "'nowhere'" in errors
    assert (
        "pos_wrong.toml [format]: stream 'pos' takes xml payloads and lands them as cbor: set format = \"cbor\""
        in errors
    )


def test_land_a_large_ndjson_file(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    big = tmp_path / "big.ndjson"
    with open(big, "w") as fh:
        for i in range(30_000):
            fh.write(f'{{"id": "b{i}", "pad": "{"x" * 100}"}}\n')
    proc = courier(root, "land", "events", str(big), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["records"] == 30_000
    ids = [r["id"] for r in landed_json(root, "events")]
    assert ids == [f"b{i}" for i in range(30_000)]  # in file order


def _land_killed_once_parts_appear(root: Path, data: Path) -> int:
    """Start `courier land`, SIGKILL it once three parts are in storage; return the records
    landed by then (all of them when the land finished before the kill reached it)."""
    cmd = [sys.executable, "-m", "courier", "--project", str(root), "land", "events", str(data)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=environment())
    try:
        wait_until(
            lambda: proc.poll() is not None or len(part_files(root, "events")) >= 3,
            120,
            "some parts to land",
        )
    finally:
        proc.kill()  # SIGKILL: no cleanup
        proc.wait(30)
    assert proc.returncode in (-9, 0), proc.stderr.read().decode()
    return len(landed_json(root, "events"))


def test_land_killed_half_way_and_run_again_lands_every_record_once(tmp_path: Path) -> None:
    """kill -9 of a real `courier land` once some of its parts are in storage, then the same
    command again: every record exactly once (the parts are named by the file's content, the
    re-run overwrites them and removes the killed run's extras); a third run lands nothing.

    On a busy machine the poller may see the first parts only after the land has finished:
    then the try is repeated with a file twice as large, until a kill lands half-way."""
    n = 150_000
    for attempt in range(4):
        root = make_project(
            tmp_path / f"p{attempt}",
            streams={"events": 'payload = "json"\nroll_bytes = 32768\n'},
        )
        data = tmp_path / f"big{attempt}.ndjson"
        with open(data, "w") as fh:
            for i in range(n):
                fh.write(f'{{"id": {i}, "pad": "{"x" * 40}"}}\n')
        landed_before = _land_killed_once_parts_appear(root, data)
        assert landed_before > 0
        if landed_before < n:
            break
        n *= 2
    else:
        raise AssertionError("every land finished before the kill reached it")
    again = courier(root, "land", "events", str(data), "--json")
    assert again.returncode == 0, again.stderr
    ids = [r["id"] for r in landed_json(root, "events")]
    assert len(ids) == n and sorted(ids) == list(range(n))
    third = courier(root, "land", "events", str(data), "--json")
    assert third.returncode == 0 and json.loads(third.stdout)["already_landed"] is True
    assert len(landed_json(root, "events")) == n
    fresh = courier(root, "land", "events", str(data), "--again", "--json")
    assert fresh.returncode == 0 and len(landed_json(root, "events")) == 2 * n
