#!/usr/bin/env bash
# Build the Java side of Beam for portable runners (tools/beam-java/pom.xml)
# into .data/beam-java: the Flink job server (embedded mini-cluster) and the
# expansion service for ReadFromKafka, two launcher jars over one lib/.
# Idempotent: rebuilds only when the pom changed. Prints the jars' paths.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_java.sh
OUT=".data/beam-java"
mvn_package tools/beam-java/pom.xml "$OUT"
echo "flink_job_server_jar=$PWD/$OUT/beam-flink-job-server.jar"
echo "expansion_service_jar=$PWD/$OUT/beam-expansion-service.jar"
