// The Leaflet page served at `/`: dataset picker from /catalog, SR (left) versus
// bicubic (right) swipe, a mode selector when the model offers several modes, and a
// status line. State useful to tests and to people debugging is on `window.hndsr`.
import "leaflet/dist/leaflet.css";
import "./style.css";
import L from "leaflet";
import { loadCatalog, loadModes, loadTileJSON, withParams } from "./catalog.js";
import { srTileLayer } from "./srlayer.js";
import { swipe } from "./swipe.js";
import { formatViewHash, parseViewHash } from "./viewhash.js";

const TILE_SIZE = 256;

const state = {
  catalog: [],
  entry: null,
  mode: "auto",
  loading: { sr: false, bicubic: false }, // a layer is fetching visible tiles
  errors: [],
};
window.hndsr = state;

const $ = (id) => document.getElementById(id);

const map = L.map("map", {
  zoomControl: true,
  attributionControl: true,
  worldCopyJump: false,
  minZoom: 0,
  maxZoom: 18,
});
map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
map.createPane("sr-pane").style.zIndex = 250;
map.createPane("bicubic-pane").style.zIndex = 240;
const divider = swipe(map.getPane("sr-pane"), map.getPane("bicubic-pane"), {
  leftLabel: "SR (auto)",
  rightLabel: "bicubic",
}).addTo(map);
state.swipe = divider;
state.map = map;

let srLayer = null;
let bicubicLayer = null;

// Scale at a zoom when no SR tile has said it yet (X-SR-Scale is exact): the native
// zoom has a scale of about 1 (0.71..1.41), each zoom doubles it.
function estimatedScale(entry, zoom) {
  return Number.isFinite(entry.nativeZoom) ? 2 ** (zoom - entry.nativeZoom) : null;
}

function srStartZoom(entry) {
  if (Number.isFinite(entry.srMinZoom)) return entry.srMinZoom;
  return Number.isFinite(entry.nativeZoom) ? entry.nativeZoom + 1 : null;
}

// X-SR-Scale and X-SR-Mode of the SR tile under the map centre, once it has loaded.
function centreTile() {
  const zoom = map.getZoom();
  const { x, y } = map.project(map.getCenter(), zoom).divideBy(TILE_SIZE).floor();
  const selector = `img.sr-tile[data-layer="sr"][data-z="${zoom}"][data-x="${x}"][data-y="${y}"]`;
  const tile = document.querySelector(selector);
  return tile && tile.dataset.srScale ? tile.dataset : null;
}

function updateStatus() {
  const entry = state.entry;
  if (!entry) return;
  const zoom = map.getZoom();
  const parts = [`zoom ${zoom}`];
  if (Number.isFinite(entry.nativeZoom)) parts.push(`native ${entry.nativeZoom}`);
  const centre = centreTile();
  const estimate = estimatedScale(entry, zoom);
  if (centre) parts.push(`scale ×${centre.srScale} (${centre.srMode})`);
  else if (estimate !== null) parts.push(`scale ≈×${estimate.toFixed(2)}`);
  const start = srStartZoom(entry);
  if (start !== null) parts.push(`SR from zoom ${start}`);
  if (Number.isFinite(entry.srMaxZoom)) parts.push(`max ${entry.srMaxZoom}`);
  const degraded = document.querySelectorAll(".sr-tile.degraded").length;
  if (degraded) parts.push(`${degraded} degraded tile${degraded > 1 ? "s" : ""} (retrying)`);
  $("status").textContent = parts.join(" · ");
}

function tileTemplate(entry, sr) {
  return withParams(entry.tilejson.tiles[0], { ...entry.render, sr, tilesize: TILE_SIZE });
}

