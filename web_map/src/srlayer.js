// A Leaflet GridLayer that loads tiles with fetch() so that it can read the response
// headers (an <img> tile cannot): X-SR-Mode, X-SR-Scale, X-SR-Model, X-Cache.
// Tiles that came back `degraded-bicubic` (SR overloaded or unavailable) get the CSS
// class `degraded` (a thin border) and are fetched again after their short
// Cache-Control max-age, until the real SR tile replaces them.
import L from "leaflet";
import { overlapsFootprint } from "./footprint.js";

const MIN_RETRY_S = 1;
const MAX_RETRY_S = 60;
const DEFAULT_RETRY_S = 5;

function retryDelaySeconds(response) {
  const cacheControl = response.headers.get("Cache-Control") || "";
  const maxAge = cacheControl.match(/max-age=(\d+)/i);
  const retryAfter = Number(response.headers.get("Retry-After"));
  let seconds = DEFAULT_RETRY_S;
  if (maxAge) seconds = Number(maxAge[1]);
  else if (Number.isFinite(retryAfter) && retryAfter > 0) seconds = retryAfter;
  return Math.min(MAX_RETRY_S, Math.max(MIN_RETRY_S, seconds));
}

export const SRTileLayer = L.GridLayer.extend({
  options: {
    label: "sr",
    footprint: null, // GeoJSON geometry of the data: tiles outside it are not fetched
    onTileInfo: null, // called with {coords, url, status, mode, scale, model, cache}
  },

  initialize(template, options) {
    this._template = template;
    this._pending = new Map(); // tile key -> {controller, timer, objectUrl}
    L.GridLayer.prototype.initialize.call(this, options);
  },

  setTemplate(template) {
    this._template = template;
    this.redraw();
    return this;
  },

  _isValidTile(coords) {
    if (!L.GridLayer.prototype._isValidTile.call(this, coords)) return false;
    if (!this.options.footprint) return true;
    const bounds = this._tileCoordsToBounds(coords);
    return overlapsFootprint(this.options.footprint, [
      bounds.getWest(),
      bounds.getSouth(),
      bounds.getEast(),
      bounds.getNorth(),
    ]);
  },

  getTileUrl(coords) {
    return L.Util.template(this._template, { x: coords.x, y: coords.y, z: coords.z });
  },

  onAdd(map) {
    L.GridLayer.prototype.onAdd.call(this, map);
    this.on("tileunload", this._onTileUnload, this);
  },

  onRemove(map) {
    this.off("tileunload", this._onTileUnload, this);
    for (const key of [...this._pending.keys()]) this._release(key);
    L.GridLayer.prototype.onRemove.call(this, map);
  },

  createTile(coords, done) {
    const tile = document.createElement("img");
    tile.className = "sr-tile";
    tile.alt = "";
    tile.setAttribute("role", "presentation");
    tile.dataset.layer = this.options.label;
    tile.dataset.z = coords.z;
    tile.dataset.x = coords.x;
    tile.dataset.y = coords.y;
    this._load(tile, coords, done, true);
    return tile;
  },

  _keyOf(coords) {
    return `${coords.x}:${coords.y}:${coords.z}`;
  },

  _release(key) {
    const state = this._pending.get(key);
    if (!state) return;
    if (state.controller) state.controller.abort();
    if (state.timer) clearTimeout(state.timer);
    if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
    this._pending.delete(key);
  },

  _onTileUnload(event) {
    this._release(this._keyOf(event.coords));
  },

  async _load(tile, coords, done, first) {
    const key = this._keyOf(coords);
    const url = this.getTileUrl(coords);
    const state = this._pending.get(key) || {};
    if (state.controller) state.controller.abort();
    state.controller = new AbortController();
    state.timer = null;
    this._pending.set(key, state);
    const finish = (error) => {
      if (first) done(error, tile);
      first = false;
    };
    let response;
    try {
      // A retry revalidates: the degraded copy in the browser cache must not answer it.
      const cache = first ? "default" : "no-cache";
      response = await fetch(url, { signal: state.controller.signal, cache });
    } catch (error) {
      if (error.name === "AbortError") return;
      tile.dataset.srMode = "error";
      finish(error);
      return;
    }
    const info = {
      coords,
      url,
      status: response.status,
      mode: response.headers.get("X-SR-Mode"),
      scale: response.headers.get("X-SR-Scale"),
      model: response.headers.get("X-SR-Model"),
      cache: response.headers.get("X-Cache"),
    };
    if (response.status === 204 || response.status === 404) {
      // Outside the dataset: an empty, transparent tile.
      tile.dataset.srMode = "empty";
      tile.style.visibility = "hidden";
      finish();
      return;
    }
    if (!response.ok) {
      // A model mode that is unavailable answers 503 + Retry-After: keep trying.
      tile.dataset.srMode = "unavailable";
      tile.classList.add("degraded");
      this._scheduleRetry(tile, coords, key, state, retryDelaySeconds(response));
      finish();
      if (this.options.onTileInfo) this.options.onTileInfo(info);
      return;
    }
    let blob;
    try {
      blob = await response.blob();
    } catch (error) {
      if (error.name === "AbortError") return;
      finish(error);
      return;
    }
    if (this._pending.get(key) !== state) return; // unloaded meanwhile
    const objectUrl = URL.createObjectURL(blob);
    const previous = state.objectUrl;
    state.objectUrl = objectUrl;
    tile.onload = () => {
      if (previous) URL.revokeObjectURL(previous);
      finish();
    };
    tile.onerror = () => finish(new Error(`tile ${key} is not an image`));
    tile.src = objectUrl;
    tile.dataset.srMode = info.mode || "";
    tile.dataset.srScale = info.scale || "";
    tile.title = info.mode ? `${info.mode}${info.scale ? ` ×${info.scale}` : ""}` : "";
    if (info.mode === "degraded-bicubic") {
      tile.classList.add("degraded");
      this._scheduleRetry(tile, coords, key, state, retryDelaySeconds(response));
    } else {
      tile.classList.remove("degraded");
    }
    if (this.options.onTileInfo) this.options.onTileInfo(info);
  },

  _scheduleRetry(tile, coords, key, state, seconds) {
    state.controller = null;
    state.timer = setTimeout(() => {
      if (this._pending.get(key) !== state || !this._map) return;
      this._load(tile, coords, null, false);
    }, seconds * 1000);
  },
});

export function srTileLayer(template, options) {
  return new SRTileLayer(template, options);
}
