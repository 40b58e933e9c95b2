"""Factory extensions: the SR description in tilejson, TiTiler's ``/renders`` with the
app's SR configuration, and the view of a factory that extensions register against where
they need another reader or TMS list (WMTS: ``tileserver.wmts``).

Descriptions compute their zoom facts from the source they name (``source_zoom_info``
opens it once more, as TiTiler's endpoint did): no channel from the reader to them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import rasterio
from attrs import define, field
from fastapi.routing import APIRoute
from morecantile import TileMatrixSet
from titiler.core.factory import BaseFactory, FactoryExtension
from titiler.extensions import stacRenderExtension

from tileserver.reader import SRConfig
from tileserver.sr_zooms import ZoomInfo


class FactoryView:
    """A factory with some attributes replaced, for an extension to register against
    (routes still go to the factory's router)."""

    def __init__(self, factory: BaseFactory, **overrides: Any) -> None:
        self._factory = factory
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._factory, name)


@define
class SRStacRenderExtension(stacRenderExtension):
    """TiTiler's ``/renders`` endpoints; they open the item without reader options, so the
    reader gets the app's SR configuration (allowlist included) here."""

    sr_config: SRConfig = field(kw_only=True)

    def register(self, factory: BaseFactory) -> None:  # type: ignore[override]
        """Register ``/renders`` and ``/renders/{render_id}``."""
        reader = functools.partial(factory.reader, sr_config=self.sr_config)  # type: ignore[attr-defined]
        super().register(FactoryView(factory, reader=reader))  # type: ignore[arg-type]


KEPT_ROUTE_OPTIONS = (
    "methods",
    "name",
    "response_model",
    "response_class",
    "responses",
    "response_model_exclude_none",
    "operation_id",
    "openapi_extra",
    "dependencies",
)
"""What a replaced route keeps of the one TiTiler registered (the OpenAPI stays the same)."""


def replace_endpoint(
    factory: BaseFactory, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> None:
    """Replace the factory's route ``name`` by the same route whose endpoint is
    ``wrap(endpoint)`` (the wrapper keeps the endpoint's signature: ``functools.wraps``)."""
    for index, route in enumerate(factory.router.routes):
        if isinstance(route, APIRoute) and route.name == name:
            options = {option: getattr(route, option) for option in KEPT_ROUTE_OPTIONS}
            factory.router.routes[index] = APIRoute(route.path, wrap(route.endpoint), **options)


def source_zoom_info(
    factory: BaseFactory, tms: TileMatrixSet, arguments: dict[str, Any]
) -> ZoomInfo | None:
    """The zoom facts in ``tms`` of the source an endpoint was called for (``arguments``:
    its resolved ``src_path``, ``reader_params``...), opened as TiTiler's endpoint opens it:
    the factory's reader, or its mosaic backend (``backend_params``). ``None``: the source
    advertises no SR zooms (a STAC item without projection, a mosaic with a maxzoom given)."""
    path, options = arguments["src_path"], arguments["reader_params"].as_dict()
    with rasterio.Env(**(arguments.get("env") or {})):
        if "backend_params" in arguments:  # MosaicTilerFactory
            source = factory.backend(  # type: ignore[attr-defined]
                path,
                tms=tms,
                reader=factory.dataset_reader,  # type: ignore[attr-defined]
                reader_options=options,
                **arguments["backend_params"].as_dict(),
            )
        else:
            source = factory.reader(path, tms=tms, **options)  # type: ignore[attr-defined]
        with source as src:
            return getattr(src, "zoom_info", None)


@define
class SRTileJSONExtension(FactoryExtension):
    """Wraps the factory's tilejson endpoint so its body says from which zoom tiles are
    super-resolved (``description``); works on ``TilerFactory``, ``MultiBaseTilerFactory``
    and ``MosaicTilerFactory``."""

    def register(self, factory: BaseFactory) -> None:
        """Replace the registered tilejson route by one that adds the SR description."""

        def with_description(endpoint: Callable[..., dict[str, Any]]) -> Callable[..., Any]:
            @functools.wraps(endpoint)
            def tilejson(*args: Any, **kwargs: Any) -> dict[str, Any]:
                body = endpoint(*args, **kwargs)
                tms = factory.supported_tms.get(kwargs["tileMatrixSetId"])  # type: ignore[attr-defined]
                info = source_zoom_info(factory, tms, kwargs)
                if info is not None:
                    body["description"] = info.describe()
                return body

            return tilejson

        replace_endpoint(factory, "tilejson", with_description)
