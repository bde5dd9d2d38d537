"""Command-line options of the single-view pipeline."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from singleview.feed import NO_PAYLOAD, PAYLOADS
from singleview.formats import DecoderConfig
from singleview.io.salesforce_schemas import load_salesforce_schemas
from singleview.sources import SOURCES, unknown_source
from singleview.transforms.window import ARRIVAL, PUBLISH


class SingleViewOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--input", action="append", default=[], metavar="SOURCE=GLOB",
            help=f"an input per source, one of {', '.join(SOURCES)}; repeatable. Streaming:"
                 " pubsub://projects/P/subscriptions/S or kafka://HOST:PORT/TOPIC")
        parser.add_argument("--mode", choices=["incremental", "rebuild"], default="incremental",
                            help="rebuild: recompute every single view from the projection collections")
        parser.add_argument("--mongo_uri", default=None,
                            help="MongoDB URI (default: $MONGODB_URI, then mongodb://127.0.0.1:27017)")
        parser.add_argument("--database", default=None,
                            help="database name (default: $SINGLEVIEW_DATABASE, then singleview)")
        parser.add_argument("--window_seconds", type=float, default=1.0,
                            help="fixed window that batches writes (streaming)")
        parser.add_argument("--window_by", choices=[ARRIVAL, PUBLISH], default=ARRIVAL,
                            help="time that places a change in a window: when it was read, or its Pub/Sub "
                                 "publish time (a backlog is then late on the DirectRunner: small writes)")
        parser.add_argument("--history_cap", type=int, default=100,
                            help="page views kept in browsing_history")
        parser.add_argument("--decimal_scale", type=int, default=4,
                            help="DECIMAL scale when Debezium schemas are off")
        parser.add_argument("--kafka_expansion_service", default=None, metavar="HOST:PORT",
                            help="expansion service for kafka:// inputs (default: start the project's,"
                                 " whose Kafka reader runs inside Flink)")
        parser.add_argument("--lease_wait", type=float, default=0, metavar="SECONDS",
                            help="how long to wait for another pipeline writing the database to finish"
                                 " (default: refuse to start at once)")
        parser.add_argument("--category_pattern", default=r"/(?:category|c)/([^/?#]+)",
                            help="regex whose first group is a page view's category")
        parser.add_argument("--sv_changes_topic", default=None, metavar="URL",
                            help="publish every change of a single view, once stored, to this topic:"
                                 " pubsub://projects/P/topics/T or kafka://HOST:PORT/TOPIC")
        parser.add_argument("--sv_changes_payload", choices=list(PAYLOADS), default=NO_PAYLOAD,
                            help="after: each upsert event carries the whole document; none: only what changed")
        parser.add_argument("--salesforce_schema_dir", default=None, metavar="DIR",
                            help="directory of <schema_id>.avsc files: the schemas of Salesforce Pub/Sub API"
                                 " (Avro binary) crm events, which carry a schema_id attribute or header")


def parse_inputs(specs: list[str]) -> dict[str, str]:
    """`source=glob` pairs, checked against the known sources."""
    inputs = {}
    for spec in specs:
        source, sep, pattern = spec.partition("=")
        if not sep or not pattern:
            raise ValueError(f"--input must be SOURCE=GLOB, got {spec!r}")
        if source not in SOURCES:
            raise unknown_source(source)
        if source in inputs:
            raise ValueError(f"--input given twice for {source!r}")
        inputs[source] = pattern
    return inputs


def decoder_config(options: SingleViewOptions) -> DecoderConfig:
    """The decoders' settings; Salesforce schemas are read here, once, and reach the workers as data."""
    schemas = load_salesforce_schemas(options.salesforce_schema_dir) if options.salesforce_schema_dir else {}
    return DecoderConfig(decimal_scale=options.decimal_scale, category_pattern=options.category_pattern,
                         salesforce_schemas=schemas)
