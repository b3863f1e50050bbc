// Incidents: related alerts grouped by cause and scope (GET /incidents, see
// docs/detection.md). One row per incident (severity, cause, scope, assets,
// alerts, first and last seen, state, assignee), sortable by a click on a header;
// filters and the open incident live in the URL
// (#/incidents?state=open&sev=warning&cause=thermal&sort=-last&open=IN-3).
// Opening an incident shows its member alerts in full, with their evidence
// and actions, where they are on the map, the twin timeline around the
// incident and each member's proof bundle. Acknowledge, resolve, assign and
// comment act on incidents, one or several at once, through the
// incident's own routes (POST /incidents/ID/ack, /resolve, /assign,
// /comment), each recording the step on every member alert it applies to
// in one transaction. Every step is an alert's, anchored like any alert
// step.
import { api, pages, subscribe, can } from "../api.js";
import { h, clear, fmtTime, ago, label, pill, unavailable, errorBox, toast, fill, setViewParams } from "../dom.js";
import { alertList, historyLine } from "./alerts.js";

const RANK = { info: 1, warning: 2, critical: 3 };
const MAX = 5000;
const MAP_LINKS = 6, TIMELINE_ASSETS = 4, TIMELINE_MAX = 200, AROUND_MS = 15 * 60 * 1000;

const columns = [
  ["sel", ""], ["sev", "Severity"], ["id", "Incident"], ["cause", "Cause"], ["scope", "Scope"], ["alerts", "Alerts"],
  ["assets", "Assets"], ["first", "First seen"], ["last", "Last seen"], ["state", "State"], ["assignee", "Assignee"], ["summary", "Summary"],
];
const sortable = new Set(["sev", "id", "cause", "scope", "alerts", "assets", "first", "last", "state", "assignee"]);
const descFirst = new Set(["sev", "alerts", "assets", "first", "last"]);

function readParams(p) {
  p = p || new URLSearchParams();
  const sort = p.get("sort") || "-sev";
  return {
    f: { state: p.has("state") ? p.get("state") : "open", sev: p.get("sev") || "", cause: p.get("cause") || "", q: p.get("q") || "" },
    sort: { key: sort.replace(/^-/, ""), dir: sort.startsWith("-") ? -1 : 1 },
    open: p.get("open") || "",
  };
}

function writeParams(st) {
  const p = new URLSearchParams();
  if (st.f.state !== "open") p.set("state", st.f.state);
  for (const k of ["sev", "cause", "q"]) if (st.f[k]) p.set(k, st.f[k]);
  const sort = (st.sort.dir < 0 ? "-" : "") + st.sort.key;
  if (sort !== "-sev") p.set("sort", sort);
  if (st.open) p.set("open", st.open);
  setViewParams("/incidents", p);
}

const idNum = (id) => Number(String(id).replace(/\D/g, "")) || 0;

function sortKey(key) {
  return {
    sev: (i) => RANK[i.severity] || 0, id: (i) => idNum(i.id), cause: (i) => i.cause || "", scope: (i) => i.scope || "",
    alerts: (i) => (i.alerts || []).length, assets: (i) => (i.assets || []).length,
    first: (i) => i.first_seen || "", last: (i) => i.last_seen || "", state: (i) => i.state || "", assignee: (i) => i.assignee || "",
  }[key] || ((i) => RANK[i.severity] || 0);
}

// openMembers lists an incident's member alerts that a step may still move:
// not yet acknowledged for "ack", not resolved for "resolve".
function openMembers(inc, verb) {
  return (inc.members || []).filter((m) => verb === "ack" ? m.state === "open" : m.state !== "resolved").map((m) => m.alert);
}

// shownState is the incident's state, or "acknowledged" when it is open
// and every member alert is acknowledged (the API knows open and resolved).
function shownState(i) {
  const st = i.state || "open";
  return st === "open" && (i.members || []).length && !openMembers(i, "ack").length ? "acknowledged" : st;
}

