"""Salesforce Pub/Sub API event schemas, read where the pipeline is built.

`--salesforce_schema_dir` holds one `<schema_id>.avsc` per schema (the JSON
that the Pub/Sub API's GetSchema returns); any filesystem Beam reads works
(a local directory, `gs://…`). The texts travel to the workers inside
`DecoderConfig`, so workers read no files.
"""
from __future__ import annotations

import posixpath

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from singleview.formats.salesforce_avro import writer_schema
from singleview.model import DecodeError

SUFFIX = ".avsc"


def load_salesforce_schemas(directory: str) -> dict[str, str]:
    """schema_id -> schema JSON; each one is parsed here, so a bad file stops the run before it starts."""
    matched = FileSystems.match([FileSystems.join(directory, f"*{SUFFIX}")])[0].metadata_list
    schemas = {}
    for path in sorted(m.path for m in matched):
        schema_id = posixpath.basename(path.replace("\\", "/"))[:-len(SUFFIX)]
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            text = handle.read().decode("utf-8")
        try:
            writer_schema(text)
        except DecodeError as error:
            raise ValueError(f"--salesforce_schema_dir: {path}: {error}") from error
        schemas[schema_id] = text
    if not schemas:
        raise ValueError(f"--salesforce_schema_dir {directory!r} holds no <schema_id>{SUFFIX} file")
    return schemas
