// Builds the dashboard into dist/ with esbuild: one JS bundle, one CSS
// bundle (uPlot's and Leaflet's styles included) and index.html. The output
// depends only on the sources and the locked packages, so a rebuild of the
// same tree gives the same bytes.
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";

rmSync("dist", { recursive: true, force: true });
mkdirSync("dist", { recursive: true });
await esbuild.build({
  entryPoints: { app: "src/main.js", style: "src/style.css" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["chrome110", "firefox110", "safari16"],
  outdir: "dist",
  legalComments: "linked",
  loader: { ".png": "dataurl", ".svg": "dataurl" },
  logLevel: "warning",
});
copyFileSync("src/index.html", "dist/index.html");
copyFileSync("src/favicon.svg", "dist/favicon.svg");
// Country outlines for the map (Natural Earth 1:50m, public domain, as
// TopoJSON from world-atlas), fetched by the map view when it opens.
copyFileSync("node_modules/world-atlas/countries-50m.json", "dist/countries-50m.json");
copyFileSync("node_modules/world-atlas/LICENSE", "dist/countries-50m.LICENSE.txt");
// dagre's MIT licence (app.js.LEGAL.txt points to it).
copyFileSync("node_modules/@dagrejs/dagre/dist/dagre.esm.js.LEGAL.txt", "dist/dagre.esm.js.LEGAL.txt");
console.log("web: built dist/");
