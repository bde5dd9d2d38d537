"""Unknown query parameters are a 400: a misspelt filter must not silently widen an export."""
from __future__ import annotations

import weakref

from fastapi import Request
from fastapi.dependencies.models import Dependant
from pydantic import BaseModel
from starlette.routing import BaseRoute

from .errors import bad_parameter


def _query_names(dependant: Dependant) -> set[str]:
    """The query parameters of a dependant and its dependencies, those of query parameter models included."""
    names = set()
    for param in dependant.query_params:
        model = param.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names |= {field.alias or name for name, field in model.model_fields.items()}
        else:
            names.add(param.alias)
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


# id(route) -> (a weak reference to it, its parameters): routes are unhashable, and the
# walk costs ~35 us a request. The reference tells a reused id from the route cached.
_KNOWN: dict[int, tuple[weakref.ref, frozenset[str]]] = {}


def known_parameters(route: BaseRoute) -> frozenset[str]:
    cached = _KNOWN.get(id(route))
    if cached is None or cached[0]() is not route:
        cached = _KNOWN[id(route)] = (weakref.ref(route), frozenset(_query_names(route.dependant)))
    return cached[1]


async def reject_unknown_parameters(request: Request) -> None:
    known = known_parameters(request.scope["route"])
    for name in request.query_params:
        if name not in known:
            raise bad_parameter(name or "(empty name)", f"unknown query parameter; known: {', '.join(sorted(known))}")
