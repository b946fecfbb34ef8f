"""The API's people routes: list, one person, rename/hide, merge, all photos of a person (as ``facesearch people``)."""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, FastAPI, Query, Request
from fastapi import Path as PathParam

from facesearch.serve.api.errors import error_responses
from facesearch.serve.api.schemas import PeopleResult, PersonDetail, PersonMerge, PersonPatch, PersonPhotos
from facesearch.serve.api.services import in_thread, services_of

PersonId = Annotated[int, PathParam(ge=0, le=2**53, description="The person's id (`GET /people`).")]


def add_people_routes(app: FastAPI, guarded: list[Any], auth: tuple[int, ...]) -> None:
    errors = error_responses(*auth, 404, 422, 500, 503)
    body_errors = error_responses(400, *auth, 404, 422, 500, 503)  # a JSON body that does not parse

    async def with_people(request: Request, action: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        from facesearch.serve.people import PeopleService

        services = services_of(request)

        def run() -> dict[str, Any]:
            store = services.get().store
            return action(PeopleService(store, store.resolve(services.settings.milvus.alias)))

        return await in_thread(run)

    @app.get("/people", response_model=PeopleResult, responses=errors, dependencies=guarded, tags=["people"])
    async def people(request: Request, hidden: Annotated[bool, Query(description="Include hidden people.")] = False) -> dict[str, Any]:
        """Every person found by `facesearch people cluster`, largest first, with a cover face for its thumbnail."""
        return await with_people(request, lambda p: p.list(include_hidden=hidden))

    @app.get("/people/{person_id}", response_model=PersonDetail, responses=errors, dependencies=guarded, tags=["people"])
    async def person(request: Request, person_id: PersonId) -> dict[str, Any]:
        """One person and each of its faces."""
        return await with_people(request, lambda p: p.show(person_id))

    @app.patch("/people/{person_id}", response_model=PersonDetail, responses=body_errors, dependencies=guarded, tags=["people"])
    async def patch_person(request: Request, person_id: PersonId, body: Annotated[PersonPatch, Body()]) -> dict[str, Any]:
        """Rename (``name``; '' = unnamed) and/or hide (``hidden``) a person."""
        return await with_people(request, lambda p: p.update(person_id, name=body.name, hidden=body.hidden))

    @app.post("/people/{person_id}/merge", response_model=PersonDetail, responses=body_errors, dependencies=guarded, tags=["people"])
    async def merge(request: Request, person_id: PersonId, body: Annotated[PersonMerge, Body()]) -> dict[str, Any]:
        """Merge person ``other`` into this one: its faces move here and it disappears."""
        return await with_people(request, lambda p: p.merge(person_id, body.other))

    @app.get("/people/{person_id}/photos", response_model=PersonPhotos, responses=errors, dependencies=guarded, tags=["people"])
    async def photos(request: Request, person_id: PersonId) -> dict[str, Any]:
        """Every photo the person appears in."""
        return await with_people(request, lambda p: p.photos(person_id))
