"""Factory extensions: the SR description in tilejson, TiTiler's ``/renders`` with the
app's SR configuration, and the view of a factory that extensions register against where
they need another reader or TMS list (WMTS: ``tileserver.wmts``)."""

from __future__ import annotations

import functools
from typing import Any

from attrs import define, field
from fastapi.routing import APIRoute
from titiler.core.factory import BaseFactory, FactoryExtension
from titiler.extensions import stacRenderExtension

from tileserver.reader import SRConfig
from tileserver.sr_report import current_report


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
