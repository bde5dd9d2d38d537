"""Sample CDC data: `python -m singleview.samples --customers N --out DIR --seed S`."""
from singleview.samples.generator import decimal_bytes, generate

__all__ = ["generate", "decimal_bytes"]
