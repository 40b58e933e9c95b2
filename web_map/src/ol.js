// The second client (`/ol.html`): OpenLayers builds its layer from the server's WMTS
// capabilities document with `optionsFromCapabilities`, as a WMTS client such as QGIS
// does, instead of from a URL template.
import "ol/ol.css";
import "./style.css";
import Map from "ol/Map.js";
import View from "ol/View.js";
import WMTSCapabilities from "ol/format/WMTSCapabilities.js";
import TileLayer from "ol/layer/Tile.js";
import { transformExtent } from "ol/proj.js";
import { overlapsFootprint } from "./footprint.js";
import WMTS, { optionsFromCapabilities } from "ol/source/WMTS.js";
import { absolute, loadCatalog, loadTileJSON, withParams } from "./catalog.js";

const MATRIX_SET = "WebMercatorQuad";
const EMPTY_PNG =
  "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNgYGBgAAAABQABeqhXUAAAAABJRU5ErkJggg==";
const state = { tilesLoaded: 0, tileErrors: 0, loadedUrls: [], errors: [] };
window.hndsrOl = state;
const $ = (id) => document.getElementById(id);

const map = new Map({ target: "map", view: new View({ center: [0, 0], zoom: 2 }) });
state.map = map;
let layer = null;

// The capabilities URL from the catalog, with sr=auto and the dataset's render parameters
// (a rescale for non-8-bit data): TiTiler copies them into the layer's ResourceURL template.
async function capabilitiesUrl(entry) {
  if (!entry.tilejson) await loadTileJSON(entry);
  return withParams(absolute(entry.wmtsUrl), { ...entry.render, sr: "auto" });
}

function updateStatus() {
  const zoom = map.getView().getZoom();
  $("status").textContent =
    `zoom ${zoom === undefined ? "?" : zoom.toFixed(1)} · ` +
    `${state.tilesLoaded} tiles loaded · ${state.tileErrors} failed · layer ${state.layer || "?"}`;
}

async function showDataset(entry) {
  const url = await capabilitiesUrl(entry);
  state.capabilitiesUrl = url;
  $("caps-link").href = url;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const capabilities = new WMTSCapabilities().read(await response.text());
  const layers = capabilities.Contents.Layer;
  const chosen =
    layers.find((l) => l.TileMatrixSetLink.some((link) => link.TileMatrixSet === MATRIX_SET)) ||
    layers[0];
  const options = optionsFromCapabilities(capabilities, {
    layer: chosen.Identifier,
    matrixSet: MATRIX_SET,
  });
  if (!options) throw new Error(`layer ${chosen.Identifier} not usable from the capabilities`);
  options.crossOrigin = "anonymous";
  options.attributions = entry.attribution ? [entry.attribution] : undefined;
  const source = new WMTS(options);
  // Tiles outside the data's outline are 404 (logged by browsers): do not request them.
  const defaultLoad = source.getTileLoadFunction();
  source.setTileLoadFunction((tile, src) => {
    const extent = source.getTileGrid().getTileCoordExtent(tile.getTileCoord());
    const lonLat = transformExtent(extent, "EPSG:3857", "EPSG:4326");
    if (overlapsFootprint(entry.footprint, lonLat)) defaultLoad(tile, src);
    else tile.getImage().src = EMPTY_PNG;
  });
  source.on("tileloadend", (event) => {
    state.tilesLoaded += 1;
    state.loadedUrls.push(event.tile.getImage().src);
    updateStatus();
  });
  source.on("tileloaderror", () => {
    state.tileErrors += 1;
    updateStatus();
  });
  if (layer) map.removeLayer(layer);
  layer = new TileLayer({ source });
  map.addLayer(layer);
  state.layer = chosen.Identifier;
  state.tileUrls = options.urls;
  const extent = transformExtent(chosen.WGS84BoundingBox, "EPSG:4326", "EPSG:3857");
  map.getView().fit(extent, { size: map.getSize() });
  updateStatus();
}

async function start() {
  try {
    const catalog = await loadCatalog();
    const select = $("dataset");
    for (const entry of catalog) select.add(new Option(entry.title, entry.id));
    const wanted = new URL(window.location.href).searchParams.get("dataset");
    const entry = catalog.find((item) => item.id === wanted) || catalog[0];
    if (!entry) throw new Error("the catalog is empty");
    select.value = entry.id;
    select.addEventListener("change", () => {
      const next = catalog.find((item) => item.id === select.value);
      showDataset(next).catch(fail);
    });
    if (!entry.wmtsUrl) throw new Error(`dataset ${entry.id} has no WMTS capabilities URL`);
    await showDataset(entry);
    map.getView().on("change:resolution", updateStatus);
    state.ready = true;
  } catch (error) {
    fail(error);
  }
}

function fail(error) {
  state.errors.push(String(error));
  $("status").textContent = `Could not load the capabilities: ${error.message || error}`;
  $("status").classList.add("error");
}

start();
