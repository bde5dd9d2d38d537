"""Shared fixtures: a real MongoDB-wire server (docs/design.md section 7)."""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pymongo
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mongo_uri() -> str:
    """MONGODB_URI if given, else the project's FerretDB, started if needed."""
    uri = os.environ.get("MONGODB_URI")
    if uri:
        return uri
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run([str(ROOT / "scripts" / "mongo.sh"), "start"], check=True, env=env)
    return f"mongodb://{os.environ.get('SINGLEVIEW_MONGO_ADDR', '127.0.0.1:27017')}"


@pytest.fixture(scope="session")
def mongo_client(mongo_uri):
    client = pymongo.MongoClient(mongo_uri, serverSelectionTimeoutMS=5000, tz_aware=True)
    client.admin.command("ping")
    yield client
    client.close()


@pytest.fixture
def database_name(mongo_client):
    """A fresh database per test, dropped afterwards."""
    name = f"svtest_{uuid.uuid4().hex[:10]}"
    yield name
    mongo_client.drop_database(name)


@pytest.fixture
def database(mongo_client, database_name):
    return mongo_client[database_name]


class OwnServer:
    """A FerretDB of the test's own (scripts/mongo.sh with its own port and data), to stop and start."""

    def __init__(self, directory: Path):
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"mongodb://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SINGLEVIEW_MONGO_ADDR": f"127.0.0.1:{self.port}",
                    "SINGLEVIEW_MONGO_DIR": str(directory), "PYTHON": sys.executable}
        self.env.pop("MONGODB_URI", None)

    def _script(self, command: str) -> None:
        subprocess.run([str(ROOT / "scripts" / "mongo.sh"), command], env=self.env, check=True, capture_output=True)

    def start(self) -> None:
        self._script("start")

    def stop(self) -> None:
        """Returns once the port is closed."""
        import socket
        import time
        self._script("stop")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.05)
        raise AssertionError("FerretDB did not stop")


@pytest.fixture
def own_server(tmp_path):
    server = OwnServer(tmp_path / "own-ferretdb")
    server.start()
    yield server
    server.stop()
