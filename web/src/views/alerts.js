// Alerts: the security team's inbox. Every alert (newest 20,000) is loaded
// page by page into compact rows; filtering and sorting run in memory and
// the table draws only the rows in view, so 10,000 alerts stay fast. 50
// rows fit on a 1080p screen. Keyboard: j/k or arrows move, x or space
// selects, Enter opens, a acknowledges the selection (or the current row),
// / searches, Escape closes. The filters, the sort and the open alert live in
// the URL (#/alerts?state=open&sev=warning&sort=-age&open=AL-7), so a link
// opens the same view. Alerts arrive live over /alerts/stream.
import { api, pages, subscribe, can } from "../api.js";
import { h, clear, fmtTime, ago, label, pill, unavailable, errorBox, toast, fill, setViewParams } from "../dom.js";

const ROW_H = 18; // px; matches table.inbox tr height in style.css
const OVERSCAN = 12;
const MAX_ALERTS = 20000;
const RANK = { info: 1, warning: 2, critical: 3 };
const perf = (window.__tcPerf = window.__tcPerf || {});

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

// historyLine is one step of an alert's or incident's history: a move to
// a state, an assignment or a comment, with who and when.
export function historyLine(x) {
  const what = x.step === "assigned" ? (x.assignee ? `assigned to ${x.assignee}` : "unassigned")
    : x.step === "commented" ? "commented" : label(x.state || x.action || "");
  return `${fmtTime(x.at || x.time)} ${x.by || ""}: ${what}${x.comment ? " — " + x.comment : ""}`;
}

// alertList draws alerts as cards with their actions; done(alert) is
// called with the API's answer after one.
export function alertList(list, done) {
  const ul = h("ul.alerts");
  for (const al of list) {
    const state = stateOf(al);
    const comment = h("input", { type: "text", name: "comment", "aria-label": `Comment on alert ${al.id}`, placeholder: "Comment" });
    const act = (verb) => h("button", {
      type: "button", dataset: { action: verb },
      onclick: async (ev) => {
        ev.target.disabled = true;
        try {
          const got = await api(`/alerts/${encodeURIComponent(al.id)}/${verb}`, { method: "POST", body: { comment: comment.value } });
          toast(`Alert ${al.id} ${{ ack: "acknowledged", resolve: "resolved", comment: "commented" }[verb]}.`);
          done(got);
        } catch (e) {
          toast(e.status === 403 ? `Not allowed: ${e.message}` : `Failed: ${e.message}`);
          ev.target.disabled = false;
        }
      },
    }, { ack: "Acknowledge", resolve: "Resolve", comment: "Comment" }[verb]);
    const raised = al.opened || al.first_seen || al.time;
    const history = al.history || [];
    ul.append(h(`li.alert.sev-${al.severity || "info"}`, { dataset: { id: al.id, state, type: al.type } },
      h("div.alert-head", pill(al.severity || "info", "sev"), " ", h("strong", label(al.type)), " ", pill(state, "astatus"),
        al.count > 1 ? h("span.muted", ` ×${al.count}`) : null, h("span.muted", ` ${al.id}`),
        al.assignee ? h("span.assignee", ` · assigned to ${al.assignee}`) : null),
      al.summary ? h("p.alert-summary", al.summary) : null,
      h("div.muted", al.asset ? h("a", { href: "#/asset/" + encodeURIComponent(al.asset) }, al.asset) : null,
        al.site ? ` · site ${al.site}` : "",
        al.incident ? [" · ", h("a.incident-link", { href: "#/incidents?state=&open=" + encodeURIComponent(al.incident) }, `incident ${al.incident}`)] : "", ` · opened ${fmtTime(raised)} (${ago(raised)})`,
        al.last_seen ? ` · last seen ${ago(al.last_seen)}` : ""),
      evidence(al),
      history.length ? h("div.alert-history", h("span.sub", "History"), h("ul.history", history.map((x) => h("li", historyLine(x))))) : null,
      state === "resolved" ? null : can("alerts.ack")
        ? h("div.actions", comment, state === "open" ? act("ack") : null, act("resolve"), act("comment"))
        : h("p.muted.small", "Your role can read alerts but not acknowledge or resolve them.")));
  }
  return ul;
}

// toRow keeps what the table shows and sorts on.
function toRow(al) {
  const opened = al.first_seen || al.opened || ""; // age counts from the first finding
  const sev = al.severity || "info";
  return {
    id: al.id, sev, rank: RANK[sev] || 0, type: al.type || "", site: al.site || "", asset: al.asset || "", state: stateOf(al),
    opened, openedMs: Date.parse(opened) || 0, last: al.last_seen || "", count: al.count || 1, summary: al.summary || "",
    hay: [al.id, al.type, al.site, al.asset, al.summary, al.assignee].filter(Boolean).join(" ").toLowerCase(), alert: al,
  };
}