function showDataset(entry) {
  state.entry = entry;
  if (srLayer) map.removeLayer(srLayer);
  if (bicubicLayer) map.removeLayer(bicubicLayer);
  const [w, s, e, n] = entry.bounds;
  const bounds = L.latLngBounds([s, w], [n, e]);
  const maxZoom = Number.isFinite(entry.srMaxZoom) ? entry.srMaxZoom : 18;
  const minZoom = Number.isFinite(entry.minZoom) ? entry.minZoom : 0;
  const common = {
    bounds,
    footprint: entry.footprint,
    minZoom,
    maxZoom,
    tileSize: TILE_SIZE,
    attribution: entry.attribution || "",
    keepBuffer: 1,
    updateWhenZooming: false,
  };
  srLayer = srTileLayer(tileTemplate(entry, state.mode), {
    ...common,
    pane: "sr-pane",
    label: "sr",
    onTileInfo: updateStatus,
  }).addTo(map);
  bicubicLayer = srTileLayer(tileTemplate(entry, "bicubic"), {
    ...common,
    attribution: "",
    pane: "bicubic-pane",
    label: "bicubic",
  }).addTo(map);
  state.layers = { sr: srLayer, bicubic: bicubicLayer };
  for (const [label, layer] of Object.entries(state.layers)) {
    layer.on("loading", () => {
      state.loading[label] = true;
    });
    layer.on("load", () => {
      state.loading[label] = false;
      updateStatus();
    });
  }
  map.setMinZoom(minZoom);
  map.setMaxZoom(maxZoom);
  map.setMaxBounds(bounds.pad(0.5));
  const linked = state.linkedView;
  state.linkedView = null; // a link's view applies to the first dataset shown only
  if (linked) applyView(linked);
  else map.fitBounds(bounds);
  const url = new URL(window.location.href);
  url.searchParams.set("dataset", entry.id);
  window.history.replaceState(null, "", url);
  writeViewHash();
  $("links").innerHTML = "";
  const tilejsonLink = document.createElement("a");
  tilejsonLink.href = entry.tilejsonUrl;
  tilejsonLink.textContent = "tilejson";
  const olLink = document.createElement("a");
  olLink.href = `ol.html?dataset=${encodeURIComponent(entry.id)}`;
  olLink.textContent = "OpenLayers (WMTS)";
  $("links").append(tilejsonLink, " · ", olLink);
  updateStatus();
}

// The view (zoom, centre, swipe) lives in the URL hash: see viewhash.js.
function applyView(view) {
  map.setView([view.lat, view.lon], view.zoom, { animate: false });
  if (view.swipe !== null) divider.setRatio(view.swipe);
}

function writeViewHash() {
  if (!state.entry) return;
  const hash = formatViewHash(map.getZoom(), map.getCenter(), divider.getRatio());
  state.viewHash = hash;
  if (window.location.hash !== hash) {
    const url = new URL(window.location.href);
    url.hash = hash;
    window.history.replaceState(null, "", url);
  }
}

function setMode(mode) {
  state.mode = mode;
  divider.setLabels(`SR (${mode})`, "bicubic");
  if (srLayer && state.entry) {
    srLayer.setTemplate(tileTemplate(state.entry, mode));
  }
}

async function selectDataset(id) {
  const entry = state.catalog.find((item) => item.id === id) || state.catalog[0];
  $("dataset").value = entry.id;
  try {
    if (!entry.tilejson) await loadTileJSON(entry, TILE_SIZE);
    showDataset(entry);
    const modes = await loadModes();
    const offered = modes.filter((m) => m === "fast" || m === "diffusion");
    const select = $("mode");
    select.innerHTML = "";
    for (const m of ["auto", ...offered]) {
      select.add(new Option(m === "auto" ? "auto (default)" : m, m));
    }
    select.value = offered.includes(state.mode) ? state.mode : "auto";
    $("mode-field").hidden = offered.length === 0;
    if (select.value !== state.mode) setMode(select.value);
  } catch (error) {
    fail(error);
  }
}

function fail(error) {
  state.errors.push(String(error));
  $("status").textContent = `Could not load the dataset: ${error.message || error}`;
  $("status").classList.add("error");
}

async function start() {
  $("status").textContent = "Loading the catalog…";
  try {
    state.catalog = await loadCatalog();
  } catch (error) {
    fail(error);
    return;
  }
  if (state.catalog.length === 0) {
    $("status").textContent = "The catalog is empty: run `hndsr-tiles sample-data` or add COGs.";
    return;
  }
  const select = $("dataset");
  for (const entry of state.catalog) select.add(new Option(entry.title, entry.id));
  select.addEventListener("change", () => selectDataset(select.value));
  $("mode").addEventListener("change", (event) => setMode(event.target.value));
  map.on("zoomend moveend", updateStatus);
  map.on("moveend zoomend swipe", writeViewHash);
  window.addEventListener("hashchange", () => {
    const view = parseViewHash(window.location.hash);
    if (view && window.location.hash !== state.viewHash) applyView(view);
  });
  state.linkedView = parseViewHash(window.location.hash);
  const wanted = new URL(window.location.href).searchParams.get("dataset");
  await selectDataset(wanted || state.catalog[0].id);
  state.ready = true;
}

start();
