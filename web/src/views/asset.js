// Asset: one twin — identity, firmware history, custody, location, health
// charts, the event timeline with revisions, its alerts and ledger anchors.
import { api, pages, subscribe, qs, items } from "../api.js";
import { h, clear, fmtTime, ago, label, pill, dl, unavailable, errorBox, fill } from "../dom.js";
import { parseSeries, lineChart } from "../chart.js";
import { anchorsPanel } from "./ledgerpanel.js";
import { alertList } from "./alerts.js";
import { runtimeCard } from "./runtime.js";

const RANGES = [["15m", 15 * 60], ["1h", 3600], ["6h", 6 * 3600], ["24h", 86400], ["7d", 7 * 86400]];
const METRICS = [
  ["temp_c", "Temperature", "°C", "#dc2626"],
  ["power_w", "Power", "W", "#d97706"],
  ["util_pct", "Utilisation", "%", "#2563eb"],
  ["ecc_dbe", "ECC double-bit errors", "count", "#7c3aed", "max"],
  ["xid_count", "XID events", "count", "#0f766e", "max"],
];
let range = "1h";

function goDuration(sec) {
  return sec >= 3600 && sec % 3600 === 0 ? `${sec / 3600}h` : sec >= 60 && sec % 60 === 0 ? `${sec / 60}m` : `${sec}s`;
}

