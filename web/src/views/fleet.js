// Fleet: counts, and a searchable, filterable, sortable table of every asset.
// The whole fleet is loaded page by page from /assets into compact rows;
// filtering and sorting run on those rows in memory and the table draws
// only the rows in view (virtual scrolling), so 10,000 assets stay fast.
import { api, pages, subscribe } from "../api.js";
import { h, clear, ago, label, pill, unavailable, errorBox, fill } from "../dom.js";

const ROW_H = 40; // px; matches .vt tr height in style.css
const OVERSCAN = 10;

// The fleet survives navigation, so coming back is instant.
const fleet = {
  rows: new Map(), // id -> row
  loaded: false,
  loading: null,
  alerts: null, // Map asset id -> open alert count, or null when there is no alerts API
  alertsError: null,
  filter: { q: "", site: "", kind: "", status: "", health: "" },
  sort: { key: "id", dir: 1 },
};

const perf = (window.__tcPerf = window.__tcPerf || {});

export function toRow(a) {
  const id = a.id;
  const loc = a.location || {};
  const fw = a.firmware || {};
  const idn = a.identity || {};
  const gps = loc.gps && (loc.gps.lat || loc.gps.lon) ? loc.gps : null;
  const place = [loc.zone, loc.read_point].filter(Boolean).join(" / ") ||
    (gps ? `${gps.lat.toFixed(4)}, ${gps.lon.toFixed(4)}` : loc.lat || loc.lon ? `${(+loc.lat).toFixed(4)}, ${(+loc.lon).toFixed(4)}` : "");
  const firmware = [fw.vbios && "VBIOS " + fw.vbios, fw.driver && "drv " + fw.driver, fw.bios && "BIOS " + fw.bios, fw.bmc && "BMC " + fw.bmc]
    .filter(Boolean).join(" · ");
  const health = (a.health && a.health.state) || "unknown";
  const status = (a.custody && a.custody.status) || "";
  const name = idn.name || idn.hostname || "";
  return {
    id, kind: a.kind || "", site: a.site || "", parent: a.parent || "", name, serial: idn.serial || "", status, health, place, firmware,
    lastSeen: a.last_seen || "", revision: a.revision || 0,
    hay: [id, name, idn.hostname, idn.serial, idn.uuid, idn.rfid_tag, idn.pci_bus_id, a.site, loc.zone, loc.read_point, a.parent, a.gateway, fw.vbios, fw.driver]
      .filter(Boolean).join(" ").toLowerCase(),
  };
}

async function loadFleet(onProgress) {
  if (fleet.loading) return fleet.loading;
  const t0 = performance.now();
  const fresh = new Map();
  fleet.loading = (async () => {
    let first = true;
    await pages("/assets", (got) => {
      for (const a of got) {
        const r = toRow(a);
        fresh.set(r.id, r);
        fleet.rows.set(r.id, r);
      }
      if (first) { perf.firstPageMs = performance.now() - t0; first = false; }
      onProgress();
    }, { limit: 1000 });
    // Drop assets that are gone.
    for (const id of fleet.rows.keys()) if (!fresh.has(id)) fleet.rows.delete(id);
    fleet.loaded = true;
    perf.allLoadedMs = performance.now() - t0;
    perf.assets = fleet.rows.size;
  })();
  try { await fleet.loading; } finally { fleet.loading = null; }
}

async function loadAlerts() {
  try {
    const counts = new Map();
    await pages("/alerts?state=open", (got) => {
      for (const al of got) {
        const id = al.asset || al.asset_id;
        if (id) counts.set(id, (counts.get(id) || 0) + 1);
      }
    }, { limit: 1000, max: 20000 });
    fleet.alerts = counts;
    fleet.alertsError = null;
  } catch (e) {
    fleet.alerts = null;
    fleet.alertsError = e;
  }
}

const columns = [
  ["id", "Asset"], ["kind", "Kind"], ["site", "Site"], ["status", "Status"], ["health", "Health"],
  ["place", "Location"], ["firmware", "Firmware"], ["alerts", "Open alerts"], ["lastSeen", "Last seen"],
];

