// Map: sites, geofences, latest positions, tracks and RFID zones, drawn by
// Leaflet over country outlines served with the dashboard (no tile server
// needed; a tile URL can be set here and is kept in this browser).
import L from "leaflet";
import { feature } from "topojson-client";
import { api, pages, items } from "../api.js";
import { h, clear, label, unavailable, fmtTime, fill } from "../dom.js";

const HEALTH_COLOURS = { ok: "#16a34a", warning: "#d97706", critical: "#dc2626", unknown: "#64748b" };

function position(a) {
  const loc = a.location || {};
  if (loc.gps && (loc.gps.lat || loc.gps.lon)) return [loc.gps.lat, loc.gps.lon];
  if (loc.lat || loc.lon) return [+loc.lat, +loc.lon];
  return null;
}

// polygonOf reads a geofence's shape: GeoJSON, or a list of [lat, lon] or
// {lat, lon} points under polygon/points/vertices.
// text is tooltip content Leaflet shows as text: a string given to Leaflet
// is set as innerHTML, and asset ids and site names are not ours.
function text(s) {
  return h("span", s);
}

function polygonOf(g) {
  const pts = g.polygon || g.points || g.vertices || (g.geometry && g.geometry.type === "Polygon" && g.geometry.coordinates[0].map(([lon, lat]) => [lat, lon]));
  if (!Array.isArray(pts)) return null;
  return pts.map((p) => (Array.isArray(p) ? p : [p.lat, p.lon]));
}

