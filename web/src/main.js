// The dashboard: a hash router over the views, sign-in, and the live badge.
import { api, session, setUnauthorizedHandler, openStream, closeStream, onStreamState, subscribe, ApiError, can } from "./api.js";
import { h, clear, field, toast, label } from "./dom.js";
import { fleetView } from "./views/fleet.js";
import { assetView } from "./views/asset.js";
import { mapView } from "./views/map.js";
import { alertsView } from "./views/alerts.js";
import { incidentsView } from "./views/incidents.js";
import { workOrdersView } from "./views/workorders.js";
import { gatewaysView } from "./views/gateways.js";
import { gatewayView } from "./views/gateway.js";
import { provenanceView } from "./views/provenance.js";
import { tokensView } from "./views/tokens.js";

const routes = [
  [/^\/fleet$/, fleetView, "Fleet"],
  [/^\/asset\/(.+)$/, assetView, "Asset"],
  [/^\/map$/, mapView, "Map"],
  [/^\/alerts$/, alertsView, "Alerts"],
  [/^\/incidents$/, incidentsView, "Incidents"],
  [/^\/workorders$/, workOrdersView, "Work orders"],
  [/^\/gateways$/, gatewaysView, "Gateways"],
  [/^\/gateway\/(.+)$/, gatewayView, "Gateway"],
  [/^\/provenance$/, provenanceView, "Provenance"],
  [/^\/settings\/tokens$/, tokensView, "API tokens"],
];

const view = document.getElementById("view");
let teardown = null;
let unauthorized = false;
let routed = false; // true after the first view: later route changes move focus
let generation = 0; // counts views shown; a view that finishes loading late checks it

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/fleet";
  const [path, query = ""] = raw.split("?");
  return { path, params: new URLSearchParams(query) };
}

async function render() {
  document.body.classList.toggle("signed-out", !session.me);
  if (teardown) { try { teardown(); } catch (e) { console.error(e); } teardown = null; }
  if (!session.me) { generation++; return loginView(); }
  const { path, params } = parseHash();
  const match = routes.find(([re]) => re.test(path));
  if (!match) { location.hash = "#/fleet"; return; }
  const [re, fn, title] = match;
  const args = path.match(re).slice(1).map(decodeURIComponent);
  document.title = `${title} · twinchain`;
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.getAttribute("href") === "#" + path) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  clear(view);
  delete view.dataset.ready;
  view.dataset.view = title.toLowerCase().replace(/\s/g, "");
  if (routed) view.focus({ preventScroll: true }); // a keyboard user lands in the new view
  routed = true;
  const gen = ++generation;
  try {
    const td = (await fn(view, ...args, params)) || null;
    // A view left while it was still loading is torn down at once; the
    // view shown now keeps its own teardown.
    if (gen !== generation) { if (td) try { td(); } catch (e) { console.error(e); } return; }
    teardown = td;
  } catch (e) {
    if (gen !== generation) return;
    if (e instanceof ApiError && e.status === 401) return;
    console.error(e);
    view.append(h("div.notice.error", { role: "alert" }, `This view failed: ${e.message}`));
  }
}

const live = h("span.live", { title: "live updates", "aria-live": "off" }, "○ offline");
onStreamState((s) => {
  live.textContent = s === "live" ? "● live" : s === "closed" ? "○ offline" : "◌ " + s;
  live.dataset.state = s;
});

function whoBox() {
  const who = clear(document.getElementById("who"));
  document.getElementById("nav-tokens").hidden = !can("tokens.manage"); // admins only
  if (!session.me) return;
  who.append(live, h("span.user", `${session.me.user} (${session.me.role.replace(/_/g, " ")})`),
    h("button.link", { type: "button", onclick: signOut }, "Sign out"));
}

async function signOut() {
  try { await api("/auth/logout", { method: "POST" }); } catch { /* gone already */ }
  session.me = null;
  closeStream();
  whoBox();
  render();
}

function loginView() {
  document.title = "Sign in · twinchain";
  clear(view);
  delete view.dataset.ready;
  view.dataset.view = "login";
  const user = h("input", { name: "username", autocomplete: "username", required: true });
  const pass = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const msg = h("p.form-error", { role: "alert" });
  const form = h("form.login", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      msg.textContent = "";
      try {
        session.me = await api("/auth/login", { method: "POST", body: { username: user.value, password: pass.value } });
        unauthorized = false;
        started();
      } catch (e) {
        msg.textContent = e.status === 401 ? "Wrong user name or password." : `Sign-in failed: ${e.message}`;
        pass.select();
      }
    },
  },
  h("h1", "Sign in to twinchain"),
  unauthorized ? h("p.muted", "Your session ended; sign in again.") : null,
  field("User name", user), field("Password", pass), msg,
  h("button.primary", { type: "submit" }, "Sign in"));
  view.append(form);
  user.focus();
}

function started() {
  whoBox();
  openStream();
  render();
}

setUnauthorizedHandler(() => {
  if (!session.me) return;
  session.me = null;
  unauthorized = true;
  closeStream();
  whoBox();
  render();
});

// The alert badge in the navigation counts alerts opened since the inbox
// was last looked at; each alert raises at most one toast.
let fresh = 0;
const toasted = new Set(); // alert ids already announced
subscribe((name, data, path) => {
  // Only the alert stream's "opened" notifications count; twin events about
  // alerts (lifecycle steps) and later notifications do not.
  if (path !== "/alerts/stream" || !data || data.event !== "opened" || !data.alert || typeof data.alert !== "object") return;
  const al = data.alert;
  if (toasted.has(al.id)) return;
  toasted.add(al.id);
  if (toasted.size > 5000) toasted.delete(toasted.values().next().value);
  if (location.hash.startsWith("#/alerts")) return;
  fresh++;
  const b = document.getElementById("alert-badge");
  b.hidden = false;
  b.textContent = String(fresh);
  b.setAttribute("aria-label", `${fresh} new alerts`);
  toast(`New alert: ${al.summary || label(al.type) || "see Alerts"}`);
});
window.addEventListener("hashchange", () => {
  closeMenu();
  if (location.hash.startsWith("#/alerts")) {
    fresh = 0;
    document.getElementById("alert-badge").hidden = true;
  }
  render();
});

const toggle = document.querySelector(".menu-toggle");
toggle.addEventListener("click", () => {
  const open = toggle.getAttribute("aria-expanded") !== "true";
  toggle.setAttribute("aria-expanded", String(open));
  document.getElementById("nav").classList.toggle("open", open);
});
function closeMenu() {
  toggle.setAttribute("aria-expanded", "false");
  document.getElementById("nav").classList.remove("open");
}
document.getElementById("nav").addEventListener("click", closeMenu);

(async () => {
  try {
    session.me = await api("/auth/me");
    started();
  } catch {
    session.me = null;
    render();
  }
})();
