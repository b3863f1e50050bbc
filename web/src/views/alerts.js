// Alerts: the security team's inbox — filters, acknowledge/resolve with a
// comment, live arrival over SSE, and the evidence behind each alert.
import { api, pages, subscribe, can, qs } from "../api.js";
import { h, clear, fmtTime, ago, label, pill, unavailable, errorBox, toast } from "../dom.js";

const filter = { severity: "", type: "", site: "", status: "open" };

// alertEventName says whether a stream message is about an alert.
export function alertEventName(name, data) {
  return /^alert/.test(name) || !!(data && typeof data === "object" && data.kind === "alert");
}

function alertOf(data) {
  return data && (data.alert || (data.severity ? data : null));
}

function evidence(al) {
  const ev = al.evidence;
  if (!ev) return null;
  const parts = [];
  const list = Array.isArray(ev) ? ev : [ev];
  for (const e of list) {
    if (e && typeof e === "object") {
      const rows = Object.entries(e).filter(([, v]) => v !== null && v !== undefined && v !== "");
      parts.push(h("dl.kv.evidence", rows.flatMap(([k, v]) => [h("dt", label(k)),
        h("dd", typeof v === "object" ? h("code", JSON.stringify(v)) : k === "event" || k === "event_id" ? h("code", String(v)) : String(v))])));
    } else parts.push(h("p", String(e)));
  }
  return h("details.evidence-box", h("summary", "Evidence"), parts);
}

// alertList draws alerts with their actions; reload is called after one.
export function alertList(list, reload) {
  const ul = h("ul.alerts");
  for (const al of list) {
    const status = al.status || al.state || "open";
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
    const allowed = can("alerts.ack");
    ul.append(h(`li.alert.sev-${al.severity || "info"}`, { dataset: { id: al.id, status } },
      h("div.alert-head", pill(al.severity || "info", "sev"), " ", h("strong", al.title || label(al.type)), " ", pill(status, "astatus")),
      h("div.muted", al.asset ? h("a", { href: "#/asset/" + encodeURIComponent(al.asset) }, al.asset) : null,
        al.site ? ` · ${al.site}` : "", ` · ${label(al.type)} · raised ${fmtTime(al.time || al.created || al.raised)} (${ago(al.time || al.created || al.raised)})`),
      al.message || al.description ? h("p", al.message || al.description) : null,
      evidence(al),
      (al.history || al.comments || []).length ? h("ul.history", (al.history || al.comments).map((x) =>
        h("li", `${fmtTime(x.time)} ${x.actor || x.user || ""}: ${label(x.action || x.status || "")} ${x.comment || ""}`))) : null,
      status === "resolved" ? null : allowed
        ? h("div.actions", comment, status === "open" ? act("ack") : null, act("resolve"))
        : h("p.muted.small", "Your role can read alerts but not acknowledge or resolve them.")));
  }
  return ul;
}

export async function alertsView(root) {
  const box = h("div");
  const sel = (k, opts) => {
    const s = h("select", { id: "alerts-" + k, name: k, onchange: () => { filter[k] = s.value; load(); } },
      opts.map((o) => h("option", { value: o, selected: o === filter[k] ? true : null }, o ? label(o) : "all")));
    return h("div.field", h("label", { for: "alerts-" + k }, label(k)), s);
  };
  const typeIn = h("input", { id: "alerts-type", name: "type", value: filter.type, placeholder: "e.g. substitution", onchange: () => { filter.type = typeIn.value.trim(); load(); } });
  const siteIn = h("input", { id: "alerts-site", name: "site", value: filter.site, placeholder: "e.g. s1", onchange: () => { filter.site = siteIn.value.trim(); load(); } });
  const summary = h("p.summary", { "aria-live": "polite" });
  root.append(h("h1", "Alerts"), h("div.filters",
    sel("status", ["", "open", "acknowledged", "resolved"]),
    sel("severity", ["", "critical", "high", "medium", "low", "info"]),
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
      clear(box).append(e.missing ? unavailable("The alerts inbox", e) : errorBox(e));
      summary.textContent = "";
      return;
    }
    if (my !== loading) return;
    got.sort((a, b) => String(b.time || b.created || "").localeCompare(String(a.time || a.created || "")));
    summary.textContent = `${got.length} alert${got.length === 1 ? "" : "s"}`;
    clear(box).append(got.length ? alertList(got, load) : h("p.muted", "No alerts match."));
    root.dataset.ready = "true";
  }
  await load();
  let timer = 0;
  const unsub = subscribe((name, data) => {
    if (!alertEventName(name, data)) return;
    const al = alertOf(data);
    if (al && al.id) summary.dataset.lastLive = al.id;
    clearTimeout(timer);
    timer = setTimeout(load, 200);
  });
  return () => { unsub(); clearTimeout(timer); };
}
