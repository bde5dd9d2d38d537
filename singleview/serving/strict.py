"""Unknown query parameters are a 400: a misspelt filter must not silently widen an export."""
from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant

from .errors import bad_parameter


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def reject_unknown_parameters(request: Request) -> None:
    route = request.scope.get("route")
    known = getattr(route, "known_query_parameters", None)
    if known is None:
        known = route.known_query_parameters = frozenset(_query_names(route.dependant))
    for name in request.query_params:
        if name not in known:
            raise bad_parameter(name or "(empty name)", f"unknown query parameter; known: {', '.join(sorted(known))}")
