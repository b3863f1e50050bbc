// Gateway: one gateway's agent (version, the host it runs on), its queue as
// the agent reports it, its online state with the time its last will
// arrived, its stream and the assets bound to it. Refreshed from the
// stream (gateway and twin events) and every 15 s.
import { api, pages, subscribe } from "../api.js";
import { h, fmtTime, ago, pill, label, unavailable, errorBox, fill, dl } from "../dom.js";

// stateChanges are the gateway twin's online/offline events, oldest first.
async function stateChanges(id) {
  const out = [];
  await pages(`/assets/${encodeURIComponent(id)}/events`, (got) => out.push(...got.filter((e) => e.type === "gateway_online" || e.type === "gateway_offline")), { limit: 1000 });
  return out;
}

// boundTwins reads the twins of the gateway's bound assets (at most 64;
// one it has not reported yet is {id}).
async function boundTwins(ids) {
  return Promise.all(ids.slice(0, 64).map((a) => api(`/assets/${encodeURIComponent(a)}`).catch(() => ({ id: a }))));
}

function agentCard(g, st, host) {
  const has = !!st.status_time;
  return h("section.card", { "aria-labelledby": "h-gw-agent" }, h("h2#h-gw-agent", "Agent"),
    dl([
      ["Version", has ? st.agent_version || "not reported" : "no status message yet"],
      ["Host", host ? h("span", { "data-field": "host" }, h("a", { href: "#/asset/" + encodeURIComponent(host.id) }, host.id),
        host.identity && host.identity.hostname ? ` (hostname ${host.identity.hostname})` : "") : "none (a site gateway)"],
      ["Site", g.site || "—"],
      ["Newest status", has ? `${fmtTime(st.status_time)} (${ago(st.status_time)})` : "—"],
    ]));
}

function queueCard(st) {
  const has = !!st.status_time;
  const r = Array.isArray(st.dropped_seqs) && st.dropped_seqs.length === 2 ? st.dropped_seqs : null;
  return h("section.card", { "aria-labelledby": "h-gw-queue" }, h("h2#h-gw-queue", "Offline queue"),
    has ? dl([
      ["Queued readings", String(st.queue_depth ?? 0)],
      ["Dropped (queue full), ever", String(st.dropped ?? 0)],
      ["Newest dropped range", r ? `sequence ${r[0]}–${r[1]}` : "none"],
      ["As of", fmtTime(st.status_time)],
    ]) : h("p.muted", "The agent has sent no numbered status message yet, so its queue is unknown."),
    h("p.muted.small", "From the agent's status message (queue_depth, dropped, dropped_seqs). The message does not carry the queue's capacity or the age of its oldest reading."));
}

function stateCard(st, changes) {
  const state = st.state || "unknown";
  const lastOff = [...changes].reverse().find((e) => e.type === "gateway_offline");
  const lastOn = [...changes].reverse().find((e) => e.type === "gateway_online");
  const now = changes[changes.length - 1];
  const pairs = [
    ["State", pill(state, "gw")],
    ["Last seen", st.last_seen ? `${fmtTime(st.last_seen)} (${ago(st.last_seen)})` : "never"],
  ];
  if (state === "offline" && lastOff) pairs.push(["Dropped at", h("span", { "data-field": "dropped_at" }, `${fmtTime(lastOff.recorded)} (${ago(lastOff.recorded)})`)]);
  if (lastOff) pairs.push(["Last will", `${lastOff.note || "offline"} · arrived ${fmtTime(lastOff.recorded)}`]);
  if (state === "online" && lastOn) pairs.push(["Online since", fmtTime(lastOn.recorded)]);
  return h("section.card", { "aria-labelledby": "h-gw-state" }, h("h2#h-gw-state", "Online state and last will"),
    dl(pairs),
    changes.length ? h("ol.gw-changes", changes.slice(-10).reverse().map((e) => h("li", { "data-type": e.type },
      pill(e.type === "gateway_online" ? "online" : "offline", "gw"), ` ${fmtTime(e.recorded)}`, e.note ? ` · ${e.note}` : ""))) : null,
    h("p.muted.small", "The broker publishes the agent's last will (an offline status it signed when it connected) when its connection drops; the time shown is when it arrived here, not the time it was signed."),
    now && now.type === "gateway_offline" && state !== "offline" ? h("p.muted.small", "A newer status brought it back.") : null);
}

function streamCard(st) {
  const rejected = Object.entries(st.rejected || {});
  return h("section.card", { "aria-labelledby": "h-gw-stream" }, h("h2#h-gw-stream", "Stream"),
    dl([
      ["Accepted messages", String(st.accepted ?? 0)],
      ["Last sequence", String(st.last_seq ?? 0)],
      ["Gaps", String(st.gaps ?? 0)],
      ["Rejected (since start)", rejected.length ? rejected.map(([k, v]) => `${label(k)} ${v}`).join(", ") : "none"],
    ]));
}

function assetsCard(ids, twins) {
  return h("section.card", { "aria-labelledby": "h-gw-assets" }, h("h2#h-gw-assets", `Bound assets (${ids.length})`),
    ids.length ? h("table.plain.gw-assets", { "aria-label": "Bound assets" },
      h("thead", h("tr", ["Asset", "Kind", "Health", "Last seen"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", twins.map((a) => h("tr", { "data-id": a.id },
        h("td", h("a", { href: "#/asset/" + encodeURIComponent(a.id) }, a.id)),
        h("td", a.kind || "not reported yet"),
        h("td", a.health ? pill(a.health.state, "health") : "—"),
        h("td", a.last_seen ? ago(a.last_seen) : "—")))))
      : h("p.muted", "No asset is bound to this gateway."),
    ids.length > twins.length ? h("p.muted.small", `First ${twins.length} of ${ids.length} shown.`) : null);
}

export async function gatewayView(root, id) {
  const box = h("div.gateway");
  root.append(h("h1", "Gateway ", h("code", id)), h("p", h("a", { href: "#/gateways" }, "← all gateways"), " · ", h("a", { href: "#/asset/" + encodeURIComponent(id) }, "its twin")), box);
  async function load() {
    try {
      const g = await api(`/gateways/${encodeURIComponent(id)}`);
      const st = g.stream || {};
      const ids = g.assets || [];
      const [changes, twins] = await Promise.all([stateChanges(id).catch(() => []), boundTwins(ids)]);
      const host = twins.find((a) => a.kind === "server");
      fill(box, h("div.grid", agentCard(g, st, host), stateCard(st, changes), queueCard(st), streamCard(st)), assetsCard(ids, twins));
    } catch (e) {
      fill(box, e.missing ? unavailable("The gateway", e) : e.status === 404 ? errorBox(`gateway ${id} is not registered`) : errorBox(e));
    }
    root.dataset.ready = "true";
  }
  await load();
  let timer = 0;
  const unsub = subscribe((name, data) => {
    if (name === "gateway" || (data && (data.gateway === id || data.asset === id))) {
      clearTimeout(timer);
      timer = setTimeout(load, 500);
    }
  });
  const poll = setInterval(load, 15000);
  return () => { unsub(); clearTimeout(timer); clearInterval(poll); };
}
