// A small swipe control: the layer in `leftPane` shows left of a vertical divider, the
// one in `rightPane` right of it. Same idea as leaflet-side-by-side (clip the panes with
// `clip: rect()`), written here because that package's npm dependencies
// (browserify-shim, cssify: build tools listed as run-time dependencies) do not install
// from the registry any more; see docs/decisions/0601-web-map-build-and-swipe.md.
import L from "leaflet";

export const Swipe = L.Control.extend({
  options: { position: "topleft", ratio: 0.5, leftLabel: "SR", rightLabel: "bicubic" },

  initialize(leftPane, rightPane, options) {
    this._leftPane = leftPane;
    this._rightPane = rightPane;
    this._ratio = (options && options.ratio) ?? this.options.ratio;
    L.setOptions(this, options);
  },

  onAdd(map) {
    this._map = map;
    const container = map.getContainer();
    const root = L.DomUtil.create("div", "swipe", container);
    const line = L.DomUtil.create("div", "swipe-line", root);
    const handle = L.DomUtil.create("button", "swipe-handle", line);
    handle.type = "button";
    handle.setAttribute("aria-label", "Drag to compare SR and bicubic");
    handle.setAttribute("role", "slider");
    handle.setAttribute("aria-valuemin", "0");
    handle.setAttribute("aria-valuemax", "100");
    handle.textContent = "⟷";
    this._leftLabel = L.DomUtil.create("div", "swipe-label swipe-label-left", root);
    this._rightLabel = L.DomUtil.create("div", "swipe-label swipe-label-right", root);
    this.setLabels(this.options.leftLabel, this.options.rightLabel);
    this._root = root;
    this._line = line;
    this._handle = handle;
    L.DomEvent.disableClickPropagation(root);
    L.DomEvent.disableScrollPropagation(root);
    L.DomEvent.on(handle, "pointerdown", this._onDown, this);
    L.DomEvent.on(handle, "keydown", this._onKey, this);
    map.on("move zoom zoomend resize viewreset", this._update, this);
    this._update();
    // The control itself is positioned by the map container, not a corner.
    return L.DomUtil.create("div", "swipe-anchor");
  },

  onRemove(map) {
    map.off("move zoom zoomend resize viewreset", this._update, this);
    L.DomUtil.remove(this._root);
    this._leftPane.style.clip = "";
    this._rightPane.style.clip = "";
  },

  setLabels(left, right) {
    this._leftLabel.textContent = left;
    this._rightLabel.textContent = right;
  },

  getRatio() {
    return this._ratio;
  },

  setRatio(ratio) {
    this._ratio = Math.min(1, Math.max(0, ratio));
    this._update();
    this._map.fire("swipe", { ratio: this._ratio });
  },

  _onDown(event) {
    L.DomEvent.stop(event);
    this._map.dragging.disable();
    this._handle.setPointerCapture(event.pointerId);
    L.DomEvent.on(this._handle, "pointermove", this._onMove, this);
    L.DomEvent.on(this._handle, "pointerup pointercancel", this._onUp, this);
    this._root.classList.add("dragging");
  },

  _onMove(event) {
    L.DomEvent.stop(event);
    const rect = this._map.getContainer().getBoundingClientRect();
    this.setRatio((event.clientX - rect.left) / rect.width);
  },

  _onUp(event) {
    L.DomEvent.off(this._handle, "pointermove", this._onMove, this);
    L.DomEvent.off(this._handle, "pointerup pointercancel", this._onUp, this);
    if (this._handle.hasPointerCapture(event.pointerId)) {
      this._handle.releasePointerCapture(event.pointerId);
    }
    this._map.dragging.enable();
    this._root.classList.remove("dragging");
  },

  _onKey(event) {
    const step = event.shiftKey ? 0.1 : 0.02;
    if (event.key === "ArrowLeft") this.setRatio(this._ratio - step);
    else if (event.key === "ArrowRight") this.setRatio(this._ratio + step);
    else return;
    L.DomEvent.stop(event);
  },

  _update() {
    if (!this._map) return;
    const map = this._map;
    const size = map.getSize();
    const x = Math.round(size.x * this._ratio);
    this._line.style.left = `${x}px`;
    this._handle.setAttribute("aria-valuenow", String(Math.round(this._ratio * 100)));
    // Pane coordinates move with the map; clip in layer-point space.
    const nw = map.containerPointToLayerPoint([0, 0]);
    const se = map.containerPointToLayerPoint(size);
    const divider = map.containerPointToLayerPoint([x, 0]).x;
    this._leftPane.style.clip = `rect(${nw.y}px, ${divider}px, ${se.y}px, ${nw.x}px)`;
    this._rightPane.style.clip = `rect(${nw.y}px, ${se.x}px, ${se.y}px, ${divider}px)`;
  },
});

export function swipe(leftPane, rightPane, options) {
  return new Swipe(leftPane, rightPane, options);
}
