"""Response models. The customer_sv document is singleview.document's: one model, the pipeline's and the API's."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

from .. import document
from ..document import CustomerSV

# Fields the pipeline adds later are passed through, not dropped (and the schema says so).
for _section in (document.MailingAddress, document.CrmInfo, document.OrderItem, document.Order, document.PageView,
                 document.ViewedCategory, document.MarketingPreferences, document.Stats, CustomerSV):
    with_config(ConfigDict(extra="allow"))(_section)


class CustomerPage(TypedDict):
    items: list[CustomerSV]
    count: int  # number of items in this page
    limit: int
    skip: int


# The driver hands out plain JSON-ready values and UTC-aware datetimes (db.make_client),
# written as ISO 8601 with "Z". A stored document that does not fit the model is shown as
# it is (warnings=False) rather than a 500.
CUSTOMER = TypeAdapter(CustomerSV)
PAGE = TypeAdapter(CustomerPage)


def customer_json(doc: dict) -> bytes:
    return CUSTOMER.dump_json(doc, warnings=False)


def page_json(docs: list[dict], limit: int, skip: int) -> bytes:
    return PAGE.dump_json(CustomerPage(items=docs, count=len(docs), limit=limit, skip=skip), warnings=False)


class CountBody(BaseModel):
    count: int


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    mongodb: bool
    segments: bool = Field(description="the segment read model is loaded")
