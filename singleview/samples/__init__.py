"""Sample CDC data: `python -m singleview.samples --customers N --out DIR --seed S`."""
from singleview.samples.generator import decimal_bytes, generate, kafka_records

__all__ = ["generate", "decimal_bytes", "kafka_records"]
