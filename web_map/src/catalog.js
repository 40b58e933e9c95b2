// Reads the server's /catalog, a dataset's tilejson and /readyz into one plain object per
// dataset (see docs/web-map.md for what is read from where).

export function absolute(url) {
  return new URL(url, window.location.href).toString();
}

// A URL with its query parameters replaced (an array value repeats the parameter, null
// removes it); {z}/{x}/{y} placeholders are kept readable.
export function withParams(template, params) {
  const url = new URL(template, window.location.href);
  for (const [key, value] of Object.entries(params)) {
    url.searchParams.delete(key);
    if (value === null || value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) url.searchParams.append(key, item);
  }
  return url.toString().replace(/%7B/gi, "{").replace(/%7D/gi, "}");
}

export async function fetchJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

// One /catalog entry (id, title, url, bounds, minzoom, native_maxzoom, maxzoom, tilejson,
// wmts, attribution, geometry) as the pages use it.
function normalize(raw, index) {
  const id = String(raw.id ?? `dataset-${index}`);
  return {
    raw,
    id,
    title: String(raw.title ?? id),
    url: raw.url,
    bounds: raw.bounds,
    nativeZoom: raw.native_maxzoom,
    tilejsonUrl: raw.tilejson,
    wmtsUrl: raw.wmts,
    attribution: raw.attribution,
    footprint: raw.geometry, // GeoJSON outline of the data (tiles outside it are 404)
  };
}

export async function loadCatalog() {
  const body = await fetchJSON("/catalog");
  return body.map(normalize);
}

// The dataset's tilejson for 256-px tiles: tile URL template, zoom range, and (in its
// description) the native zoom and the zooms that are super-resolved.
export async function loadTileJSON(entry, tilesize = 256) {
  if (!entry.tilejsonUrl) throw new Error(`dataset ${entry.id} has no tilejson URL`);
  const tj = await fetchJSON(withParams(absolute(entry.tilejsonUrl), { tilesize }));
  entry.tilejson = tj;
  entry.tilesize = tilesize;
  entry.bounds = entry.bounds || tj.bounds;
  entry.minZoom = tj.minzoom;
  entry.srMaxZoom = tj.maxzoom;
  if (!entry.attribution && tj.attribution) entry.attribution = tj.attribution;
  const text = typeof tj.description === "string" ? tj.description : "";
  const native = text.match(/native resolution (?:at|up to) zoom (\d+)/i);
  if (native && entry.nativeZoom === undefined) entry.nativeZoom = Number(native[1]);
  const sr = text.match(/zooms (\d+)\s*-\s*(\d+)/i);
  if (sr && entry.srMinZoom === undefined) entry.srMinZoom = Number(sr[1]);
  entry.description = text;
  entry.render = await renderParams(entry, tj);
  return entry;
}

// Render parameters that make non-8-bit data visible: a per-band rescale from the
// dataset-level 2-98 percentiles (/statistics), never from single tiles.
async function renderParams(entry, tj) {
  if (!tj.data_type || tj.data_type === "uint8") return {};
  const stats = new URL(absolute(entry.tilejsonUrl));
  stats.pathname = stats.pathname.replace(/\/[^/]+\/tilejson\.json$/, "/statistics");
  const body = await fetchJSON(stats.toString());
  const rescale = Object.values(body).map(
    (band) => `${band.percentile_2},${band.percentile_98}`,
  );
  return rescale.length ? { rescale } : {};
}

// The model modes the server offers (/readyz: {"model": {"loaded", "modes", ...}}).
export async function loadModes() {
  const body = await fetchJSON("/readyz");
  return body.model && body.model.loaded && Array.isArray(body.model.modes) ? body.model.modes : [];
}
