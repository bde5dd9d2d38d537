"""Dataflow submission: the package workers install, and the README's commands.

The sdist is built by Beam's own stager (what `--setup_file ./setup.py` does
at submission), installed with its dependencies into a clean venv (what a
worker does with it), and run there from a directory outside the repo.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.gcp.gcsfilesystem import GCSFileSystem
from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions, SetupOptions,
                                                  StandardOptions)
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.portability.stager import WORKFLOW_TARBALL_FILE, Stager
from packaging.requirements import Requirement

from singleview.io.pubsub import parse_pubsub_url
from singleview.sources import SOURCES
from singleview.pipelines.options import SingleViewOptions, parse_inputs
from singleview.pipelines.single_view import read
from singleview.samples import generate

from tests.test_pipeline import GARBAGE, run_into, views, write_inputs

ROOT = Path(__file__).resolve().parents[1]
PORTAL = {"portal.html", "portal.css", "portal.js"}


@pytest.fixture(scope="module")
def workflow_tarball(tmp_path_factory) -> Path:
    """The sdist DataflowRunner stages as workflow.tar.gz."""
    options = PipelineOptions(["--setup_file", str(ROOT / "setup.py")])
    resources = Stager.create_job_resources(options, str(tmp_path_factory.mktemp("staging")),
                                            log_submission_env_dependencies=False)
    for resource in resources:
        staged = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(resource.role_payload)
        if staged.staged_name == WORKFLOW_TARBALL_FILE:
            return Path(beam_runner_api_pb2.ArtifactFilePayload.FromString(resource.type_payload).path)
    raise AssertionError(f"the stager built no {WORKFLOW_TARBALL_FILE}")


def sdist_members(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as archive:
        return [name.split("/", 1)[1] for name in archive.getnames() if "/" in name]


def test_sdist_holds_the_package_and_portal_files_but_no_tests_or_benchmarks(workflow_tarball):
    members = sdist_members(workflow_tarball)
    assert "singleview/pipelines/single_view.py" in members
    assert {f"singleview/serving/static/{name}" for name in PORTAL} <= set(members)
    assert not [m for m in members if m.split("/")[0] in ("tests", "bench", "docs", "tools", "scripts")]


def exact(requirement: str) -> bool:
    specifiers = list(Requirement(requirement).specifier)
    return len(specifiers) == 1 and specifiers[0].operator == "=="


def pins(path: Path) -> set[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return {str(Requirement(line)) for line in lines if line and not line.startswith("-r")}


def test_sdist_requirements_match_requirements_files(workflow_tarball):
    """Workers get the pipeline's pins; serving stays an extra; both agree with requirements*.txt."""
    with tarfile.open(workflow_tarball) as archive:
        member = next(m for m in archive.getnames() if m.endswith(".egg-info/requires.txt"))
        text = archive.extractfile(member).read().decode()
    sections, current = {}, ""
    for line in text.splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif line.strip():
            sections.setdefault(current, set()).add(str(Requirement(line)))
    worker, serving = sections[""], sections["serving"]
    assert all(exact(r) for r in worker | serving | sections["test"])
    assert not {Requirement(r).name for r in worker} & {"fastapi", "uvicorn", "prometheus-client"}
    assert worker | serving == pins(ROOT / "requirements.txt")
    assert worker | sections["test"] == pins(ROOT / "requirements.txt") | pins(ROOT / "requirements-test.txt")


@pytest.fixture(scope="module")
def worker_python(workflow_tarball, tmp_path_factory):
    """A clean venv with the sdist and its `install_requires` (from pip's cache when warm)."""
    venv = tmp_path_factory.mktemp("worker") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
         "--disable-pip-version-check", str(workflow_tarball)],
        capture_output=True, text=True)
    assert install.returncode == 0, f"installing the sdist failed:\n{install.stdout}\n{install.stderr}"
    yield python
    shutil.rmtree(venv)  # ~800 MB; pytest keeps its last three temp trees


