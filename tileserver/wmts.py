"""WMTS capabilities: TiTiler's extensions with the layer ids TiTiler gives, the short stem
ids of earlier releases as aliases, a layer ``Abstract`` naming the SR zooms, and the TMS
subset that ``HNDSR_WMTS_TMS`` lists."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jinja2
from attrs import define, field
from morecantile import TileMatrixSets
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates
from titiler.core.factory import BaseFactory
from titiler.extensions import wmtsExtension
from titiler.mosaic.extensions.wmts import wmtsExtension as mosaicWmtsExtension

from tileserver.factories import FactoryView, replace_endpoint, source_zoom_info
from tileserver.tms import DEFAULT_WMTS_TMS, tms_subset

TEMPLATES_DIR = Path(__file__).parent / "templates"


def dataset_layer_name(src_path: str) -> str:
    """Short layer name of a dataset: its file stem (``.../scene.tif`` -> ``scene``)."""
    return PurePosixPath(urlsplit(src_path).path).stem or "dataset"


def layer_identifiers(request: Request, layer: dict[str, Any]) -> list[str]:
    """TiTiler's id of a layer, ``<url>_<tms>_<render>`` with the ``url`` as requested, then
    the alias ``<stem>_<tms>_<render>`` that earlier releases named it (when it differs)."""
    identifier = layer["identifier"]
    start = identifier.rfind(f"_{layer['tms_identifier']}_")
    source, suffix = identifier[:start], identifier[start:]
    titiler_id = request.query_params.get("url", source) + suffix
    alias = dataset_layer_name(source) + suffix
    return [titiler_id] if alias == titiler_id else [titiler_id, alias]


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        autoescape=jinja2.select_autoescape(["xml"]),
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    )
    env.globals["layer_identifiers"] = layer_identifiers
    return Jinja2Templates(env=env)


def sr_abstracts(factory: Any, arguments: dict[str, Any], tms_ids: Iterable[str]) -> dict:
    """``{tms id: abstract}`` naming the SR zooms of the endpoint's source in each TMS (none
    where the source does not open in it: TiTiler then lists the TMS's own zooms)."""
    abstracts = {}
    for tms_id in set(tms_ids):
        try:
            info = source_zoom_info(factory, factory.supported_tms.get(tms_id), arguments)
        except Exception:  # noqa: BLE001 (as TiTiler's own per-TMS open in this endpoint)
            continue
        if info is not None:
            abstracts[tms_id] = info.describe()
    return abstracts


def register_with_abstracts(factory: Any, templates: Jinja2Templates) -> None:
    """Wrap the WMTS route registered on ``factory``: TiTiler's endpoint builds the layers,
    the document is rendered again with each layer's SR abstract."""

    def with_abstracts(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(endpoint)
        def wmts(*args: Any, **kwargs: Any) -> Response:
            context = endpoint(*args, **kwargs).context
            tms_ids = (layer["tms_identifier"] for layer in context["layers"])
            abstracts = sr_abstracts(factory, kwargs, tms_ids)
            return templates.TemplateResponse(
                context["request"],
                name="wmts.xml",
                context={**context, "sr_abstracts": abstracts},
                media_type="application/xml",
            )

        return wmts

    replace_endpoint(factory, "wmts", with_abstracts)


@define
class SRWMTSExtension(wmtsExtension):
    """TiTiler's WMTS extension over the TMS in ``wmts_tms`` only."""

    wmts_tms: TileMatrixSets = field(factory=lambda: tms_subset(DEFAULT_WMTS_TMS))
    templates: Jinja2Templates = field(factory=_templates)
    layer_identifier_provider: Callable[[Any], str] = field(default=str)

    def register(self, factory: BaseFactory) -> None:  # type: ignore[override]
        """Register ``/WMTSCapabilities.xml`` listing the ``wmts_tms`` matrix sets."""
        view = FactoryView(factory, supported_tms=self.wmts_tms)
        super().register(view)  # type: ignore[arg-type]
        register_with_abstracts(view, self.templates)


@define
class SRMosaicWMTSExtension(mosaicWmtsExtension):
    """titiler.mosaic's WMTS extension, with the same ids, abstract and TMS subset."""

    wmts_tms: TileMatrixSets = field(factory=lambda: tms_subset(DEFAULT_WMTS_TMS))
    templates: Jinja2Templates = field(factory=_templates)
    layer_identifier_provider: Callable[[Any], str] = field(default=str)

    def register(self, factory: Any) -> None:
        """Register ``/WMTSCapabilities.xml`` listing the ``wmts_tms`` matrix sets."""
        view = FactoryView(factory, supported_tms=self.wmts_tms)
        super().register(view)  # type: ignore[arg-type]
        register_with_abstracts(view, self.templates)