export async function fleetView(root) {
  const countsBox = h("section.counts", { "aria-label": "Fleet counts" });
  const search = h("input", { type: "search", name: "q", placeholder: "id, name, serial, UUID, zone…", value: fleet.filter.q, "aria-label": "Search assets" });
  const selects = {};
  const filterBar = h("div.filters", { role: "search" },
    h("div.field.grow", h("label", { for: "fleet-q" }, "Search"), Object.assign(search, { id: "fleet-q" })),
    ["site", "kind", "status", "health"].map((k) => {
      selects[k] = h("select", { id: "fleet-" + k, name: k });
      return h("div.field", h("label", { for: "fleet-" + k }, label(k)), selects[k]);
    }),
    h("button", { type: "button", onclick: () => { fleet.filter = { q: "", site: "", kind: "", status: "", health: "" }; search.value = ""; syncSelects(); apply(); } }, "Clear"));
  const summary = h("p.summary", { "aria-live": "polite" }, "Loading the fleet…");
  const headRow = h("tr");
  const tbody = h("tbody");
  const table = h("table.vt", { "aria-label": "Assets", "aria-rowcount": "0" }, h("thead", headRow), tbody);
  const scroller = h("div.vscroll", { tabindex: "0", "aria-label": "Asset table, scrollable" }, table);
  const notes = h("div");
  root.append(h("h1", "Fleet"), countsBox, filterBar, summary, notes, scroller);

  let shown = [];
  let last = { start: -1, end: -1 };

  function drawHead() {
    clear(headRow);
    for (const [key, text] of columns) {
      const active = fleet.sort.key === key;
      headRow.append(h(`th.col-${key}`, { scope: "col", "aria-sort": active ? (fleet.sort.dir > 0 ? "ascending" : "descending") : "none" },
        h("button.sort", {
          type: "button",
          onclick: () => {
            fleet.sort = { key, dir: active ? -fleet.sort.dir : 1 };
            drawHead();
            apply();
          },
        }, text, active ? (fleet.sort.dir > 0 ? " ▲" : " ▼") : "")));
    }
  }

  function distinct(key) {
    const m = new Map();
    for (const r of fleet.rows.values()) m.set(r[key], (m.get(r[key]) || 0) + 1);
    return [...m.entries()].sort((a, b) => String(a[0]).localeCompare(String(b[0])));
  }

  function syncSelects() {
    for (const [k, sel] of Object.entries(selects)) {
      const opts = distinct(k);
      const cur = fleet.filter[k];
      clear(sel);
      sel.append(h("option", { value: "" }, "all"));
      for (const [v, n] of opts) sel.append(h("option", { value: v, selected: v === cur ? true : null }, `${label(v) || "(none)"} (${n})`));
      sel.value = cur;
    }
  }

  function drawCounts() {
    clear(countsBox);
    const total = fleet.rows.size;
    countsBox.append(h("div.count.total", h("span.n", String(total)), h("span", "assets")));
    for (const key of ["status", "health", "site", "kind"]) {
      const group = h("div.count-group", h("h2", label(key)));
      const list = h("ul");
      for (const [v, n] of distinct(key).sort((a, b) => b[1] - a[1]).slice(0, 8)) {
        list.append(h("li", h("button.chip", {
          type: "button",
          "aria-pressed": String(fleet.filter[key] === v),
          onclick: () => { fleet.filter[key] = fleet.filter[key] === v ? "" : v; syncSelects(); apply(); drawCounts(); },
        }, key === "health" || key === "status" ? pill(v, key) : label(v) || "(none)", h("span.n", String(n)))));
      }
      group.append(list);
      countsBox.append(group);
    }
  }

  function cmp(key, dir) {
    if (key === "alerts") {
      const al = fleet.alerts || new Map();
      return (a, b) => dir * ((al.get(a.id) || 0) - (al.get(b.id) || 0)) || (a.id < b.id ? -1 : 1);
    }
    return (a, b) => {
      const x = a[key], y = b[key];
      return dir * (x < y ? -1 : x > y ? 1 : 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    };
  }

  // apply filters and sorts the rows and redraws; it records how long that
  // took in window.__tcPerf.lastFilterMs (the fleet benchmark reads it).
  function apply() {
    const t0 = performance.now();
    const f = fleet.filter;
    const q = f.q.trim().toLowerCase();
    const terms = q ? q.split(/\s+/) : [];
    shown = [];
    for (const r of fleet.rows.values()) {
      if (f.site && r.site !== f.site) continue;
      if (f.kind && r.kind !== f.kind) continue;
      if (f.status && r.status !== f.status) continue;
      if (f.health && r.health !== f.health) continue;
      if (terms.length && !terms.every((t) => r.hay.includes(t))) continue;
      shown.push(r);
    }
    shown.sort(cmp(fleet.sort.key, fleet.sort.dir));
    table.setAttribute("aria-rowcount", String(shown.length + 1));
    summary.textContent = `Showing ${shown.length.toLocaleString()} of ${fleet.rows.size.toLocaleString()} assets` +
      (fleet.loaded ? "" : " (still loading…)");
    last = { start: -1, end: -1 };
    scroller.scrollTop = 0;
    drawRows();
    perf.lastFilterMs = performance.now() - t0;
    perf.lastFilterCount = shown.length;
  }

  function cell(key, r) {
    switch (key) {
      case "id": return h("td.col-id", h("a", { href: "#/asset/" + encodeURIComponent(r.id) }, r.id), r.name ? h("div.sub", r.name) : null);
      case "status": return h("td.col-status", pill(r.status, "status"));
      case "health": return h("td.col-health", r.rolled ? { title: "rolled up from its parts" } : null, pill(r.health, "health"));
      case "alerts": {
        if (!fleet.alerts) return h("td.col-alerts.muted", { title: "no alerts service yet" }, "—");
        const n = fleet.alerts.get(r.id) || 0;
        return h("td.col-alerts", n ? h("span.pill.alert-count", String(n)) : "0");
      }
      case "lastSeen": return h("td.col-lastSeen", { title: r.lastSeen }, ago(r.lastSeen));
      case "kind": return h("td.col-kind", label(r.kind));
      case "place": {
        // A GPU has no reads of its own: show where its server is.
        const host = !r.place && r.parent ? fleet.rows.get(r.parent) : null;
        if (host && host.place) return h("td.col-place.muted", { title: `where ${host.id} is` }, host.place);
        return h("td.col-place", { title: r.place }, r.place || "—");
      }
      default: return h(`td.col-${key}`, { title: r[key] }, r[key] || "—");
    }
  }

  function drawRows() {
    const top = scroller.scrollTop;
    const height = scroller.clientHeight || 600;
    const start = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const end = Math.min(shown.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    if (start === last.start && end === last.end) return;
    last = { start, end };
    const frag = document.createDocumentFragment();
    frag.append(h("tr.spacer", { "aria-hidden": "true", style: `height:${start * ROW_H}px` }));
    for (let i = start; i < end; i++) {
      const r = shown[i];
      frag.append(h("tr", { "aria-rowindex": String(i + 2), dataset: { id: r.id } }, columns.map(([k]) => cell(k, r))));
    }
    frag.append(h("tr.spacer", { "aria-hidden": "true", style: `height:${(shown.length - end) * ROW_H}px` }));
    fill(tbody, frag);
  }

  let raf = 0;
  scroller.addEventListener("scroll", () => {
    if (!raf) raf = requestAnimationFrame(() => { raf = 0; drawRows(); });
  });
  search.addEventListener("input", () => { fleet.filter.q = search.value; apply(); });
  for (const [k, sel] of Object.entries(selects)) {
    sel.addEventListener("change", () => { fleet.filter[k] = sel.value; apply(); drawCounts(); });
  }

  // A server reports no health of its own: show its parts' worst state.
  function rollupHealth() {
    const worst = new Map(); // parent -> rank
    const rank = { unknown: 0, ok: 1, warning: 2, critical: 3 };
    for (const r of fleet.rows.values()) {
      if (r.ownHealth === undefined) r.ownHealth = r.health; // a row from toRow: its own state
      if (r.parent) worst.set(r.parent, Math.max(worst.get(r.parent) || 0, rank[r.ownHealth] || 0));
    }
    const names = ["unknown", "ok", "warning", "critical"];
    for (const r of fleet.rows.values()) {
      r.rolled = r.ownHealth === "unknown" && !!worst.get(r.id);
      r.health = r.rolled ? names[worst.get(r.id)] : r.ownHealth;
    }
  }

  function redrawAll() {
    rollupHealth();
    drawCounts();
    syncSelects();
    apply();
    clear(notes);
    if (fleet.alertsError) notes.append(unavailable("Open alerts per asset", fleet.alertsError));
  }

  drawHead();
  let firstShown = false;
  const t0 = performance.now();
  const progress = () => {
    redrawAll();
    if (!firstShown && shown.length) {
      firstShown = true;
      perf.firstRowsMs = performance.now() - t0;
      perf.firstRowsAt = performance.now(); // since navigation start
    }
  };
  if (fleet.rows.size) redrawAll();

  // Live updates: a change to a twin refreshes its row, batched.
  const pending = new Set();
  let timer = 0;
  const flush = async () => {
    timer = 0;
    const ids = [...pending].slice(0, 50);
    for (const id of ids) pending.delete(id);
    await Promise.all(ids.map(async (id) => {
      try { fleet.rows.set(id, toRow(await api("/assets/" + encodeURIComponent(id)))); } catch { /* removed or not an asset */ }
    }));
    const keepTop = scroller.scrollTop;
    apply();
    scroller.scrollTop = keepTop;
    drawRows();
    if (pending.size && !timer) timer = setTimeout(flush, 1000);
  };
  const unsub = subscribe((name, data) => {
    if (!data || typeof data !== "object") return;
    if (data.identity && data.id && data.kind) { // a whole twin
      fleet.rows.set(data.id, toRow(data));
      if (!timer) timer = setTimeout(flush, 1000);
      return;
    }
    const id = data.asset || (data.event && data.event.asset);
    if (id && (name === "twin" || name === "event" || name === "change" || name === "message" || name === "asset")) {
      pending.add(id);
      if (!timer) timer = setTimeout(flush, 1000);
    }
  });

  try {
    await Promise.all([loadFleet(progress), loadAlerts()]);
    redrawAll();
    if (!firstShown) perf.firstRowsMs = performance.now() - t0;
    perf.interactiveMs = performance.now() - t0;
    perf.interactiveAt = performance.now(); // since navigation start
    root.dataset.ready = "true";
  } catch (e) {
    if (e.missing) notes.append(unavailable("The asset list", e));
    else notes.append(errorBox(e));
    summary.textContent = "";
  }
  return () => { unsub(); clearTimeout(timer); };
}

