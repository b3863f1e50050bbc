// Alerts: the security team's inbox — filters, acknowledge/resolve with a
// comment, live arrival over SSE, and the evidence behind each alert.
import { api, pages, subscribe, can, qs } from "../api.js";
import { h, clear, fmtTime, ago, label, pill, unavailable, errorBox, toast, fill } from "../dom.js";

const filter = { state: "open", severity: "", type: "", site: "" };

// alertEventName says whether a stream message is about an alert.
export function alertEventName(name, data, path) {
  return (path === "/alerts/stream" && name !== "resync") || /^alert/.test(name) || !!(data && typeof data === "object" && data.alert);
}

const stateOf = (al) => al.state || al.status || "open";

// evidenceRecord shows one finding behind an alert: its summary, the events
// and messages that raised it, and the values it read.
function evidenceRecord(r) {
  const ev = r.evidence || {};
  const values = Object.entries(ev.values || {});
  return h("li.evidence-rec",
    h("div", h("time", { datetime: r.time }, fmtTime(r.time)), " ", r.summary || ""),
    r.note ? h("div.sub", r.note) : null,
    values.length ? h("dl.kv.evidence", values.flatMap(([k, v]) => [h("dt", label(k)), h("dd", h("code", String(v)))])) : null,
    (ev.events || []).length ? h("ul.changes", ev.events.map((e) => h("li",
      h("span.rev", `rev ${e.revision}`), ` ${label(e.type)} · event ${e.id} · ${fmtTime(e.time)} `,
      (e.changes || []).map((c) => h("span", h("code", c.field), " ", c.old ? [h("del", c.old), " → "] : "", h("ins", c.new || "(empty)"), " "))))) : null,
    (ev.messages || []).length ? h("div.sub", "messages: ", ev.messages.map((m) => `${m.gateway} #${m.seq}`).join(", ")) : null);
}

function evidence(al) {
  const recs = Array.isArray(al.evidence) ? al.evidence : al.evidence ? [al.evidence] : [];
  if (!recs.length) return null;
  return h("details.evidence-box", { open: recs.length <= 2 }, h("summary", `Evidence (${recs.length})`), h("ul.evidence-list", recs.map(evidenceRecord)));
}

// alertList draws alerts with their actions; reload is called after one.
export function alertList(list, reload) {
  const ul = h("ul.alerts");
  for (const al of list) {
    const state = stateOf(al);
    const comment = h("input", { type: "text", name: "comment", "aria-label": `Comment on alert ${al.id}`, placeholder: "Comment" });
    const act = (verb) => h("button", {
      type: "button", dataset: { action: verb },
      onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          await api(`/alerts/${encodeURIComponent(al.id)}/${verb}`, { method: "POST", body: { comment: comment.value } });
          toast(`Alert ${al.id} ${verb === "ack" ? "acknowledged" : "resolved"}.`);
          reload();
        } catch (e) {
          toast(e.status === 403 ? `Not allowed: ${e.message}` : `Failed: ${e.message}`);
          ev.target.disabled = false;
        }
      },
    }, verb === "ack" ? "Acknowledge" : "Resolve");
    const raised = al.opened || al.first_seen || al.time;
    const history = al.history || [];
    ul.append(h(`li.alert.sev-${al.severity || "info"}`, { dataset: { id: al.id, state, type: al.type } },
      h("div.alert-head", pill(al.severity || "info", "sev"), " ", h("strong", label(al.type)), " ", pill(state, "astatus"),
        al.count > 1 ? h("span.muted", ` ×${al.count}`) : null),
      al.summary ? h("p.alert-summary", al.summary) : null,
      h("div.muted", al.asset ? h("a", { href: "#/asset/" + encodeURIComponent(al.asset) }, al.asset) : null,
        al.site ? ` · site ${al.site}` : "", ` · opened ${fmtTime(raised)} (${ago(raised)})`,
        al.last_seen ? ` · last seen ${ago(al.last_seen)}` : ""),
      evidence(al),
      history.length ? h("div.alert-history", h("span.sub", "History"), h("ul.history", history.map((x) =>
        h("li", `${fmtTime(x.at || x.time)} ${x.by || ""}: ${label(x.state || x.action || "")}${x.comment ? " — " + x.comment : ""}`)))) : null,
      state === "resolved" ? null : can("alerts.ack")
        ? h("div.actions", comment, state === "open" ? act("ack") : null, act("resolve"))
        : h("p.muted.small", "Your role can read alerts but not acknowledge or resolve them.")));
  }
  return ul;
}

export async function alertsView(root) {
  const box = h("div");
  const sel = (k, opts) => {
    const s = h("select", { id: "alerts-" + k, name: k, onchange: () => { filter[k] = s.value; load(); } },
      opts.map((o) => h("option", { value: o, selected: o === filter[k] ? true : null }, o ? label(o) : "all")));
    return h("div.field", h("label", { for: "alerts-" + k }, k === "state" ? "status" : k === "severity" ? "min. severity" : label(k)), s);
  };
  const typeIn = h("input", { id: "alerts-type", name: "type", value: filter.type, placeholder: "e.g. substitution", onchange: () => { filter.type = typeIn.value.trim(); load(); } });
  const siteIn = h("input", { id: "alerts-site", name: "site", value: filter.site, placeholder: "e.g. s1", onchange: () => { filter.site = siteIn.value.trim(); load(); } });
  const summary = h("p.summary", { "aria-live": "polite" });
  root.append(h("h1", "Alerts"), h("div.filters",
    sel("state", ["", "open", "acknowledged", "resolved"]),
    sel("severity", ["", "critical", "warning", "info"]), // the API's severity filter is a minimum
    h("div.field", h("label", { for: "alerts-type" }, "Type"), typeIn),
    h("div.field", h("label", { for: "alerts-site" }, "Site"), siteIn)), summary, box);

  let loading = 0;
  async function load() {
    const my = ++loading;
    const got = [];
    try {
      await pages("/alerts" + qs(filter), (p) => got.push(...p), { limit: 500, max: 2000 });
    } catch (e) {
      if (my !== loading) return;
      fill(box, e.missing ? unavailable("The alerts inbox", e) : errorBox(e));
      summary.textContent = "";
      root.dataset.ready = "true";
      return;
    }
    if (my !== loading) return;
    const f = filter;
    const rank = { info: 1, warning: 2, critical: 3 };
    const shown = got.filter((a) => (!f.state || stateOf(a) === f.state) && (!f.severity || (rank[a.severity] || 0) >= rank[f.severity]) &&
      (!f.type || a.type === f.type) && (!f.site || a.site === f.site));
    shown.sort((a, b) => String(b.opened || b.first_seen || "").localeCompare(String(a.opened || a.first_seen || "")));
    summary.textContent = `${shown.length} alert${shown.length === 1 ? "" : "s"}`;
    fill(box, shown.length ? alertList(shown, load) : h("p.muted", "No alerts match."));
    root.dataset.ready = "true";
  }
  await load();
  let timer = 0;
  const unsub = subscribe((name, data, path) => {
    if (!alertEventName(name, data, path)) return;
    clearTimeout(timer);
    timer = setTimeout(load, 200);
  });
  return () => { unsub(); clearTimeout(timer); };
}
