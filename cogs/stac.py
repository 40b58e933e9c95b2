"""STAC items (rio-stac, projection + raster extensions) for the sample COGs."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pystac
from rio_stac import create_stac_item

ATTRIBUTION = "USGS Landsat 8, public domain"
USGS_PROVIDER = {
    "name": "USGS",
    "roles": ["producer", "licensor"],
    "url": "https://www.usgs.gov/landsat-missions",
}


def write_stac_item(
    cog: Path,
    dst: Path,
    *,
    item_id: str,
    asset_key: str,
    asset_href: str,
    title: str,
    description: str,
    acquired: datetime,
) -> None:
    """Describe ``cog`` in a STAC item written to ``dst``; ``asset_href`` is stored verbatim.

    The sample scene passes an href relative to the item (``./<name>.tif``), which pystac
    and rio-tiler resolve against the item's own location.
    """
    item = create_stac_item(
        str(cog),
        input_datetime=acquired,
        id=item_id,
        asset_name=asset_key,
        asset_href=asset_href,
        asset_roles=[asset_key],
        asset_media_type=pystac.MediaType.COG,
        with_proj=True,
        with_raster=True,
        geom_densify_pts=21,
        properties={
            "title": title,
            "description": description,
            "attribution": ATTRIBUTION,
            "license": "other",
            "providers": [USGS_PROVIDER],
            "platform": "landsat-8",
            "instruments": ["oli"],
        },
    )
    item.assets[asset_key].title = title
    dst.write_text(json.dumps(item.to_dict(include_self_link=False), indent=2) + "\n")
