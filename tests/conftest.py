"""Shared fixtures: a real MongoDB-wire server (DESIGN.md section 8)."""
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
