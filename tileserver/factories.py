"""TiTiler factories that say where super-resolution starts (tilejson ``description``,
WMTS layer ``Abstract``); everything else is TiTiler's own."""

from __future__ import annotations

import functools
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jinja2
from attrs import define
from fastapi.routing import APIRoute
from starlette.templating import Jinja2Templates
from titiler.core.factory import BaseFactory, FactoryExtension
from titiler.extensions import wmtsExtension

from tileserver.sr_report import current_report

TEMPLATES_DIR = Path(__file__).parent / "templates"


def _sr_abstract(tms_id: str) -> str:
    info = current_report().zooms.get(tms_id)
    return info.describe() if info else ""


def sr_wmts_extension() -> wmtsExtension:
    """TiTiler's WMTS extension with a layer ``Abstract`` naming the SR zooms."""
    env = jinja2.Environment(
        autoescape=jinja2.select_autoescape(["xml"]),
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    )
    env.globals["sr_abstract"] = _sr_abstract
    return wmtsExtension(
        templates=Jinja2Templates(env=env), layer_identifier_provider=dataset_layer_name
    )


def dataset_layer_name(src_path: str) -> str:
    """WMTS layer name of a dataset: its file stem (``.../scene.tif`` -> ``scene``)."""
    return PurePosixPath(urlsplit(src_path).path).stem or "dataset"


@define
class SRTileJSONExtension(FactoryExtension):
    """Wraps the factory's tilejson endpoint so its body says from which zoom tiles are
    super-resolved (``description``); works on ``TilerFactory`` and ``MultiBaseTilerFactory``."""

    def register(self, factory: BaseFactory) -> None:
        """Replace the registered tilejson route by one that adds the SR description."""
        for index, route in enumerate(factory.router.routes):
            if not (isinstance(route, APIRoute) and route.name == "tilejson"):
                continue
            endpoint = route.endpoint

            @functools.wraps(endpoint)
            def tilejson(*args: Any, _endpoint=endpoint, **kwargs: Any) -> dict[str, Any]:
                body = _endpoint(*args, **kwargs)
                info = current_report().zooms.get(str(kwargs.get("tileMatrixSetId")))
                if info is not None:
                    body["description"] = info.describe()
                return body

            factory.router.routes[index] = APIRoute(
                route.path,
                tilejson,
                methods=list(route.methods or ["GET"]),
                name=route.name,
                response_model=route.response_model,
                responses=route.responses,
                response_model_exclude_none=route.response_model_exclude_none,
                operation_id=route.operation_id,
            )
