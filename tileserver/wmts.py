"""WMTS capabilities: TiTiler's extensions with the layer ids TiTiler gives, the short stem
ids of earlier releases as aliases, a layer ``Abstract`` naming the SR zooms, and the TMS
subset that ``HNDSR_WMTS_TMS`` lists."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jinja2
from attrs import define, field
from morecantile import TileMatrixSets
from starlette.requests import Request
from starlette.templating import Jinja2Templates
from titiler.core.factory import BaseFactory
from titiler.extensions import wmtsExtension
from titiler.mosaic.extensions.wmts import wmtsExtension as mosaicWmtsExtension

from tileserver.factories import FactoryView
from tileserver.sr_report import current_report
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


def _sr_abstract(tms_id: str) -> str:
    info = current_report().zooms.get(tms_id)
    return info.describe() if info else ""


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        autoescape=jinja2.select_autoescape(["xml"]),
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
    )
    env.globals["sr_abstract"] = _sr_abstract
    env.globals["layer_identifiers"] = layer_identifiers
    return Jinja2Templates(env=env)


@define
class SRWMTSExtension(wmtsExtension):
    """TiTiler's WMTS extension over the TMS in ``wmts_tms`` only."""

    wmts_tms: TileMatrixSets = field(factory=lambda: tms_subset(DEFAULT_WMTS_TMS))
    templates: Jinja2Templates = field(factory=_templates)
    layer_identifier_provider: Callable[[Any], str] = field(default=str)

    def register(self, factory: BaseFactory) -> None:  # type: ignore[override]
        """Register ``/WMTSCapabilities.xml`` listing the ``wmts_tms`` matrix sets."""
        super().register(FactoryView(factory, supported_tms=self.wmts_tms))  # type: ignore[arg-type]


@define
class SRMosaicWMTSExtension(mosaicWmtsExtension):
    """titiler.mosaic's WMTS extension, with the same ids, abstract and TMS subset."""

    wmts_tms: TileMatrixSets = field(factory=lambda: tms_subset(DEFAULT_WMTS_TMS))
    templates: Jinja2Templates = field(factory=_templates)
    layer_identifier_provider: Callable[[Any], str] = field(default=str)

    def register(self, factory: Any) -> None:
        """Register ``/WMTSCapabilities.xml`` listing the ``wmts_tms`` matrix sets."""
        super().register(FactoryView(factory, supported_tms=self.wmts_tms))  # type: ignore[arg-type]
