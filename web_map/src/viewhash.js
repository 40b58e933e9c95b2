// The view in the URL hash, so a link opens the same view: `#zoom/lat/lon/swipe` (the
// `#z/lat/lon` of Leaflet's hash plugins, plus the swipe divider's position in percent).

// Decimals that keep a centre within about a pixel at `zoom` (as leaflet-hash does).
function precision(zoom) {
  return Math.max(0, Math.ceil(Math.log(Math.max(zoom, 1)) / Math.LN2)) + 1;
}

export function formatViewHash(zoom, center, ratio) {
  const digits = precision(zoom);
  const swipe = Math.round(ratio * 1000) / 10;
  return `#${zoom}/${center.lat.toFixed(digits)}/${center.lng.toFixed(digits)}/${swipe}`;
}

// {zoom, lat, lon, swipe (0..1 or null)} from `#z/lat/lon[/swipe]`, or null when the hash
// is not such a view (empty, malformed, out of range).
export function parseViewHash(hash) {
  const parts = (hash || "").replace(/^#/, "").split("/");
  if (parts.length < 3 || parts.length > 4) return null;
  const [zoom, lat, lon] = parts.slice(0, 3).map(Number);
  const swipe = parts.length === 4 ? Number(parts[3]) : null;
  const valid =
    Number.isInteger(zoom) &&
    zoom >= 0 &&
    zoom <= 30 &&
    Math.abs(lat) <= 90 &&
    Math.abs(lon) <= 180 &&
    (swipe === null || (swipe >= 0 && swipe <= 100));
  if (!valid || !parts.slice(0, 3).every((p) => p.trim() !== "")) return null;
  return { zoom, lat, lon, swipe: swipe === null ? null : swipe / 100 };
}
