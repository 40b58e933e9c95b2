// Does a tile (a lon/lat rectangle) overlap a dataset's footprint (GeoJSON Polygon or
// MultiPolygon in lon/lat)? The server answers 404 for tiles outside a reprojected
// dataset's real outline even when they touch its bounding box, and browsers log every
// 404 on the console; the SR layer asks this before fetching a tile.

const EPSILON = 1e-5; // degrees (about 1 m): slivers thinner than this are not fetched

function rings(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  if (geometry.type === "Feature") return rings(geometry.geometry);
  return [];
}

function insideRings(allRings, x, y) {
  let inside = false; // even-odd rule over every ring (holes included)
  for (const ring of allRings) {
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i, i += 1) {
      const [xi, yi] = ring[i];
      const [xj, yj] = ring[j];
      if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
  }
  return inside;
}

function segmentsCross(a, b, c, d) {
  const cross = (p, q, r) => (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0]);
  const d1 = cross(c, d, a);
  const d2 = cross(c, d, b);
  const d3 = cross(a, b, c);
  const d4 = cross(a, b, d);
  return d1 * d2 < 0 && d3 * d4 < 0;
}

// west, south, east, north in degrees
export function overlapsFootprint(geometry, [west, south, east, north]) {
  const allRings = rings(geometry);
  if (allRings.length === 0) return true; // no footprint: the bounding box decides
  const w = west + EPSILON;
  const s = south + EPSILON;
  const e = east - EPSILON;
  const n = north - EPSILON;
  if (w >= e || s >= n) return false;
  const corners = [
    [w, s],
    [e, s],
    [e, n],
    [w, n],
  ];
  if (corners.some(([x, y]) => insideRings(allRings, x, y))) return true;
  for (const ring of allRings) {
    for (const [x, y] of ring) if (x > w && x < e && y > s && y < n) return true;
    for (let i = 1; i < ring.length; i += 1) {
      for (let k = 0; k < 4; k += 1) {
        if (segmentsCross(ring[i - 1], ring[i], corners[k], corners[(k + 1) % 4])) return true;
      }
    }
  }
  return false;
}
