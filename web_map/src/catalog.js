// Reads the server's /catalog and each dataset's tilejson into one plain object per
// dataset, so that the pages do not depend on the exact field names (the server's
// /catalog is the source of truth; see docs/web-map.md for what is read from where).

const pick = (obj, ...names) => {
  for (const name of names) {
    const parts = name.split(".");
    let value = obj;
    for (const part of parts) value = value == null ? undefined : value[part];
    if (value !== undefined && value !== null) return value;
  }
  return undefined;
};

export function absolute(url) {
  return new URL(url, window.location.href).toString();
}

// A tile URL template with its query parameters replaced (placeholders kept readable).
export function withParams(template, params) {
  const url = new URL(template, window.location.href);
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined) url.searchParams.delete(key);
    else url.searchParams.set(key, String(value));
  }
  return url.toString().replace(/%7B/gi, "{").replace(/%7D/gi, "}");
}

export async function fetchJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

function normalize(raw, index) {
  const id = String(pick(raw, "id", "name") ?? `dataset-${index}`);
  return {
    raw,
    id,
    title: String(pick(raw, "title", "name", "id") ?? id),
    url: pick(raw, "url", "href"),
    bounds: pick(raw, "bounds", "bbox"),
    minZoom: pick(raw, "minzoom", "min_zoom", "zoom.min"),
    nativeZoom: pick(
      raw,
      "native_maxzoom",
      "native_max_zoom",
      "native_zoom",
      "nativeZoom",
      "native.maxzoom",
      "zoom.native",
    ),
    srMaxZoom: pick(raw, "sr_maxzoom", "sr_max_zoom", "srMaxZoom", "maxzoom", "zoom.sr_max"),
    srMinZoom: pick(raw, "sr_minzoom", "sr_min_zoom", "sr_start_zoom", "sr_from_zoom"),
    nativeResolution: pick(raw, "native_resolution", "resolution", "native_res"),
    tilejsonUrl: pick(raw, "tilejson", "tilejson_url", "tilejsonUrl", "links.tilejson"),
    wmtsUrl: pick(raw, "wmts", "wmts_url", "wmtsUrl", "links.wmts"),
    attribution: pick(raw, "attribution", "properties.attribution", "license"),
    srModes: pick(raw, "sr_modes", "srModes", "modes"),
  };
}

export async function loadCatalog() {
  const body = await fetchJSON("/catalog");
  const list = Array.isArray(body) ? body : pick(body, "datasets", "items", "collections") || [];
  return list.map(normalize);
}

export async function loadTileJSON(entry) {
  if (!entry.tilejsonUrl) throw new Error(`dataset ${entry.id} has no tilejson URL`);
  const tj = await fetchJSON(absolute(entry.tilejsonUrl));
  entry.tilejson = tj;
  entry.bounds = entry.bounds || tj.bounds;
  entry.minZoom = entry.minZoom ?? tj.minzoom;
  if (entry.srMaxZoom === undefined) entry.srMaxZoom = tj.maxzoom;
  if (!entry.attribution && tj.attribution) entry.attribution = tj.attribution;
  // tilejson's description says from which zoom on tiles are super-resolved.
  if (entry.srMinZoom === undefined && typeof tj.description === "string") {
    const match = tj.description.match(/zoom\D{0,20}(\d+)/i);
    if (match) entry.srMinZoom = Number(match[1]);
  }
  return entry;
}

// Which model modes the server offers: the catalog entry first, then /readyz.
export async function loadModes(entry) {
  if (Array.isArray(entry.srModes)) return entry.srModes;
  try {
    const response = await fetch("/readyz", { headers: { Accept: "application/json" } });
    const body = await response.json();
    const modes = pick(body, "sr_modes", "modes", "model.modes", "model.sr_modes");
    if (Array.isArray(modes)) return modes;
  } catch {
    // /readyz unavailable or not JSON: no selector.
  }
  return [];
}