export async function incidentsView(root, params) {
  const st = readParams(params);
  const incidents = new Map(); // id -> incident
  const selected = new Set();
  const mayAct = can("alerts.ack");

  const mk = (id, key, text, opts) => {
    const s = h("select", { id: "incidents-" + id, name: id, onchange: () => { st.f[key] = s.value; draw(); } },
      opts.map(([v, t]) => h("option", { value: v, selected: v === st.f[key] ? true : null }, t)));
    return h("div.field", h("label", { for: "incidents-" + id }, text), s);
  };
  const causeField = h("span.field-wrap");
  const search = h("input", { id: "incidents-q", type: "search", name: "q", value: st.f.q, placeholder: "asset, host, rack, id…" });
  search.addEventListener("input", () => { st.f.q = search.value; draw(); });
  const summary = h("span.summary", { "aria-live": "polite" });
  const comment = h("input", { type: "text", name: "incident-comment", "aria-label": "Comment for the selected incidents", placeholder: "Comment" });
  const assignee = h("input#incidents-assignee", { type: "text", name: "incident-assignee", "aria-label": "Assignee for the selected incidents", placeholder: "Assignee", size: "10" });
  const count = h("span#incidents-selected", "0 selected");
  const ackBtn = h("button#incidents-ack", { type: "button", onclick: () => annotate([...selected], "ack", "", comment.value) }, "Acknowledge");
  const resBtn = h("button#incidents-resolve", { type: "button", onclick: () => annotate([...selected], "resolve", "", comment.value) }, "Resolve");
  const asgBtn = h("button#incidents-assign", { type: "button", onclick: () => annotate([...selected], "assign", assignee.value, comment.value) }, "Assign");
  const comBtn = h("button#incidents-comment", { type: "button", onclick: () => annotate([...selected], "comment", "", comment.value) }, "Comment");
  const buttons = [ackBtn, resBtn, asgBtn, comBtn];
  const bulk = mayAct ? h("div.bulk", count, assignee, comment, ...buttons) : null;
  const headRow = h("tr");
  const tbody = h("tbody");
  const table = h("table.plain.incidents", { "aria-label": "Incidents" }, h("thead", headRow), tbody);
  const detail = h("aside.alert-detail.incident-detail", { "aria-label": "Incident detail", hidden: true });
  const notes = h("div");
  root.append(h("div.inbox-head", h("h1", "Incidents"), summary, bulk),
    h("p.muted.small", "Related alerts form one incident: same cause and host, rack or site within the incident window. A step on an incident acts on its member alerts."),
    h("div.filters.dense", { role: "search" },
      mk("state", "state", "State", [["", "all"], ["open", "open"], ["resolved", "resolved"]]),
      mk("severity", "sev", "Min. severity", [["", "all"], ["critical", "critical"], ["warning", "warning"], ["info", "info"]]),
      causeField, h("div.field.grow", h("label", { for: "incidents-q" }, "Search"), search)),
    notes, h("div.inbox-body", h("div.incidents-scroll", table), detail));

  function drawCauses() {
    const counts = new Map();
    for (const i of incidents.values()) counts.set(i.cause, (counts.get(i.cause) || 0) + 1);
    if (st.f.cause && !counts.has(st.f.cause)) counts.set(st.f.cause, 0);
    const opts = [["", "all"], ...[...counts.entries()].sort().map(([v, n]) => [v, `${label(v)} (${n})`])];
    fill(causeField, mk("cause", "cause", "Cause", opts));
  }

  function drawHead() {
    clear(headRow);
    for (const [key, text] of columns) {
      if (key === "sel") {
        headRow.append(h("th.col-sel", { scope: "col" }, mayAct ? h("input#incidents-all", {
          type: "checkbox", "aria-label": "Select every shown open incident",
          onchange: (ev) => { for (const tr of tbody.querySelectorAll("tr[data-state=open]")) ev.target.checked ? selected.add(tr.dataset.id) : selected.delete(tr.dataset.id); draw(); },
        }) : null));
        continue;
      }
      if (!sortable.has(key)) { headRow.append(h(`th.col-${key}`, { scope: "col" }, text)); continue; }
      const active = st.sort.key === key;
      headRow.append(h(`th.col-${key}`, { scope: "col", "aria-sort": active ? (st.sort.dir > 0 ? "ascending" : "descending") : "none" },
        h("button.sort", {
          type: "button", dataset: { sort: key },
          onclick: () => { st.sort = { key, dir: active ? -st.sort.dir : descFirst.has(key) ? -1 : 1 }; drawHead(); draw(); },
        }, text, active ? (st.sort.dir > 0 ? " ▲" : " ▼") : "")));
    }
  }

  function shownList() {
    const min = RANK[st.f.sev] || 0;
    const terms = st.f.q.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const by = sortKey(st.sort.key);
    const dir = st.sort.dir;
    return [...incidents.values()].filter((i) => {
      if (st.f.state && i.state !== st.f.state) return false;
      if ((RANK[i.severity] || 0) < min || (st.f.cause && i.cause !== st.f.cause)) return false;
      if (!terms.length) return true;
      const hay = [i.id, i.cause, i.scope, i.site, i.summary, i.assignee, ...(i.assets || []), ...(i.hosts || []), ...(i.racks || []), ...(i.alerts || [])].join(" ").toLowerCase();
      return terms.every((t) => hay.includes(t));
    }).sort((a, b) => {
      const x = by(a), y = by(b);
      return dir * (x < y ? -1 : x > y ? 1 : 0) || idNum(b.id) - idNum(a.id);
    });
  }

  function cell(key, i) {
    const n = (xs) => String((xs || []).length);
    switch (key) {
      case "sel": return h("td.col-sel", mayAct && i.state === "open" ? h("input", {
        type: "checkbox", "aria-label": `Select ${i.id}`, checked: selected.has(i.id) ? true : null,
        onclick: (ev) => { ev.stopPropagation(); ev.target.checked ? selected.add(i.id) : selected.delete(i.id); drawBulk(); },
      }) : null);
      case "sev": return h("td.col-sev", pill(i.severity || "info", "sev"));
      case "id": return h("td.col-id", i.id);
      case "cause": return h("td.col-cause", label(i.cause));
      case "scope": return h("td.col-scope", i.scope || "—");
      case "alerts": return h("td.col-alerts.num", n(i.alerts));
      case "assets": return h("td.col-assets.num", { title: (i.assets || []).join(", ") }, n(i.assets));
      case "first": return h("td.col-first", { title: fmtTime(i.first_seen) }, i.first_seen ? ago(i.first_seen) : "—");
      case "last": return h("td.col-last", { title: fmtTime(i.last_seen) }, i.last_seen ? ago(i.last_seen) : "—");
      case "state": return h("td.col-state", pill(shownState(i), "astatus"));
      case "assignee": return h("td.col-assignee", i.assignee || "—");
      default: return h("td.col-summary", { title: i.summary || "" }, h("div.clip", i.summary || ""));
    }
  }

  function draw() {
    const list = shownList();
    for (const id of selected) { const i = incidents.get(id); if (!i || i.state !== "open") selected.delete(id); }
    summary.textContent = `${list.length} of ${incidents.size} incidents`;
    fill(tbody, list.length ? list.map((i) => h(`tr.sev-${i.severity || "info"}${i.id === st.open ? ".cursor" : ""}`, {
      dataset: { id: i.id, state: i.state || "open" }, "aria-selected": String(selected.has(i.id)), tabindex: "0",
      onclick: () => openIncident(i.id),
      onkeydown: (ev) => { if (ev.key === "Enter") openIncident(i.id); },
    }, columns.map(([k]) => cell(k, i)))) : h("tr", h("td.muted", { colspan: String(columns.length) }, incidents.size ? "No incident matches the filters." : "No incidents recorded yet.")));
    writeParams(st);
    drawBulk();
  }
  function drawBulk() {
    if (!bulk) return;
    count.textContent = `${selected.size} selected`;
    for (const b of buttons) b.disabled = selected.size === 0;
  }

  // annotate acknowledges ("ack"), resolves ("resolve"), assigns
  // ("assign", to whom; "" takes it back) or comments on each of the given
  // incidents through its own route, three at a time, then reloads them.
  async function annotate(ids, verb, to, text) {
    if (verb === "ack") ids = ids.filter((id) => incidents.has(id) && openMembers(incidents.get(id), "ack").length);
    if (!ids.length) { if (verb === "ack") toast("Every member alert is acknowledged already."); return; }
    if (verb === "comment" && !text.trim()) { toast("Write a comment first."); return; }
    for (const b of buttons) b.disabled = true;
    const queue = [...ids];
    let ok = 0;
    const failed = [];
    await Promise.all(Array.from({ length: Math.min(3, queue.length) }, async () => {
      for (let id = queue.shift(); id; id = queue.shift()) {
        try {
          await api(`/incidents/${encodeURIComponent(id)}/${verb}`, { method: "POST", body: verb === "assign" ? { assignee: to.trim(), comment: text } : { comment: text } });
          ok++;
        } catch (e) {
          failed.push(`${id}: ${e.message}`);
        }
      }
    }));
    selected.clear();
    comment.value = "";
    const done = { ack: "acknowledged", resolve: "resolved", comment: "commented" }[verb] || (to.trim() ? `assigned to ${to.trim()}` : "unassigned");
    toast(`${ok} incident${ok === 1 ? "" : "s"} ${done}${failed.length ? `; ${failed.length} failed (${failed[0]})` : ""}.`);
    await Promise.all(ids.map((id) => refresh(id).catch(() => null)));
    draw();
    if (st.open && ids.includes(st.open)) openIncident(st.open);
  }

  async function refresh(id) {
    try {
      const got = await api("/incidents/" + encodeURIComponent(id));
      const { member_alerts: members, ...inc } = got;
      incidents.set(inc.id, inc);
      return members || [];
    } catch (e) {
      if (e.status === 404) incidents.delete(id);
      throw e;
    }
  }

  // Detail: the incident's facts, its steps, and its member alerts in full.
  async function openIncident(id) {
    st.open = id;
    detail.hidden = false;
    root.classList.add("with-detail");
    draw();
    // Re-reading the incident shown (after a step, or live) keeps it on
    // screen until the new copy is drawn; another one says it is loading.
    if (detail.dataset.id !== id) fill(detail, h("p.muted", `Loading ${id}…`));
    detail.dataset.id = id;
    let members;
    try {
      members = await refresh(id);
    } catch (e) {
      if (st.open === id) fill(detail, h("div.detail-head", h("h2", id), closeBtn()), errorBox(e));
      return;
    }
    if (st.open !== id) return;
    const i = incidents.get(id);
    const ids = (xs) => (xs || []).length ? (xs || []).join(", ") : "—";
    fill(detail,
      h("div.detail-head", h("h2", `${i.id}: ${label(i.cause)}, ${i.scope || "—"}`), closeBtn()),
      h("div", pill(i.severity || "info", "sev"), " ", pill(shownState(i), "astatus"), h("span.muted", ` ${(i.alerts || []).length} alerts, ${i.count || 0} findings`)),
      i.summary ? h("p.alert-summary", i.summary) : null,
      h("dl.kv",
        h("dt", "First seen"), h("dd", fmtTime(i.first_seen)),
        h("dt", "Last seen"), h("dd", fmtTime(i.last_seen)),
        h("dt", "Opened"), h("dd", fmtTime(i.opened)),
        i.resolved ? [h("dt", "Resolved"), h("dd", fmtTime(i.resolved))] : null,
        h("dt", "Assignee"), h("dd.incident-assignee", i.assignee || "nobody"),
        h("dt", "Site"), h("dd", i.site || "—"),
        h("dt", "Hosts"), h("dd", ids(i.hosts)),
        h("dt", "Racks"), h("dd", ids(i.racks)),
        h("dt", "Assets"), h("dd", (i.assets || []).length ? (i.assets || []).flatMap((a, k) => [k ? ", " : "", h("a", { href: "#/asset/" + encodeURIComponent(a) }, a)]) : "—"),
        h("dt", "Types"), h("dd", (i.types || []).map(label).join(", ") || "—"),
        h("dt", "Window"), h("dd", i.window || "—")),
      whereAndWhen(i),
      mayAct && i.state === "open" ? detailActions(i) : null,
      (i.history || []).length ? h("div.alert-history.incident-history", h("span.sub", "Incident history"),
        h("ul.history", i.history.map((x) => h("li", historyLine(x))))) : null,
      h("h3", "Member alerts"),
      alertList(members, () => openIncident(id)));
  }
  function detailActions(i) {
    const id = i.id;
    const who = h("input", { type: "text", name: "assignee", "aria-label": `Assignee of ${id}`, placeholder: "Assignee", value: i.assignee || "", size: "10" });
    const note = h("input", { type: "text", name: "comment", "aria-label": `Comment on ${id}`, placeholder: "Comment" });
    return h("div.actions",
      openMembers(i, "ack").length ? h("button", { type: "button", dataset: { action: "incident-ack" }, onclick: () => annotate([id], "ack", "", note.value) }, "Acknowledge incident") : null,
      h("button", { type: "button", dataset: { action: "incident-resolve" }, onclick: () => annotate([id], "resolve", "", note.value) }, "Resolve incident"),
      h("div.actions.annotate", who, h("button", { type: "button", dataset: { action: "incident-assign" }, onclick: () => annotate([id], "assign", who.value, note.value) }, "Assign"),
        note, h("button", { type: "button", dataset: { action: "incident-comment" }, onclick: () => annotate([id], "comment", "", note.value) }, "Comment")));
  }
  // whereAndWhen links the incident to the map (its hosts, else its
  // assets), to the twin timeline around it (loaded when opened: the
  // events of its first assets from 15 minutes before its first finding
  // to 15 minutes after its last) and to each member alert's proof bundle.
  function whereAndWhen(i) {
    const places = ((i.hosts || []).length ? i.hosts : i.assets || []).slice(0, MAP_LINKS);
    const assets = (i.assets || []).slice(0, TIMELINE_ASSETS);
    const box = h("div.incident-timeline-body", h("p.muted", "Loading…"));
    const timeline = h("details.incident-timeline", {
      ontoggle: () => { if (timeline.open && !timeline.dataset.loaded) { timeline.dataset.loaded = "true"; loadTimeline(box, i, assets); } },
    }, h("summary", `Twin timeline around the incident (${assets.join(", ") || "no asset"}${(i.assets || []).length > assets.length ? ", …" : ""})`), box);
    return h("div.incident-where",
      h("dl.kv",
        h("dt", "On the map"), h("dd.incident-map", places.length ? places.flatMap((a, k) => [k ? ", " : "", h("a", { href: "#/map?asset=" + encodeURIComponent(a) }, a)]) : "—"),
        h("dt", "Proofs"), h("dd.incident-proofs", (i.alerts || []).length ? (i.alerts || []).flatMap((a, k) => [k ? ", " : "",
          h("a", { href: `/api/v1/ledger/alerts/${encodeURIComponent(a)}/proof`, download: `alert-${a}-proof.json`, title: `The proof bundle of ${a} (once its steps are anchored)` }, a)]) : "—")),
      timeline);
  }
  async function loadTimeline(box, i, assets) {
    const from = Date.parse(i.first_seen) - AROUND_MS, to = Date.parse(i.last_seen) + AROUND_MS;
    const got = [];
    try {
      await Promise.all(assets.map((a) => pages(`/assets/${encodeURIComponent(a)}/events`, (page) => got.push(...page), { limit: 500, max: 2000 })
        .catch((e) => { if (e.status !== 404) throw e; })));
    } catch (e) {
      fill(box, errorBox(e));
      return;
    }
    const near = got.filter((e) => { const t = Date.parse(e.time); return t >= from && t <= to; }).sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
    fill(box, near.length ? h("ol.timeline", near.slice(-TIMELINE_MAX).map((e) => h("li", { dataset: { event: e.id } },
      h("time", { datetime: e.time }, fmtTime(e.time)), " ", h("a", { href: "#/asset/" + encodeURIComponent(e.asset) }, e.asset), " ",
      h("strong", label(e.type)), h("span.muted", ` · rev ${e.revision} · event ${e.id}`)))) :
      h("p.muted", `No twin events of ${assets.join(", ")} within 15 minutes of the incident.`));
  }
  function closeBtn() {
    return h("button", { type: "button", "aria-label": "Close the incident", onclick: closeIncident }, "Close");
  }
  function closeIncident() {
    st.open = "";
    delete detail.dataset.id;
    detail.hidden = true;
    root.classList.remove("with-detail");
    draw();
  }
  detail.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeIncident(); });

  drawHead();
  try {
    await pages("/incidents", (got) => { for (const i of got) incidents.set(i.id, i); }, { limit: 1000, max: MAX });
    drawCauses();
    draw();
    if (st.open) await openIncident(st.open);
    table.dataset.loaded = "true";
  } catch (e) {
    fill(notes, e.missing ? unavailable("Incidents", e) : errorBox(e));
  }
  root.dataset.ready = "true";

  // Live: an alert notification names its incident; that incident is read again.
  const dirty = new Set();
  let timer = 0;
  const unsub = subscribe((name, data, path) => {
    if (path !== "/alerts/stream" || !data || !data.alert || typeof data.alert !== "object" || !data.alert.incident) return;
    dirty.add(data.alert.incident);
    if (!timer) timer = setTimeout(async () => {
      timer = 0;
      const ids = [...dirty];
      dirty.clear();
      await Promise.all(ids.map((id) => refresh(id).catch(() => null)));
      drawCauses();
      draw();
      if (st.open && ids.includes(st.open) && !detail.contains(document.activeElement)) openIncident(st.open);
    }, 500);
  });
  return () => { unsub(); clearTimeout(timer); };
}