export async function assetView(root, id) {
  const header = h("div.asset-head");
  const grid = h("div.grid");
  const charts = h("section.card.wide", { "aria-labelledby": "h-health" });
  const timeline = h("section.card.wide", { "aria-labelledby": "h-events" });
  const alertsBox = h("section.card", { "aria-labelledby": "h-alerts" });
  const ledgerBox = h("section.card", { "aria-labelledby": "h-ledger" });
  const partsBox = h("section.card.parts", { "aria-labelledby": "h-parts", hidden: true });
  const runtimeBox = h("section.card.runtime", { "aria-labelledby": "h-runtime", hidden: true });
  root.append(h("p.crumbs", h("a", { href: "#/fleet" }, "← Fleet")), header, grid, runtimeBox, partsBox, charts, timeline, h("div.grid", alertsBox, ledgerBox));

  let asset;
  try {
    asset = await api("/assets/" + encodeURIComponent(id));
  } catch (e) {
    root.append(e.status === 404 && e.code !== "route" ? errorBox(`asset ${id} not found`) : e.missing ? unavailable("Asset details", e) : errorBox(e));
    return;
  }
  let events = [];
  const plots = [];
  let parts = []; // the assets it holds (a server's GPUs)
  // A server reports no health of its own: its parts' worst state.
  const rolled = (a) => (!a.health || !a.health.state || a.health.state === "unknown") && parts.length > 0;
  const healthOf = (a) => (rolled(a) ? rollup(parts.map((p) => (p.health || {}).state)) : (a.health || {}).state);

  function drawHead(a) {
    const idn = a.identity || {};
    fill(header, 
      h("h1", a.id, " ", h("span.kind", label(a.kind))),
      h("p.head-pills", pill((a.custody || {}).status, "status"), " ", pill(healthOf(a), "health"),
        rolled(a) ? h("span.muted", ` (its ${parts.length} parts)`) : null,
        ` revision ${a.revision} · updated ${fmtTime(a.updated)} · last seen `, h("span", { title: a.last_seen }, ago(a.last_seen))),
      idn.name ? h("p.muted", idn.name) : null,
    );
  }

  function drawCards(a) {
    const idn = a.identity || {};
    const fw = a.firmware || {};
    const loc = a.location || {};
    const c = a.custody || {};
    const hl = a.health || {};
    const gps = loc.gps && (loc.gps.lat || loc.gps.lon) ? loc.gps : null;
    const link = (x) => x ? h("a", { href: "#/asset/" + encodeURIComponent(x) }, x) : null;
    const fwEvents = events.filter((e) => e.type === "firmware_changed" || (e.changes || []).some((ch) => ch.field.startsWith("firmware.")));
    fill(grid, 
      h("section.card", { "aria-labelledby": "h-id" }, h("h2#h-id", "Identity fingerprint"), dl([
        ["Serial", idn.serial], ["UUID", idn.uuid], ["PCI bus", idn.pci_bus_id], ["Board part", idn.board_part],
        ["RFID tag", idn.rfid_tag], ["Hostname", idn.hostname], ["Rack", idn.rack], ["Site", a.site],
        ["In", link(a.parent)], ["Reported by", link(a.gateway)],
      ])),
      h("section.card", { "aria-labelledby": "h-fw" }, h("h2#h-fw", "Firmware"), dl([
        ["VBIOS", fw.vbios], ["Driver", fw.driver], ["InfoROM", fw.inforom], ["BIOS", fw.bios], ["BMC", fw.bmc],
      ]), h("h3", "History"), fwEvents.length ? h("ol.history", fwEvents.map((e) => h("li",
        h("span.rev", `rev ${e.revision}`), " ", fmtTime(e.time), ": ",
        (e.changes || []).filter((ch) => ch.field.startsWith("firmware.")).map((ch) => `${ch.field.slice(9)} ${ch.old ? ch.old + " → " : ""}${ch.new}`).join(", ") || label(e.type),
        e.note ? h("div.sub", e.note) : null))) : h("p.muted", "No firmware changes recorded.")),
      h("section.card", { "aria-labelledby": "h-custody" }, h("h2#h-custody", "Custody"), dl([
        ["Status", pill(c.status, "status")], ["Owner", c.owner], ["Holder", c.holder],
      ])),
      h("section.card", { "aria-labelledby": "h-loc" }, h("h2#h-loc", "Location"), dl([
        ["RFID zone", loc.zone], ["Read point", loc.read_point],
        ["Position", loc.lat || loc.lon ? `${(+loc.lat).toFixed(5)}, ${(+loc.lon).toFixed(5)}` : null],
        ["Last GPS fix", gps ? `${gps.lat.toFixed(5)}, ${gps.lon.toFixed(5)} (quality ${gps.quality}, ${gps.sats} sats) at ${fmtTime(gps.fix_time)}` : null],
        ["Last seen", `${fmtTime(a.last_seen)} (${ago(a.last_seen)})`],
      ]), h("p", h("a", { href: "#/map?asset=" + encodeURIComponent(a.id) }, "Show on the map"))),
      h("section.card", { "aria-labelledby": "h-hl" }, h("h2#h-hl", "Health"), dl([
        ["State", rolled(a) ? [pill(healthOf(a), "health"), ` rolled up from its ${parts.length} parts`] : pill(hl.state, "health")], ["ECC double-bit", hl.ecc_dbe], ["XID events", hl.xid_count],
        ["Last XID", hl.last_xid || null], ["Retired pages", hl.retired_pages], ["Remapped rows", hl.remapped_rows],
        ["Row remap failure", hl.row_remap_failure ? "yes" : null], ["Samples", hl.samples],
        ["Latest", hl.latest ? `${hl.latest.temp_c} °C · ${hl.latest.power_w} W · ${hl.latest.util_pct}% util` +
          (hl.latest.throttle && hl.latest.throttle.length ? ` · throttled: ${hl.latest.throttle.join(", ")}` : "") : null],
      ])),
    );
  }

  async function drawCharts() {
    for (const p of plots.splice(0)) p.destroy();
    const picker = h("div.range", { role: "group", "aria-label": "Time range" }, RANGES.map(([r]) => h("button", {
      type: "button", "aria-pressed": String(r === range),
      onclick: () => { range = r; drawCharts(); },
    }, r)));
    const box = h("div.charts");
    fill(charts, h("div.card-head", h("h2#h-health", "Health over time"), picker), box);
    const sec = RANGES.find(([r]) => r === range)[1];
    const to = new Date();
    const from = new Date(to.getTime() - sec * 1000);
    const step = goDuration(Math.max(1, Math.round(sec / 240)));
    let anyPoints = 0;
    let missing = null;
    await Promise.all(METRICS.map(async ([metric, title, unit, color, agg]) => {
      const slot = h("div.chart", { dataset: { metric } });
      box.append(slot);
      try {
        const data = await api(`/assets/${encodeURIComponent(id)}/series` + qs({ metric, from: from.toISOString(), to: to.toISOString(), step, agg }));
        const series = parseSeries(data);
        slot.dataset.points = String(series[0].length);
        anyPoints += series[0].length;
        if (!series[0].length) slot.append(h("p.muted", `${title}: no samples in the last ${range}.`));
        else plots.push(lineChart(slot, title, unit, series, color, [from.getTime() / 1000, to.getTime() / 1000]));
      } catch (e) {
        slot.dataset.points = "0";
        if (e.missing) missing = e;
        else slot.append(h("p.muted", `${title}: ${e.message}`));
      }
    }));
    if (missing) {
      fill(box, unavailable("Health charts (telemetry series)", missing));
    }
    charts.dataset.points = String(anyPoints);
  }

  function drawTimeline(more) {
    fill(timeline, h("h2#h-events", "Event timeline"));
    if (!events.length) { timeline.append(h("p.muted", "No events.")); return; }
    const list = h("ol.timeline", { reversed: true });
    for (const e of [...events].sort((a, b) => b.revision - a.revision)) {
      const src = e.source || {};
      list.append(h("li", { dataset: { revision: e.revision } },
        h("div.ev-head", h("span.rev", `rev ${e.revision}`), " ", h("strong", label(e.type)), " ",
          h("time", { datetime: e.time }, fmtTime(e.time)),
          src.gateway ? h("span.muted", ` · from ${src.gateway}${src.seq ? ` #${src.seq}` : ""}`) : src.actor ? h("span.muted", ` · by ${src.actor}`) : null,
          h("span.muted", ` · event ${e.id}`)),
        e.changes && e.changes.length ? h("ul.changes", e.changes.map((ch) => h("li", h("code", ch.field), " ", ch.old ? [h("del", ch.old), " → "] : "", h("ins", ch.new || "(empty)")))) : null,
        e.note ? h("p.sub", e.note) : null));
    }
    timeline.append(list);
    if (more) timeline.append(h("p.muted", "Showing the newest events only."));
  }

  async function loadEvents() {
    const got = [];
    try {
      await pages(`/assets/${encodeURIComponent(id)}/events`, (page) => got.push(...page), { limit: 500, max: 2000 });
      events = got;
      drawTimeline(got.length >= 2000);
    } catch (e) {
      fill(timeline, h("h2#h-events", "Event timeline"), e.missing ? unavailable("The event timeline", e) : errorBox(e));
    }
  }

  async function loadAlerts() {
    fill(alertsBox, h("h2#h-alerts", "Alerts"));
    try {
      const data = await api("/alerts" + qs({ asset: id, limit: 200 }));
      const list = items(data).filter((a) => !a.asset || a.asset === id);
      alertsBox.append(list.length ? alertList(list, loadAlerts) : h("p.muted", "No alerts for this asset."));
    } catch (e) {
      alertsBox.append(e.missing ? unavailable("Alerts", e) : errorBox(e));
    }
  }

  // The assets it holds (a server's GPUs), with their health rolled up.
  async function loadParts() {
    if (asset.kind === "gpu") return;
    const got = [];
    try {
      await pages("/assets" + qs({ parent: id }), (page) => got.push(...page.filter((p) => p.parent === id)), { limit: 500, max: 2000 });
    } catch { return; /* an older service without the parent filter: no list */ }
    parts = got;
    drawParts();
    drawHead(asset);
  }
  function drawParts() {
    if (!parts.length) { partsBox.hidden = true; return; }
    const counts = {};
    for (const p of parts) { const st = (p.health || {}).state || "unknown"; counts[st] = (counts[st] || 0) + 1; }
    const worst = rollup(parts.map((p) => (p.health || {}).state));
    partsBox.hidden = false;
    fill(partsBox, h("div.card-head", h("h2#h-parts", `${parts.length} ${parts.every((p) => p.kind === "gpu") ? "GPUs" : "assets"} in ${id}`),
      h("span.rollup", { dataset: { health: worst } }, "health ", pill(worst, "health"), " · ",
        Object.entries(counts).sort().map(([st, n]) => `${n} ${label(st)}`).join(" · "))),
    h("div.hscroll", h("table.plain.parts", h("thead", h("tr", ["Asset", "Kind", "Health", "UUID", "PCI bus", "Temperature", "Power", "Util.", "Last seen"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", parts.map((p) => {
        const idn = p.identity || {};
        const lt = (p.health || {}).latest;
        return h("tr", { dataset: { id: p.id } }, h("td", h("a", { href: "#/asset/" + encodeURIComponent(p.id) }, p.id)), h("td", label(p.kind)),
          h("td", pill((p.health || {}).state, "health")), h("td", h("code", idn.uuid || "—")), h("td", idn.pci_bus_id || "—"),
          h("td.num", lt ? `${lt.temp_c} °C` : "—"), h("td.num", lt ? `${lt.power_w} W` : "—"), h("td.num", lt ? `${lt.util_pct}%` : "—"),
          h("td", { title: p.last_seen }, ago(p.last_seen)));
      })))));
  }

  drawHead(asset);
  drawCards(asset);
  ledgerBox.append(h("h2#h-ledger", "Ledger anchors"));
  // A GPU: what runs on it, approved by a deployment in force or not.
  const loadRuntime = () => asset.kind === "gpu" ? runtimeCard(runtimeBox, id).then(() => { runtimeBox.hidden = false; }) : null;
  await Promise.all([loadEvents().then(() => anchorsPanel(ledgerBox, asset, events)), drawCharts(), loadAlerts(), loadParts(), loadRuntime()]);
  drawCards(asset);
  root.dataset.ready = "true";

  // Live: a twin event about this asset (or one of its parts) refreshes it
  // at once; readings that change no revision (last seen, latest health)
  // are fetched every few seconds, and the charts every 30 s.
  let refreshing = false;
  async function refresh(force) {
    if (refreshing) return;
    refreshing = true;
    try {
      const a = await api("/assets/" + encodeURIComponent(id));
      const changed = a.revision !== asset.revision;
      if (changed || force || a.last_seen !== asset.last_seen) {
        asset = a;
        drawHead(a);
        if (changed) await loadEvents();
        drawCards(a);
      }
      if (asset.kind !== "gpu") await loadParts();
      else await loadRuntime();
    } catch { /* the next tick retries */ } finally { refreshing = false; }
  }
  const unsub = subscribe((name, data, path) => {
    if (!data || typeof data !== "object") return;
    const al = data.alert && typeof data.alert === "object" ? data.alert : null;
    if (path === "/alerts/stream") { if (al && al.asset === id) loadAlerts(); return; }
    const about = data.asset || (data.event && data.event.asset);
    if (about === id || parts.some((p) => p.id === about)) refresh(false);
  });
  const tick = setInterval(() => { if (!document.hidden) refresh(false); }, 5000);
  const chartTick = setInterval(() => { if (!document.hidden) drawCharts(); }, 30000);
  return () => { unsub(); clearInterval(tick); clearInterval(chartTick); for (const p of plots) p.destroy(); };
}

// rollup is the worst of some health states.
function rollup(states) {
  const order = ["critical", "warning", "ok"];
  for (const st of order) if (states.includes(st)) return st;
  return "unknown";
}