const columns = [
  ["sel", ""], ["sev", "Severity"], ["type", "Type"], ["site", "Site"], ["asset", "Asset"], ["state", "State"],
  ["age", "Age"], ["last", "Last seen"], ["count", "×"], ["summary", "Summary"],
];
const sortable = new Set(["sev", "type", "site", "asset", "state", "age", "last", "count"]);

// The view's state, read from and written to the URL.
function readParams(params) {
  const p = params || new URLSearchParams();
  const sort = p.get("sort") || "-sev";
  return {
    f: { state: p.has("state") ? p.get("state") : "open", sev: p.get("sev") || "", type: p.get("type") || "", site: p.get("site") || "", q: p.get("q") || "" },
    sort: { key: sort.replace(/^-/, ""), dir: sort.startsWith("-") ? -1 : 1 },
    open: p.get("open") || "",
  };
}

function writeParams(st) {
  const p = new URLSearchParams();
  const f = st.f;
  if (f.state !== "open") p.set("state", f.state);
  for (const k of ["sev", "type", "site", "q"]) if (f[k]) p.set(k, f[k]);
  const sort = (st.sort.dir < 0 ? "-" : "") + st.sort.key;
  if (sort !== "-sev") p.set("sort", sort);
  if (st.open) p.set("open", st.open);
  setViewParams("/alerts", p);
}

function cmp(key, dir) {
  const by = {
    sev: (r) => r.rank, age: (r) => r.openedMs, last: (r) => r.last, count: (r) => r.count,
    type: (r) => r.type, site: (r) => r.site, asset: (r) => r.asset, state: (r) => r.state,
  }[key] || ((r) => r.rank);
  return (a, b) => {
    const x = by(a), y = by(b);
    return dir * (x < y ? -1 : x > y ? 1 : 0) || b.openedMs - a.openedMs || (a.id < b.id ? 1 : -1);
  };
}

