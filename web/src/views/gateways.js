// Gateways: online, last sequence, queue depth, drops, last seen; and the
// ingest counters.
import { api, pages, subscribe } from "../api.js";
import { h, clear, fmtTime, ago, pill, label, unavailable, errorBox, fill } from "../dom.js";

const pick = (o, ...names) => {
  for (const n of names) {
    const v = n.split(".").reduce((x, k) => (x == null ? undefined : x[k]), o);
    if (v !== undefined && v !== null && v !== "") return v;
  }
  return undefined;
};

// hasStatus: the gateway's agent sent a numbered status (its queue depth,
// drops and version are known).
const hasStatus = (g) => pick(g, "stream.status_time") !== undefined;

const droppedRange = (g) => {
  const r = pick(g, "stream.dropped_seqs");
  return Array.isArray(r) && r.length === 2 ? `newest dropped sequence numbers ${r[0]}–${r[1]}` : "";
};

export async function gatewaysView(root) {
  const box = h("div");
  const stats = h("section.card", { "aria-labelledby": "h-ingest" });
  root.append(h("h1", "Gateways"), box, stats);

  async function load() {
    try {
      const list = [];
      await pages("/gateways", (got) => list.push(...got), { limit: 1000 });
      const online = (g) => {
        const s = pick(g, "online", "stream.state", "state", "status.state");
        return s === true || s === "online";
      };
      const rows = list.map((g) => h("tr", { dataset: { id: pick(g, "id", "gateway") } },
        h("td", h("a", { href: "#/gateway/" + encodeURIComponent(pick(g, "id", "gateway")) }, pick(g, "id", "gateway"))),
        h("td", pick(g, "site") || "—"),
        h("td", pill(online(g) ? "online" : "offline", "gw")),
        h("td.num", String(pick(g, "stream.last_seq", "last_seq", "last_sequence") ?? "—")),
        h("td.num", { title: hasStatus(g) ? "at " + fmtTime(pick(g, "stream.status_time")) : "no status message yet" },
          hasStatus(g) ? String(pick(g, "stream.queue_depth") ?? 0) : "—"),
        h("td.num", { title: droppedRange(g) }, hasStatus(g) ? String(pick(g, "stream.dropped") ?? 0) : "—"),
        h("td.num", String(pick(g, "stream.gaps", "gaps") ?? "—")),
        h("td.num", String(Object.values(pick(g, "stream.rejected") || {}).reduce((a, b) => a + b, 0))),
        h("td", { title: fmtTime(pick(g, "stream.last_seen", "last_seen")) }, ago(pick(g, "stream.last_seen", "last_seen"))),
        h("td.num", String(pick(g, "stream.accepted", "accepted") ?? "—")),
        h("td", pick(g, "stream.agent_version") || "—")));
      const noQueue = list.length > 0 && !list.some(hasStatus);
      fill(box, 
        h("p.summary", `${list.length} gateways, ${list.filter(online).length} online`),
        ...(noQueue ? [h("p.muted.small", "Queue depth, drops and agent version come from the agents' status messages; no gateway has sent one yet.")] : []),
        h("div.hscroll", h("table.plain", { "aria-label": "Gateways" },
          h("thead", h("tr", ["Gateway", "Site", "State", "Last sequence", "Queue depth", "Dropped", "Gaps", "Rejected", "Last seen", "Accepted", "Agent"].map((t) => h("th", { scope: "col" }, t)))),
          h("tbody", rows))));
    } catch (e) {
      fill(box, e.missing ? unavailable("Gateways", e) : errorBox(e));
    }
    try {
      const s = await api("/stats/ingest");
      const { gateways: _perGateway, ...totals } = s || {};
      fill(stats, h("h2#h-ingest", "Ingest"), statsList(totals));
    } catch (e) {
      fill(stats, h("h2#h-ingest", "Ingest"), e.missing ? unavailable("Ingest statistics", e) : errorBox(e));
    }
    root.dataset.ready = "true";
  }
  await load();
  let timer = 0;
  const unsub = subscribe((name, data) => {
    if (data && (name === "gateway" || (data.type || "").startsWith("gateway_") || data.type === "sequence_gap")) {
      clearTimeout(timer);
      timer = setTimeout(load, 500);
    }
  });
  const poll = setInterval(load, 15000);
  return () => { unsub(); clearTimeout(timer); clearInterval(poll); };
}

// statsList shows a stats object as nested definition lists.
function statsList(s) {
  if (s === null || typeof s !== "object") return h("span", String(s));
  return h("dl.kv", Object.entries(s).flatMap(([k, v]) => [h("dt", label(k)), h("dd", typeof v === "object" && v !== null ? statsList(v) : String(v))]));
}
