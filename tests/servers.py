"""Real servers on loopback for integration tests: a moto S3 server and Azurite (blob).

Plain functions, usable from any test package's fixtures:

    proc, endpoint = start_moto_server()        # endpoint: http://127.0.0.1:PORT
    proc, endpoint = start_azurite(location)    # endpoint: http://127.0.0.1:PORT/devstoreaccount1
    proc, remote = start_sail(log_dir, env)     # remote: sc://127.0.0.1:PORT (Sail, no JVM)
    proc, remote = start_spark_jvm(log_dir)     # pyspark's own JVM Spark Connect server, local[2]
    stop_process(proc)
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_AZURITE = REPO / ".tools" / "node_modules" / ".bin" / "azurite-blob"

# Azurite's well-known development account (public, documented by Microsoft).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

MOTO_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # noqa: S105 - moto's dummy credentials
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


class ServerError(RuntimeError):
    """A test server could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int,
    host: str = "127.0.0.1",
    timeout: float = 30.0,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Wait until something accepts connections on host:port (or the process dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"server process exited with code {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ServerError(f"nothing answered on {host}:{port} within {timeout:.0f}s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)


def _log_tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _start(
    cmd: list[str],
    port: int,
    log: Path,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )
    try:
        wait_for_port(port, proc=proc, timeout=timeout)
    except ServerError as exc:
        stop_process(proc)
        raise ServerError(f"{' '.join(cmd)}: {exc}\n{_log_tail(log)}") from None
    return proc


def moto_command(port: int) -> list[str]:
    """moto_server beside the running interpreter, else `python -m moto.server`."""
    script = Path(sys.executable).parent / "moto_server"
    if script.exists():
        return [str(script), "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def start_moto_server(
    log_dir: Path | None = None, timeout: float = 30.0, checks_after: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a moto server (all AWS services, S3 included) on a free loopback port. With
    `checks_after`, it checks every request's credentials against its IAM users once that
    many requests were served (moto's INITIAL_NO_AUTH_ACTION_COUNT): the first ones set up
    a user, its key and a bucket."""
    port = free_port()
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="moto-"))
    env = None
    if checks_after is not None:
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(checks_after)}
    proc = _start(moto_command(port), port, log_dir / "moto.log", timeout, env=env)
    return proc, f"http://127.0.0.1:{port}"


def azurite_binary() -> Path:
    """AZURITE_BIN, else the copy `make install-dev` puts under .tools/."""
    configured = os.environ.get("AZURITE_BIN")
    candidates = [Path(configured)] if configured else [DEFAULT_AZURITE]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    found = shutil.which("azurite-blob")
    if found and not configured:
        return Path(found)
    where = f"AZURITE_BIN={configured}" if configured else str(DEFAULT_AZURITE)
    raise ServerError(
        f"Azurite is not installed ({where} not found): run make install-dev "
        "(it installs Azurite with npm under .tools/)"
    )


def start_azurite(
    location: Path | None = None, timeout: float = 30.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Start Azurite's blob service on a free loopback port, its data under `location`."""
    binary = azurite_binary()
    location = Path(location or tempfile.mkdtemp(prefix="azurite-"))
    location.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [
        str(binary),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--location",
        str(location),
        "--silent",
        "--skipApiVersionCheck",
        "--loose",
    ]
    proc = _start(cmd, port, location / "azurite.log", timeout)
    return proc, f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"


AZURITE_START_FROM = (3, 37, 0)  # List Blobs' startFrom honoured (Azure/Azurite#2688)


def azurite_version() -> tuple[int, ...] | None:
    """The version of the Azurite the tests start (package.json of its npm package)."""
    try:
        folder = azurite_binary().resolve().parent
    except ServerError:
        return None
    for parent in [folder, *folder.parents]:
        manifest = parent / "package.json"
        if manifest.exists():
            import json

            data = json.loads(manifest.read_text())
            if data.get("name") == "azurite":
                return tuple(int(x) for x in str(data["version"]).split(".")[:3])
    return None


def azurite_start_from_problem() -> str | None:
    """Why the Azurite at hand cannot hold a Delta table past its second commit, or None:
    delta-rs finds a table's newer commits with a List Blobs `startFrom`, which Azurite
    before 3.37 accepts and ignores (every commit comes back, and the snapshot is refused
    with 'Invalid table version')."""
    version = azurite_version()
    if version is not None and version < AZURITE_START_FROM:
        found = ".".join(map(str, version))
        return (
            f"Azurite {found} ignores List Blobs' startFrom, which Delta tables need: run make "
            "install-dev (it installs Azurite 3.37.0 under .tools/), or set AZURITE_BIN to one"
        )
    return None


def azurite_connection_string(endpoint: str, key: str = AZURITE_KEY) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={key};"
        f"BlobEndpoint={endpoint};"
    )


def start_sail(
    log_dir: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Sail's Spark Connect server (pysail, no JVM) on a free loopback port. env: extra
    variables for the server (AWS_* for S3, AZURE_* for Azure: the cluster's credentials)."""
    sail = Path(sys.executable).parent / "sail"
    if not sail.exists():
        raise ServerError(f"{sail} not found: run make install (the courier[spark] extra)")
    port = free_port()
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="sail-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    cmd = [str(sail), "spark", "server", "--ip", "127.0.0.1", "--port", str(port)]
    proc = _start(cmd, port, log_dir / "sail.log", timeout, {**os.environ, **(env or {})}, log_dir)
    return proc, f"sc://127.0.0.1:{port}"


def spark_home() -> Path:
    """The pyspark package: its bin/ and jars/ are a Spark distribution (Connect included)."""
    import pyspark

    return Path(pyspark.__file__).parent


def start_spark_jvm(
    log_dir: Path | None = None, timeout: float = 300.0
) -> tuple[subprocess.Popen[bytes], str]:
    """Apache Spark's own Spark Connect server (JVM, local[2]) from the pyspark wheel's jars:
    works offline (no --packages; no Delta, no s3a). Slow to start on a busy machine."""
    home = spark_home()
    port = free_port()
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="spark-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    conf = {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.warehouse.dir": str(log_dir / "warehouse"),
        "spark.driver.extraJavaOptions": f"-Djava.io.tmpdir={log_dir}",
    }
    cmd = [
        str(home / "bin" / "spark-submit"),
        "--class",
        "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--master",
        "local[2]",
        "--driver-memory",
        "1g",
    ]
    for key, value in conf.items():
        cmd += ["--conf", f"{key}={value}"]
    cmd.append("spark-internal")
    # its Python workers (mapInArrow: CBOR and XML decoded on the cluster) import courier
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    proc = _start(cmd, port, log_dir / "spark.log", timeout, env, log_dir)
    return proc, f"sc://127.0.0.1:{port}"