export async function alertsView(root, params) {
  const st = readParams(params);
  const rows = new Map(); // id -> row
  const selected = new Set();
  let shown = [];
  let sorted = null; // every row in sortedBy's order; null after a change
  let sortedBy = "";
  let cursor = 0; // index into shown
  let last = { start: -1, end: -1 };
  const mayAck = can("alerts.ack");

  // Filters: a select per field of st.f (fixed choices, or the values the
  // alerts hold, counted, when choices is null).
  const choices = new Map(); // select -> fixed choices
  const sel = (id, key, text, fixed) => {
    const s = h("select", { id: "alerts-" + id, name: id, onchange: () => { st.f[key] = s.value; apply(); } });
    if (fixed) choices.set(s, fixed);
    return [s, h("div.field", h("label", { for: "alerts-" + id }, text), s)];
  };
  const [stateSel, stateField] = sel("state", "state", "State", [["", "all"], ["open", "open"], ["acknowledged", "acknowledged"], ["resolved", "resolved"], ["active", "open or acknowledged"]]);
  const [sevSel, sevField] = sel("severity", "sev", "Min. severity", [["", "all"], ["critical", "critical"], ["warning", "warning"], ["info", "info"]]);
  const [typeSel, typeField] = sel("type", "type", "Type", null);
  const [siteSel, siteField] = sel("site", "site", "Site", null);
  const search = h("input", { id: "alerts-q", type: "search", name: "q", value: st.f.q, placeholder: "asset, id, summary…" });
  search.addEventListener("input", () => { st.f.q = search.value; apply(); });
  const summary = h("span.summary", { "aria-live": "polite" });
  const comment = h("input", { type: "text", name: "bulk-comment", "aria-label": "Comment for the selected alerts", placeholder: "Comment" });
  const bulkBtn = h("button#alerts-bulk-ack", { type: "button", onclick: () => bulkAck() }, "Acknowledge selected");
  const bulk = mayAck ? h("div.bulk", h("span#alerts-selected", "0 selected"), comment, bulkBtn,
    h("button", { type: "button", onclick: () => { selected.clear(); drawAll(); } }, "Clear selection")) : null;

  const headRow = h("tr");
  const tbody = h("tbody");
  const table = h("table.vt.inbox", { "aria-label": "Alerts", "aria-rowcount": "0" }, h("thead", headRow), tbody);
  const scroller = h("div.vscroll.inbox-scroll", { tabindex: "0", role: "region", "aria-label": "Alert table: j/k move, x selects, Enter opens, a acknowledges" }, table);
  const detail = h("aside.alert-detail", { "aria-label": "Alert detail", hidden: true });
  const notes = h("div");
  root.append(h("div.inbox-head", h("h1", "Alerts"), summary, bulk),
    h("div.filters.dense", { role: "search" }, stateField, sevField, typeField, siteField,
      h("div.field.grow", h("label", { for: "alerts-q" }, "Search"), search),
      h("button", { type: "button", onclick: () => { st.f = readParams(null).f; search.value = ""; apply(); } }, "Clear filters")),
    notes, h("div.inbox-body", scroller, detail));

  function options(s, opts, cur) {
    clear(s);
    for (const [v, text] of opts) s.append(h("option", { value: v, selected: v === cur ? true : null }, text));
    s.value = cur;
  }
  function syncSelects() {
    options(stateSel, choices.get(stateSel), st.f.state);
    options(sevSel, choices.get(sevSel), st.f.sev);
    for (const [s, key] of [[typeSel, "type"], [siteSel, "site"]]) {
      const counts = new Map();
      for (const r of rows.values()) counts.set(r[key], (counts.get(r[key]) || 0) + 1);
      if (st.f[key] && !counts.has(st.f[key])) counts.set(st.f[key], 0);
      const opts = [["", "all"], ...[...counts.entries()].sort((a, b) => String(a[0]).localeCompare(String(b[0])))
        .map(([v, n]) => [v, `${label(v) || "(none)"} (${n})`])];
      options(s, opts, st.f[key]);
    }
  }

  function drawHead() {
    clear(headRow);
    for (const [key, text] of columns) {
      if (key === "sel") {
        headRow.append(h("th.col-sel", { scope: "col" }, mayAck ? h("input#alerts-all", {
          type: "checkbox", "aria-label": "Select every shown alert that is open",
          onchange: (ev) => { for (const r of shown) if (r.state === "open") ev.target.checked ? selected.add(r.id) : selected.delete(r.id); drawAll(); },
        }) : null));
        continue;
      }
      if (!sortable.has(key)) { headRow.append(h(`th.col-${key}`, { scope: "col" }, h("span.th", text))); continue; }
      const active = st.sort.key === key;
      headRow.append(h(`th.col-${key}`, { scope: "col", "aria-sort": active ? (st.sort.dir > 0 ? "ascending" : "descending") : "none" },
        h("button.sort", {
          type: "button", dataset: { sort: key },
          onclick: () => { st.sort = { key, dir: active ? -st.sort.dir : key === "sev" || key === "age" || key === "count" ? -1 : 1 }; drawHead(); apply(); },
        }, text, active ? (st.sort.dir > 0 ? " ▲" : " ▼") : "")));
    }
  }

  // apply filters and sorts the rows and redraws; it records how long that
  // took in window.__tcPerf.inboxFilterMs.
  function apply({ keep = false } = {}) {
    const t0 = performance.now();
    const f = st.f;
    const terms = f.q.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const min = RANK[f.sev] || 0;
    const curId = shown[cursor] && shown[cursor].id;
    const sortKey = st.sort.key + "/" + st.sort.dir;
    if (!sorted || sortedBy !== sortKey) { // every row, in the current order: a filter keeps it
      sorted = [...rows.values()].sort(cmp(st.sort.key, st.sort.dir));
      sortedBy = sortKey;
    }
    shown = [];
    for (const r of sorted) {
      if (f.state === "active" ? r.state === "resolved" : f.state && r.state !== f.state) continue;
      if (r.rank < min || (f.type && r.type !== f.type) || (f.site && r.site !== f.site)) continue;
      if (terms.length && !terms.every((t) => r.hay.includes(t))) continue;
      shown.push(r);
    }
    cursor = keep && curId ? Math.max(0, shown.findIndex((r) => r.id === curId)) : 0;
    for (const id of selected) { const r = rows.get(id); if (!r || r.state !== "open") selected.delete(id); }
    table.setAttribute("aria-rowcount", String(shown.length + 1));
    summary.textContent = `${shown.length.toLocaleString()} of ${rows.size.toLocaleString()} alerts`;
    writeParams(st);
    if (!keep) scroller.scrollTop = 0;
    drawAll();
    perf.inboxFilterMs = performance.now() - t0;
  }

  function cell(key, r) {
    switch (key) {
      case "sel": return h("td.col-sel", mayAck && r.state === "open" ? h("input", {
        type: "checkbox", "aria-label": `Select ${r.id}`, checked: selected.has(r.id) ? true : null,
        onclick: (ev) => { ev.stopPropagation(); ev.target.checked ? selected.add(r.id) : selected.delete(r.id); drawBulk(); },
      }) : null);
      case "sev": return h("td.col-sev", pill(r.sev, "sev"));
      case "type": return h("td.col-type", { title: r.type }, label(r.type));
      case "site": return h("td.col-site", r.site || "—");
      case "asset": return h("td.col-asset", { title: r.asset }, r.asset ? h("a", { href: "#/asset/" + encodeURIComponent(r.asset), onclick: (ev) => ev.stopPropagation() }, r.asset) : "—");
      case "state": return h("td.col-state", pill(r.state, "astatus"));
      case "age": return h("td.col-age", { title: fmtTime(r.opened) }, ago(r.opened));
      case "last": return h("td.col-last", { title: fmtTime(r.last) }, r.last ? ago(r.last) : "—");
      case "count": return h("td.col-count.num", String(r.count));
      default: return h("td.col-summary", { title: r.summary }, r.summary);
    }
  }

  function drawRows(force) {
    const top = scroller.scrollTop;
    const height = scroller.clientHeight || 600;
    const start = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const end = Math.min(shown.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    if (!force && start === last.start && end === last.end) return;
    last = { start, end };
    const frag = document.createDocumentFragment();
    frag.append(h("tr.spacer", { "aria-hidden": "true", style: `height:${start * ROW_H}px` }));
    for (let i = start; i < end; i++) {
      const r = shown[i];
      frag.append(h(`tr.sev-${r.sev}${i === cursor ? ".cursor" : ""}`, {
        "aria-rowindex": String(i + 2), "aria-selected": String(selected.has(r.id)), dataset: { id: r.id, state: r.state, type: r.type },
        onclick: () => { cursor = i; openAlert(r.id); },
      }, columns.map(([k]) => cell(k, r))));
    }
    frag.append(h("tr.spacer", { "aria-hidden": "true", style: `height:${(shown.length - end) * ROW_H}px` }));
    fill(tbody, frag);
  }

  function drawBulk() {
    if (!bulk) return;
    bulk.querySelector("#alerts-selected").textContent = `${selected.size} selected`;
    bulkBtn.disabled = selected.size === 0;
  }
  function drawAll() { drawRows(true); drawBulk(); }

  // Detail: the open alert as a card with its evidence, history and actions.
  function openAlert(id, fetchFull = true) {
    st.open = id;
    writeParams(st);
    const r = rows.get(id);
    detail.hidden = false;
    root.classList.add("with-detail");
    const done = (got) => { upsert(got); apply({ keep: true }); openAlert(got.id, false); };
    const typed = detail.querySelector("input[name=comment]"); // a comment being written survives a redraw
    const keep = typed && detail.querySelector(`li.alert[data-id="${CSS.escape(id)}"]`) ? typed.value : "";
    fill(detail, h("div.detail-head", h("h2", r ? `${label(r.type)} on ${r.asset || "—"}` : id),
      h("button", { type: "button", "aria-label": "Close the alert", onclick: closeAlert }, "Close")),
    r ? alertList([r.alert], done) : h("p.muted", `Alert ${id} is not in the inbox.`));
    const input = detail.querySelector("input[name=comment]");
    if (input && keep) input.value = keep;
    drawRows(true);
    if (r && fetchFull) {
      api("/alerts/" + encodeURIComponent(id)).then((full) => { // the live copy may be older
        if (st.open === id && full && !detail.contains(document.activeElement)) { upsert(full); openAlert(id, false); }
      }).catch(() => { /* the card from the list stays */ });
    }
  }
  function closeAlert() {
    st.open = "";
    writeParams(st);
    detail.hidden = true;
    root.classList.remove("with-detail");
    scroller.focus();
  }

  function upsert(al) {
    if (!al || !al.id) return;
    rows.set(al.id, toRow(al));
    sorted = null;
  }

  async function bulkAck() {
    const ids = [...selected];
    if (!ids.length) return;
    bulkBtn.disabled = true;
    let ok = 0;
    const failed = [];
    const queue = ids.slice();
    await Promise.all(Array.from({ length: Math.min(6, queue.length) }, async () => {
      for (let id = queue.shift(); id; id = queue.shift()) {
        try {
          upsert(await api(`/alerts/${encodeURIComponent(id)}/ack`, { method: "POST", body: { comment: comment.value } }));
          ok++;
        } catch (e) {
          failed.push(`${id}: ${e.message}`);
        }
      }
    }));
    selected.clear();
    comment.value = "";
    toast(`${ok} alert${ok === 1 ? "" : "s"} acknowledged${failed.length ? `; ${failed.length} failed (${failed[0]})` : ""}.`);
    apply({ keep: true });
  }

  function moveTo(i) {
    if (!shown.length) return;
    cursor = Math.max(0, Math.min(shown.length - 1, i));
    const top = cursor * ROW_H;
    const head = table.tHead ? table.tHead.offsetHeight : 0;
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    else if (top + ROW_H + head > scroller.scrollTop + scroller.clientHeight) scroller.scrollTop = top + ROW_H + head - scroller.clientHeight;
    drawRows(true);
  }

  scroller.addEventListener("keydown", (ev) => {
    if (ev.target !== scroller || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const page = Math.max(1, Math.floor(scroller.clientHeight / ROW_H) - 2);
    const r = shown[cursor];
    const keys = {
      ArrowDown: () => moveTo(cursor + 1), j: () => moveTo(cursor + 1),
      ArrowUp: () => moveTo(cursor - 1), k: () => moveTo(cursor - 1),
      PageDown: () => moveTo(cursor + page), PageUp: () => moveTo(cursor - page),
      Home: () => moveTo(0), End: () => moveTo(shown.length - 1),
      Enter: () => r && openAlert(r.id), o: () => r && openAlert(r.id),
      x: () => toggle(r), " ": () => toggle(r),
      a: () => { if (mayAck) { if (!selected.size && r && r.state === "open") selected.add(r.id); bulkAck(); } },
      Escape: () => { if (!detail.hidden) closeAlert(); else { selected.clear(); drawAll(); } },
      "/": () => search.focus(),
    };
    const f = keys[ev.key];
    if (!f) return;
    ev.preventDefault();
    f();
  });
  function toggle(r) {
    if (!r || !mayAck || r.state !== "open") return;
    if (selected.has(r.id)) selected.delete(r.id); else selected.add(r.id);
    drawAll();
  }
  detail.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeAlert(); });

  let raf = 0;
  scroller.addEventListener("scroll", () => {
    if (!raf) raf = requestAnimationFrame(() => { raf = 0; drawRows(); });
  });
  // The table takes the rest of the window, so 50 rows fit at 1080p.
  const fit = () => {
    const top = scroller.getBoundingClientRect().top + window.scrollY;
    scroller.style.height = `${Math.max(12 * ROW_H, window.innerHeight - top - 8)}px`;
    drawRows(true);
  };
  window.addEventListener("resize", fit);

  drawHead();
  syncSelects();
  const t0 = performance.now();
  let loaded = false;
  async function load() {
    const fresh = new Map();
    let first = true;
    await pages("/alerts", (got) => {
      for (const al of got) fresh.set(al.id, al);
      if (first && !loaded) {
        first = false;
        for (const al of got) upsert(al);
        apply({ keep: true });
        perf.inboxFirstRowsAt = performance.now();
      }
    }, { limit: 1000, max: MAX_ALERTS });
    rows.clear();
    sorted = null;
    for (const al of fresh.values()) upsert(al);
    loaded = true;
  }
  try {
    fit();
    await load();
    syncSelects();
    apply({ keep: true });
    fit();
    perf.inboxAlerts = rows.size;
    perf.inboxInteractiveAt = performance.now();
    perf.inboxLoadMs = performance.now() - t0;
    if (st.open) openAlert(st.open);
    scroller.dataset.loaded = "true";
  } catch (e) {
    fill(notes, e.missing ? unavailable("The alerts inbox", e) : errorBox(e));
    summary.textContent = "";
  }
  root.dataset.ready = "true";

  // Live: a notification carries the whole alert; a resync reloads.
  let timer = 0;
  const redraw = () => { timer = 0; syncSelects(); apply({ keep: true }); };
  const unsub = subscribe((name, data, path) => {
    // Only the alert stream's notifications carry whole alerts.
    if (path !== "/alerts/stream" || !data || typeof data.alert !== "object" || !data.alert || !data.alert.id) return;
    upsert(data.alert);
    if (st.open === data.alert.id && !detail.contains(document.activeElement)) openAlert(data.alert.id, false);
    if (!timer) timer = setTimeout(redraw, 250);
  });
  scroller.focus({ preventScroll: true });
  return () => { unsub(); clearTimeout(timer); window.removeEventListener("resize", fit); };
}
