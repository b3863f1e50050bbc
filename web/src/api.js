// The API client: JSON over fetch with the session cookie and CSRF header,
// the API's error shape, cursor paging, and one shared SSE connection.

export const session = { me: null };

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  // missing is true when the route or the part behind it is not there yet
  // (404 "no route ..." from the router, 501, or 503 "unavailable").
  get missing() {
    return this.status === 404 && (this.code === "route" || /^no route/.test(this.message)) || this.status === 501 || this.status === 503;
  }
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(f) { onUnauthorized = f; }

export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && session.me && session.me.csrf_token) headers["X-CSRF-Token"] = session.me.csrf_token;
  let res;
  try {
    res = await fetch("/api/v1" + path, {
      method, headers, signal, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "network", "the service did not answer: " + e.message);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const err = data && data.error;
    // A JSON error is the API speaking; anything else on 404 is the router
    // saying the route does not exist (yet).
    const code = err ? err.code : res.status === 404 ? "route" : "http";
    const e = new ApiError(res.status, code, err ? err.message : `${res.status} ${res.statusText}`);
    if (res.status === 401 && !path.startsWith("/auth/login")) onUnauthorized(e);
    throw e;
  }
  return data;
}

// apiText fetches a GET route's body as text (for proof bundles, whose
// exact bytes matter).
export async function apiText(path) {
  const res = await fetch("/api/v1" + path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  const text = await res.text();
  if (!res.ok) {
    let err = null;
    try { err = JSON.parse(text).error; } catch { /* not JSON */ }
    if (res.status === 401) onUnauthorized();
    throw new ApiError(res.status, err ? err.code : res.status === 404 ? "route" : "http", err ? err.message : `${res.status} ${res.statusText}`);
  }
  return text;
}

// items reads a list answer: {"items": [...], "next_cursor": "..."} or a
// bare array.
export function items(data) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data.items)) return data.items;
  return [];
}

// pages walks a cursor-paged list, calling onPage(items) for each page.
export async function pages(path, onPage, { limit = 1000, signal, max = Infinity } = {}) {
  let cursor = "";
  let n = 0;
  const sep = path.includes("?") ? "&" : "?";
  for (;;) {
    const data = await api(`${path}${sep}limit=${limit}${cursor ? "&cursor=" + encodeURIComponent(cursor) : ""}`, { signal });
    const got = items(data);
    n += got.length;
    onPage(got);
    cursor = data && data.next_cursor;
    if (!cursor || got.length === 0 || n >= max) return n;
  }
}

export function qs(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
  const s = p.toString();
  return s ? "?" + s : "";
}

// The live streams: one EventSource per stream path for the whole page,
// fanned out to listeners. A listener gets (eventName, data, path). The
// twin stream (/stream) is the core's; alerts arrive on /alerts/stream
// where the detectors' part provides it.
const STREAMS = ["/stream", "/alerts/stream"];
const listeners = new Set();
const sources = new Map(); // path -> EventSource
const states = new Map(); // path -> state
const stateListeners = new Set();

function setState(path, s) {
  states.set(path, s);
  for (const f of stateListeners) f(streamState());
}

// streamState is the twin stream's state: live, connecting, reconnecting, closed.
export function streamState() { return states.get("/stream") || "closed"; }
export function onStreamState(f) { stateListeners.add(f); return () => stateListeners.delete(f); }

export function subscribe(f) {
  listeners.add(f);
  openStream();
  return () => listeners.delete(f);
}

const knownEvents = ["message", "twin", "resync", "alert", "notification", "opened", "escalated", "acknowledged", "resolved",
  "severity_raised", "workorder", "gateway", "anchor"];

export function openStream() {
  if (!session.me) return;
  for (const path of STREAMS) {
    if (sources.has(path)) continue;
    const src = new EventSource("/api/v1" + path, { withCredentials: true });
    sources.set(path, src);
    setState(path, "connecting");
    src.onopen = () => setState(path, "live");
    src.onerror = () => setState(path, src.readyState === EventSource.CLOSED ? "closed" : "reconnecting");
    const dispatch = (name) => (ev) => {
      let data = ev.data;
      try { data = JSON.parse(ev.data); } catch { /* plain text */ }
      for (const f of listeners) {
        try { f(name, data, path); } catch (e) { console.error("stream listener", e); }
      }
    };
    for (const name of knownEvents) src.addEventListener(name, dispatch(name));
  }
}

export function closeStream() {
  for (const [path, src] of sources) { src.close(); setState(path, "closed"); }
  sources.clear();
}

// can reports whether the signed-in user may take an action (see
// internal/httpapi/auth.Policy; the API enforces the same table).
export function can(action) {
  return !!(session.me && session.me.actions && session.me.actions.includes(action));
}