export async function mapView(root, params) {
  const focus = params && params.get("asset");
  const mapEl = h("div.map", { role: "region", "aria-label": "Map of assets" });
  const side = h("aside.map-side");
  const tileIn = h("input", { id: "tile-url", name: "tile", value: localStorage.getItem("tc.tileURL") || "", placeholder: "https://tiles.example/{z}/{x}/{y}.png" });
  const settings = h("details.map-settings", h("summary", "Background tiles"),
    h("label", { for: "tile-url" }, "Tile URL (blank: none; kept in this browser)"), tileIn,
    h("button", { type: "button", onclick: () => { localStorage.setItem("tc.tileURL", tileIn.value.trim()); setTiles(); } }, "Apply"));
  const status = h("p.summary", { "aria-live": "polite" }, "Loading positions…");
  root.append(h("h1", "Map"), status, h("div.map-wrap", mapEl, side), settings);

  const map = L.map(mapEl, { worldCopyJump: true, preferCanvas: true, zoomSnap: 0.25 }).setView([20, 0], 2);
  let tiles = null;
  function setTiles() {
    if (tiles) { tiles.remove(); tiles = null; }
    const url = localStorage.getItem("tc.tileURL");
    if (url) tiles = L.tileLayer(url, { maxZoom: 19 }).addTo(map);
  }
  setTiles();
  // Geography with no tile server: country outlines (Natural Earth via
  // world-atlas, served with the dashboard), under everything else.
  map.createPane("basemap").style.zIndex = "150";
  const basemap = fetch("/countries-50m.json").then((r) => (r.ok ? r.json() : null)).then((topo) => {
    if (!topo || !mapEl.isConnected) return;
    L.geoJSON(feature(topo, topo.objects.countries), {
      pane: "basemap", renderer: L.canvas({ pane: "basemap" }), interactive: false,
      style: { color: "#94a3b8", weight: 0.8, fillColor: "#f1f5f9", fillOpacity: 1 },
    }).addTo(map);
    mapEl.dataset.geography = "countries";
  }).catch(() => { /* the dots and the graticule still draw */ });
  // A graticule so a blank map still reads as a map; its step follows the
  // view (10° for the world, down to 0.01° for a site).
  const grid = L.layerGroup().addTo(map);
  function drawGrid() {
    grid.clearLayers();
    const b = map.getBounds();
    const span = Math.max(b.getNorth() - b.getSouth(), 1e-6);
    const step = Math.min(10, Math.pow(10, Math.floor(Math.log10(span / 3))));
    const s = Math.max(-85, Math.floor(b.getSouth() / step) * step), n = Math.min(85, b.getNorth());
    const w = Math.floor(b.getWest() / step) * step, e = b.getEast();
    if ((n - s) / step > 200 || (e - w) / step > 400) return;
    for (let lat = s; lat <= n; lat += step) L.polyline([[lat, b.getWest()], [lat, e]], { color: "#cbd5e1", weight: 1, interactive: false }).addTo(grid);
    for (let lon = w; lon <= e; lon += step) L.polyline([[s, lon], [n, lon]], { color: "#cbd5e1", weight: 1, interactive: false }).addTo(grid);
  }
  map.on("moveend", drawGrid);
  drawGrid();

  let timer = 0;
  const done = () => { clearTimeout(timer); map.off(); map.stop(); map.remove(); };
  const gone = () => !mapEl.isConnected; // the user left while this loaded
  const assets = [];
  try {
    await pages("/assets", (got) => assets.push(...got), { limit: 1000 });
  } catch (e) {
    status.textContent = "";
    root.append(unavailable("Asset positions", e));
    return done;
  }
  if (gone()) return done;
  const bounds = [];
  const sites = new Map();
  const zones = new Map();
  const markers = L.layerGroup().addTo(map);
  let placed = 0;
  const perSite = new Map();
  const siteArea = new Map(); // site -> the points its positions and geofence cover
  const cover = (site, pts) => siteArea.set(site, [...(siteArea.get(site) || []), ...pts]);
  for (const a of assets) if (a.site) perSite.set(a.site, (perSite.get(a.site) || 0) + 1);
  for (const a of assets) {
    const loc = a.location || {};
    if (loc.zone || loc.read_point) {
      const key = `${a.site || "?"} · ${loc.zone || "?"}${loc.read_point ? " / " + loc.read_point : ""}`;
      zones.set(key, (zones.get(key) || 0) + 1);
    }
    const p = position(a);
    if (!p) continue;
    placed++;
    bounds.push(p);
    if (a.site) cover(a.site, [p]);
    if (a.site) {
      const s = sites.get(a.site) || { n: 0, lat: 0, lon: 0 };
      s.n++; s.lat += p[0]; s.lon += p[1];
      sites.set(a.site, s);
    }
    const health = (a.health && a.health.state) || "unknown";
    const m = L.circleMarker(p, {
      radius: a.id === focus ? 9 : a.kind === "gateway" ? 6 : 4,
      color: a.id === focus ? "#111827" : HEALTH_COLOURS[health] || HEALTH_COLOURS.unknown,
      weight: a.id === focus ? 3 : 1, fillOpacity: 0.8,
    }).bindTooltip(() => text(a.id)); // text, never HTML: ids and names come from gateways and configuration
    m.bindPopup(() => {
      const el = h("div", h("a", { href: "#/asset/" + encodeURIComponent(a.id) }, a.id), h("br"), `${label(a.kind)} · ${label(health)}`,
        a.location && a.location.gps ? h("div", `fix ${fmtTime(a.location.gps.fix_time)}`) : null);
      return el;
    });
    m.addTo(markers);
  }
  for (const [name, s] of sites) {
    const at = [s.lat / s.n, s.lon / s.n];
    L.circle(at, { radius: 150, color: "#1d4ed8", weight: 1, fillOpacity: 0.06, interactive: false }).addTo(map);
    L.marker(at, {
      icon: L.divIcon({ className: "site-label", html: "", iconSize: null }),
      keyboard: false,
    }).bindTooltip(() => text(`site ${name}: ${perSite.get(name) || s.n} assets`), { permanent: true, direction: "top", className: "site-tip", offset: [0, -8] }).addTo(map);
  }

  // Geofences: the configured sites' polygons (GET /sites, from the
  // detection config). Drawn as SVG paths with class "geofence" (markers use
  // the canvas) so each fence is an element of its own.
  let fences = 0;
  const fenceRenderer = L.svg();
  let siteList = [];
  try { siteList = items(await api("/sites?limit=1000")); } catch { /* an older service without /sites */ }
  if (gone()) return done;
  {
    for (const g of siteList) {
      const poly = polygonOf(g);
      if (!poly || poly.length < 3) continue;
      fences++;
      cover(g.id || g.name, poly);
      L.polygon(poly, { renderer: fenceRenderer, className: "geofence", color: "#7c3aed", weight: 2, fillOpacity: 0.05 }).bindTooltip(() => text(`site ${g.name || g.id} (geofence)`)).addTo(map);
      bounds.push(...poly);
    }
  }

  // The focused asset's track, from its location events.
  let trackPts = 0;
  if (focus) {
    try {
      const evs = [];
      await pages(`/assets/${encodeURIComponent(focus)}/events`, (p) => evs.push(...p), { limit: 500, max: 5000 });
      let lat = null, lon = null;
      const track = [];
      for (const e of evs.sort((a, b) => a.revision - b.revision)) {
        for (const c of e.changes || []) {
          if (c.field === "location.lat") lat = +c.new;
          if (c.field === "location.lon") lon = +c.new;
        }
        if (lat !== null && lon !== null && (e.changes || []).some((c) => c.field.startsWith("location.l"))) track.push([lat, lon]);
      }
      trackPts = track.length;
      if (track.length > 1) L.polyline(track, { color: "#111827", weight: 2, dashArray: "4 4" }).bindTooltip(() => text(`${focus} track`)).addTo(map);
    } catch { /* no events */ }
    if (gone()) return done;
  }

  // "Show on the map": zoom to the asset, or to what holds or reports it
  // (a GPU has no position of its own: its server's, or the gateway's that
  // reads them).
  const byId = new Map(assets.map((a) => [a.id, a]));
  let focusAt = null;
  const seen = new Set();
  for (const queue = focus ? [focus] : []; queue.length && !focusAt;) {
    const a = byId.get(queue.shift());
    if (!a || seen.has(a.id)) continue;
    seen.add(a.id);
    focusAt = position(a);
    queue.push(...[a.parent, a.gateway].filter(Boolean));
  }
  const focusSite = focus && byId.get(focus) && byId.get(focus).site;
  if (focusAt) {
    map.setView(focusAt, 17, { animate: false });
    L.circleMarker(focusAt, { radius: 12, color: "#111827", weight: 3, fill: false }).bindTooltip(`${focus}`, { permanent: true, direction: "right" }).addTo(map);
    mapEl.dataset.focus = "position";
  } else if (focusSite && siteArea.get(focusSite)) {
    // No position anywhere up its chain: its site's area.
    map.fitBounds(siteArea.get(focusSite), { padding: [40, 40], maxZoom: 17, animate: false });
    mapEl.dataset.focus = "site";
  } else if (bounds.length) map.fitBounds(bounds, { padding: [60, 60], maxZoom: 15, animate: false });
  status.textContent = `${placed} of ${assets.length} assets have a position; ${sites.size} sites; ${fences} geofences` +
    (focus ? `; track of ${focus}: ${trackPts} points` + (focusAt ? "" : mapEl.dataset.focus === "site" ? `; it has no position of its own: showing its site ${focusSite}` : "; it has no position yet") : "");
  fill(side, 
    h("h2", "Legend"),
    h("ul.legend", Object.entries(HEALTH_COLOURS).map(([k, c]) => h("li", h("span.dot", { style: `background:${c}` }), label(k)))),
    siteArea.size ? h("h2", "Sites") : null,
    siteArea.size ? h("ul.sites", [...siteArea.keys()].sort().map((name) => h("li",
      h("button.zoom-site", { type: "button", dataset: { site: name }, onclick: () => map.fitBounds(siteArea.get(name), { padding: [40, 40], maxZoom: 17 }) }, `Zoom to ${name}`)))) : null,
    h("h2", "RFID zones"),
    zones.size ? h("ul.zones", [...zones.entries()].sort().slice(0, 200).map(([k, n]) => h("li", `${k}: ${n}`))) : h("p.muted", "No RFID reads yet."),
    fences ? null : h("p.muted", "No geofences from the service yet."));
  await basemap;
  if (gone()) return done;
  root.dataset.ready = "true";
  mapEl.dataset.zoom = String(map.getZoom());
  timer = setTimeout(() => { if (!gone()) map.invalidateSize({ animate: false }); }, 50);
  return done;
}
