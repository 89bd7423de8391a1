"""Directory routes: consortium members and their departments (staff only)."""

from __future__ import annotations

import uuid

from aiohttp import web
from pydantic import BaseModel

from accounts.principal import authenticate
from directory.views import department_view, institution_view
from errors import NotFound
from miniprogram_api.pagination import PageQuery, paginate
from miniprogram_api.routing import Api, json_response, parse_query
from models import Department, Institution

api = Api()
TAGS = ["directory"]


class InstitutionOut(BaseModel):
    id: str
    code: str
    name: str
    short_name: str
    level: str
    level_name: str
    region: str
    phone: str
    address: str


class DepartmentOut(BaseModel):
    id: str
    code: str
    name: str
    ward: str
    phone: str
    is_active: bool


class InstitutionPage(BaseModel):
    items: list[InstitutionOut]
    next_cursor: str | None


class DepartmentPage(BaseModel):
    items: list[DepartmentOut]
    next_cursor: str | None


def path_uuid(request: web.Request, name: str = "id") -> uuid.UUID:
    """A public id from the path; anything that is not a UUID is simply not found."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        raise NotFound("未找到该记录", code="NOT_FOUND") from None


@api.route("GET", "/api/v1/institutions", summary="医联体成员机构", tags=TAGS, query=PageQuery,
           response=InstitutionPage)
async def list_institutions(request: web.Request) -> web.Response:
    (await authenticate(request)).require_staff()
    page = parse_query(request, PageQuery)
    rows, cursor = await paginate(Institution.filter(deleted_at=None), page)
    return json_response({"items": [institution_view(i) for i in rows], "next_cursor": cursor})


@api.route("GET", "/api/v1/institutions/{id}/departments", summary="机构的科室", tags=TAGS, query=PageQuery,
           response=DepartmentPage)
async def list_departments(request: web.Request) -> web.Response:
    (await authenticate(request)).require_staff()
    page = parse_query(request, PageQuery)
    institution = await Institution.get_or_none(public_id=path_uuid(request), deleted_at=None)
    if institution is None:
        raise NotFound("未找到该机构", code="INSTITUTION_NOT_FOUND")
    rows, cursor = await paginate(Department.filter(institution_id=institution.id, deleted_at=None,
                                                    is_active=True), page)
    return json_response({"items": [department_view(d) for d in rows], "next_cursor": cursor})