def worker_env() -> dict[str, str]:
    """The environment without anything that would put the repo or its venv on sys.path."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k not in drop}


INSPECT = """
import importlib.util, json, pathlib, sys
import singleview
from apache_beam.io.filesystems import FileSystems
static = pathlib.Path(singleview.__file__).parent / "serving" / "static"
print(json.dumps({
    "file": singleview.__file__, "path": sys.path,
    "serving": [m for m in ("fastapi", "uvicorn", "prometheus_client") if importlib.util.find_spec(m)],
    "portal": sorted(p.name for p in static.iterdir()),
    "gcs": type(FileSystems.get_filesystem("gs://bucket/cdc/*.jsonl")).__name__,
}))
"""


@pytest.fixture
def other_database(mongo_client):
    name = f"svtest_{uuid.uuid4().hex[:10]}"
    yield mongo_client[name]
    mongo_client.drop_database(name)


def test_installed_package_runs_the_pipeline_like_a_worker(tmp_path, worker_python, mongo_uri, database,
                                                          database_name, other_database):
    """Same customer_sv as the in-repo pipeline, from the venv alone, DoFns unpickled in worker processes."""
    venv = worker_python.parent.parent
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    inspect = subprocess.run([str(worker_python), "-c", INSPECT], cwd=outside, env=worker_env(),
                             capture_output=True, text=True)
    assert inspect.returncode == 0, inspect.stderr
    found = json.loads(inspect.stdout)
    assert Path(found["file"]).is_relative_to(venv)
    assert not [p for p in found["path"] if p and Path(p).resolve().is_relative_to(ROOT)]
    assert found["serving"] == []
    assert set(found["portal"]) == PORTAL
    assert found["gcs"] == "GCSFileSystem"

    generated = generate(customers=30, seed=23)
    messages = {source: list(generated[source]) + ([GARBAGE[source]] if source in GARBAGE else [])
                for source in SOURCES}
    args = write_inputs(tmp_path, messages)
    run_into(mongo_uri, database_name, args)

    worker = subprocess.run(
        [str(venv / "bin" / "singleview-pipeline"), *args, "--mongo_uri", mongo_uri,
         "--database", other_database.name, "--runner", "DirectRunner",
         "--direct_running_mode", "multi_processing", "--direct_num_workers", "2"],
        cwd=outside, env=worker_env(), capture_output=True, text=True, timeout=600)
    assert worker.returncode == 0, f"{worker.stdout}\n{worker.stderr}"
    assert "events read" in worker.stdout

    assert views(other_database) == views(database) != {}
    dead = [sorted((e["source"], e["reason"]) for e in db["sv_errors"].find()) for db in (database, other_database)]
    assert dead[0] == dead[1] and len(dead[0]) == len(GARBAGE)


def readme_commands(section: str) -> list[list[str]]:
    """`run_pipeline.py` command lines in a README section's shell blocks, as argv."""
    text = (ROOT / "README.md").read_text()
    body = re.search(rf"^### {section}\n(.*?)(?=^##)", text, re.S | re.M).group(1)
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", body, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if "run_pipeline.py" in argv:
                commands.append(argv[argv.index("run_pipeline.py") + 1:])
    return commands


DATAFLOW = readme_commands("Dataflow")


def test_readme_has_batch_and_streaming_dataflow_commands():
    assert sorted("--streaming" in argv for argv in DATAFLOW) == [False, True]


@pytest.mark.parametrize("argv", DATAFLOW, ids=lambda argv: "streaming" if "--streaming" in argv else "batch")
def test_readme_dataflow_command_parses(argv):
    options = SingleViewOptions(argv)
    unknown = set(options.get_all_options(retain_unknown_options=True)) - set(options.get_all_options())
    assert not unknown, f"options Beam does not know: {unknown}"
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    cloud = options.view_as(GoogleCloudOptions)
    assert cloud.project and cloud.region and cloud.temp_location.startswith("gs://")
    assert (ROOT / options.view_as(SetupOptions).setup_file).resolve() == ROOT / "setup.py"
    assert options.mongo_uri

    inputs = parse_inputs(options.input)
    assert set(inputs) == set(SOURCES)
    streaming = options.view_as(StandardOptions).streaming
    for source, location in inputs.items():
        read(source, location, streaming, options)
        if streaming:
            assert parse_pubsub_url(location)[0] == "subscription"
        else:
            assert isinstance(FileSystems.get_filesystem(location), GCSFileSystem)
