// Small DOM helpers: an element builder and formatting.

// h("div.card#x", {onclick}, children...) builds an element. Attributes
// starting with "on" become listeners; class and id can ride on the tag.
export function h(tag, attrs, ...children) {
  const [name, ...rest] = tag.split(/(?=[.#])/);
  const el = document.createElement(name || "div");
  for (const r of rest) {
    if (r[0] === ".") el.classList.add(r.slice(1));
    else el.id = r.slice(1);
  }
  if (attrs !== undefined && attrs !== null && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

// fill replaces el's children, skipping null, undefined and false as h does
// (Element.append would print them).
export function fill(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function fmtTime(t) {
  if (!t || t.startsWith("0001-")) return "—";
  const d = new Date(t);
  if (isNaN(d)) return t;
  return d.toISOString().replace("T", " ").slice(0, 19) + "Z";
}

export function ago(t) {
  if (!t || t.startsWith("0001-")) return "never";
  const s = (Date.now() - new Date(t).getTime()) / 1000;
  if (s < 0) return "just now";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function label(s) {
  return String(s || "").replace(/_/g, " ");
}

// pill shows a status or health word with a colour class of its own.
export function pill(word, kind = "") {
  const w = word || "unknown";
  return h(`span.pill.${kind}${kind ? "-" : ""}${String(w).replace(/[^a-z0-9_]/gi, "")}`, label(w));
}

// unavailable is the plain notice for a view whose data the service does
// not provide yet.
export function unavailable(what, err) {
  const why = err && err.status ? ` (the service answered ${err.status}${err.message ? ": " + err.message : ""})` : "";
  return h("div.notice", { role: "note" },
    h("strong", `${what} — not available yet.`),
    ` This twin-service does not provide it${why}. The view fills in once that part of the service is running.`);
}

export function errorBox(err) {
  return h("div.notice.error", { role: "alert" }, `Error: ${err.message || err}`);
}

let toastTimer = 0;
export function toast(msg) {
  const t = document.getElementById("toast");
  if (!t) return;
  t.textContent = msg;
  t.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove("show"), 4000);
}

// field builds a labelled form control.
export function field(text, control) {
  const id = control.id || "f-" + Math.random().toString(36).slice(2, 9);
  control.id = id;
  return h("div.field", h("label", { for: id }, text), control);
}

export function select(name, options, value, onchange) {
  return h("select", { name, onchange },
    options.map(([v, text]) => h("option", { value: v, selected: v === value ? true : null }, text)));
}

export function dl(pairs) {
  return h("dl.kv", pairs.filter(([, v]) => v !== undefined && v !== null && v !== "").flatMap(([k, v]) => [h("dt", k), h("dd", v)]));
}

// copyButton copies text to the clipboard (the page is served from the
// service's own origin; without the Clipboard API it falls back to a
// selection copy) and says so in a toast.
export function copyButton(text, what = "value") {
  return h("button.copy", {
    type: "button", title: `Copy the ${what}`, "aria-label": `Copy the ${what}`, dataset: { copy: text },
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(text);
      } catch {
        const ta = h("textarea", { readonly: true, style: "position:fixed;left:-9999px" }, text);
        document.body.append(ta);
        ta.select();
        const ok = document.execCommand("copy");
        ta.remove();
        if (!ok) { toast(`Could not copy; select the ${what} by hand.`); return; }
      }
      toast(`Copied the ${what}.`);
    },
  }, "Copy");
}

// hashValue shows a long hex value shortened, with its whole text on hover
// and a copy button.
export function hashValue(v, what = "hash") {
  if (v === undefined || v === null || v === "") return "—";
  const s = String(v);
  return h("span.hashval", h("code.hash", { title: s }, s.length > 24 ? s.slice(0, 16) + "…" + s.slice(-6) : s), " ", copyButton(s, what));
}

// setViewParams records a view's state (filters, sort, the open item) in the
// address without a new history entry, and only while the address still
// names that view: a live update that redraws a view the user is leaving
// (a link followed, a hash typed) must not pull the address back to it.
export function setViewParams(path, params) {
  if (location.hash.replace(/^#/, "").split("?")[0] !== path) return;
  const qs = params.toString();
  history.replaceState(null, "", "#" + path + (qs ? "?" + qs : ""));
}
