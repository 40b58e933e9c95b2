"""OGC API Common routes as titiler.application serves them: the JSON landing page at ``/``
(browsers asking for ``text/html`` get the web map there), ``/conformance``, and TiTiler's
``/tileMatrixSets``, ``/algorithms`` and ``/colorMaps`` factories."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
from fastapi import APIRouter, FastAPI, Query, Request
from starlette.templating import Jinja2Templates
from titiler.core.factory import AlgorithmFactory, BaseFactory, ColorMapFactory, TMSFactory
from titiler.core.models.OGC import Conformance, Landing
from titiler.core.resources.enums import MediaType
from titiler.core.utils import accept_media_type, create_html_response

from tileserver.static import web_map_page
from tileserver.tms import SUPPORTED_TMS

TEMPLATES = Jinja2Templates(
    env=jinja2.Environment(
        autoescape=jinja2.select_autoescape(["html"]),
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                jinja2.PackageLoader("titiler.core", "templates"),
            ]
        ),
    )
)
"""TiTiler's HTML templates (and ``conformance.html`` from titiler.application)."""
COMMON_CONFORMANCE = {
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/landing-page",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/json",
}
HTML_OR_JSON_ROUTE: dict[str, Any] = {
    "response_model_exclude_none": True,
    "responses": {200: {"content": {"text/html": {}, "application/json": {}}}},
    "tags": ["OGC Common"],
}
"""Route options of the OGC Common pages, answered as HTML or JSON (``f``, ``accept``)."""
FormatParam = Annotated[
    Literal["html", "json"] | None,
    Query(description="Response MediaType; default: from the `accept` header, else JSON."),
]


def _output_type(request: Request, f: str | None) -> MediaType:
    if f:
        return MediaType[f]
    accepted = [MediaType.html, MediaType.json]
    return accept_media_type(request.headers.get("accept", ""), accepted) or MediaType.json


def _landing_links(request: Request) -> list[dict[str, str]]:
    def link(title: str, route: str, media_type: str, rel: str) -> dict[str, str]:
        return {"title": title, "href": str(request.url_for(route)), "type": media_type, "rel": rel}

    ogc = "http://www.opengis.net/def/rel/ogc/1.0"
    return [
        link("Landing page", "landing", "text/html", "self"),
        link(
            "The API definition (JSON)",
            "openapi",
            "application/vnd.oai.openapi+json;version=3.0",
            "service-desc",
        ),
        link("The API documentation", "swagger_ui_html", "text/html", "service-doc"),
        link("Conformance Declaration", "conformance", "text/html", f"{ogc}/conformance"),
        link(
            "List of Available TileMatrixSets",
            "tilematrixsets",
            "application/json",
            f"{ogc}/tiling-schemes",
        ),
        link("List of Available Algorithms", "available_algorithms", "application/json", "data"),
        link("List of Available ColorMaps", "available_colormaps", "application/json", "data"),
        link("Datasets in the data directory", "catalog", "application/json", "data"),
    ]


def common_router(conforms_to: Iterable[str]) -> APIRouter:
    """``/`` (landing: JSON, or the web map for ``text/html``) and ``/conformance``."""
    router = APIRouter()
    classes = sorted(COMMON_CONFORMANCE | set(conforms_to))

    @router.get("/", response_model=Landing, **HTML_OR_JSON_ROUTE)
    def landing(request: Request, f: FormatParam = None) -> Any:
        """Landing page: TiTiler's JSON links; the web map for browsers (``text/html``)."""
        if _output_type(request, f) == MediaType.html:
            return web_map_page()
        return {
            "title": "hndsr-tiles",
            "description": request.app.description,
            "links": _landing_links(request),
        }

    @router.get("/conformance", response_model=Conformance, **HTML_OR_JSON_ROUTE)
    def conformance(request: Request, f: FormatParam = None) -> Any:
        """Conformance classes of the API (TiTiler's and those of the factories mounted)."""
        data = {"conformsTo": classes}
        if _output_type(request, f) == MediaType.html:
            return create_html_response(
                request, data, title="Conformance", template_name="conformance", templates=TEMPLATES
            )
        return data

    return router


def include_ogc_routes(app: FastAPI, factories: Iterable[BaseFactory]) -> None:
    """Mount TiTiler's TMS, algorithm and colormap factories, the landing page and
    ``/conformance`` (listing the classes of ``factories`` and of these)."""
    services = [
        (TMSFactory(supported_tms=SUPPORTED_TMS, templates=TEMPLATES), "Tiling Schemes"),
        (AlgorithmFactory(templates=TEMPLATES), "Algorithms"),
        (ColorMapFactory(templates=TEMPLATES), "ColorMaps"),
    ]
    conforms_to: set[str] = set()
    for factory in [*factories, *(service for service, _ in services)]:
        conforms_to |= factory.conforms_to
    for service, tag in services:
        app.include_router(service.router, tags=[tag])
    app.include_router(common_router(conforms_to))
