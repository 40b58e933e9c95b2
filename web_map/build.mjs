// Bundles the two pages with esbuild into dist/ (no CDN, no run-time internet):
// index.html + main.js/main.css (Leaflet), ol.html + ol.js/ol.css (OpenLayers).
// scripts/build-web-map.sh copies dist/ into tileserver/static/web_map/.
import { build } from "esbuild";
import { copyFile, mkdir, rm } from "node:fs/promises";

const outdir = "dist";
await rm(outdir, { recursive: true, force: true });
await mkdir(outdir, { recursive: true });
await build({
  entryPoints: { main: "src/main.js", ol: "src/ol.js" },
  bundle: true,
  minify: true,
  sourcemap: false,
  format: "iife",
  target: ["es2020"],
  outdir,
  loader: { ".png": "file", ".svg": "file" },
  assetNames: "assets/[name]-[hash]",
  legalComments: "linked",
  logLevel: "warning",
});
for (const page of ["index.html", "ol.html"]) await copyFile(`src/${page}`, `${outdir}/${page}`);
console.log(`web map built into web_map/${outdir}/`);
