"""What portable runners need from outside Python: the Flink job server and the
expansion service for Kafka, both built by `scripts/beam-java.sh` from Maven
Central into `.data/beam-java` (or `$SINGLEVIEW_BEAM_JAVA`), and Prism, built
by `scripts/prism.sh` from the Go module proxy into `.data/bin`."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from apache_beam.options.pipeline_options import (FlinkRunnerOptions, PipelineOptions, PortableOptions,
                                                  PrismRunnerOptions, StandardOptions)

ROOT = Path(__file__).resolve().parents[2]
JOB_SERVER_JAR = "beam-flink-job-server.jar"
EXPANSION_SERVICE_JAR = "beam-expansion-service.jar"
LOCAL_FLINK = ("[auto]", "[local]")


def beam_java_jar(name: str) -> str:
    """A jar of the project's Java build, built on first use from a checkout."""
    directory = Path(os.environ.get("SINGLEVIEW_BEAM_JAVA", ROOT / ".data" / "beam-java"))
    jar = directory / name
    script = ROOT / "scripts" / "beam-java.sh"
    if not jar.exists() and "SINGLEVIEW_BEAM_JAVA" not in os.environ and script.exists():
        subprocess.run([str(script)], check=True, stdout=sys.stderr)
    if not jar.exists():
        raise ValueError(f"{jar} not found: build it with scripts/beam-java.sh (Java 17 and mvn)"
                         " or point $SINGLEVIEW_BEAM_JAVA at a directory holding it")
    return str(jar)


def prism_binary() -> str:
    """Prism at the SDK's version, built on first use (`scripts/prism.sh`)."""
    built = subprocess.run([str(ROOT / "scripts" / "prism.sh")], check=True, stdout=subprocess.PIPE,
                           env=dict(os.environ, PYTHON=sys.executable), text=True)
    return built.stdout.strip().splitlines()[-1]


def with_runner_defaults(argv: list[str]) -> list[str]:
    """On the PrismRunner: the project's Prism binary. On the FlinkRunner: the
    project's job-server jar, and a LOOPBACK Python worker when Flink is the
    embedded mini-cluster (no Docker)."""
    options = PipelineOptions(argv)
    runner = (options.view_as(StandardOptions).runner or "").split(".")[-1]
    if runner == "PrismRunner":
        return argv if options.view_as(PrismRunnerOptions).prism_location else argv + [
            "--prism_location", prism_binary()]
    if runner != "FlinkRunner":
        return argv
    flink = options.view_as(FlinkRunnerOptions)
    extra = []
    if not flink.flink_job_server_jar:
        extra += ["--flink_job_server_jar", beam_java_jar(JOB_SERVER_JAR)]
    if options.view_as(PortableOptions).environment_type is None and flink.flink_master in LOCAL_FLINK:
        extra += ["--environment_type", "LOOPBACK"]
    return argv + extra
