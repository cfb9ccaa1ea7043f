// bulwark's web console: plain JavaScript on the JSON API (docs/admin.md), no
// framework and no build step. Everything from the server is put in the page as text
// (textContent), never as HTML. Changes carry the session's CSRF token.
"use strict";

const state = { csrf: "", name: "", readOnly: false };
const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function say(text, bad) {
  const m = $("#message");
  m.textContent = text || "";
  m.className = bad ? "error" : "";
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  const r = await fetch(path, { method, headers, credentials: "same-origin",
                                body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  if (text && (r.headers.get("Content-Type") || "").startsWith("application/json")) data = JSON.parse(text);
  if (r.status === 401 && path !== "/api/v1/login") { showLogin(); throw new Error("please log in"); }
  if (!r.ok) throw new Error((data && data.error) || r.status + " " + r.statusText);
  return data;
}

// A change: runs it, says what happened, redraws the view.
async function change(what, fn) {
  try { await fn(); say(what); await route(); } catch (e) { say(e.message, true); }
}

function table(headers, rows) {
  return el("table", {}, el("tr", {}, headers.map((h) => el("th", {}, h))),
            rows.map((r) => el("tr", {}, r.map((c) => (c instanceof Node ? el("td", {}, c) : el("td", {}, c))))));
}

function form(fields, label, onsubmit) {
  const f = el("form", { class: "inline" },
               fields.map(([name, text, type]) => el("label", {}, text, el("input", { name, type: type || "text", required: true }))),
               el("button", { type: "submit", disabled: state.readOnly }, label));
  f.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const values = Object.fromEntries(new FormData(f).entries());
    onsubmit(values);
  });
  return f;
}

function removeButton(what, path) {
  return el("button", { class: "quiet", type: "button", disabled: state.readOnly,
                        on: { click: () => change(what + " removed", () => api("DELETE", path)) } }, "Remove");
}

function chart(perHour) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 480 120");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "messages accepted and refused per hour, last 24 hours");
  const max = Math.max(1, ...perHour.map((h) => Math.max(h.accepted, h.refused)));
  perHour.forEach((h, i) => {
    for (const [kind, off] of [["accepted", 0], ["refused", 9]]) {
      const v = h[kind], height = (v / max) * 100;
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("class", kind);
      r.setAttribute("x", String(i * 20 + off));
      r.setAttribute("y", String(105 - height));
      r.setAttribute("width", "8");
      r.setAttribute("height", String(height));
      const t = document.createElementNS(ns, "title");
      t.textContent = `${24 - i}h ago: ${v} ${kind}`;
      r.append(t);
      svg.append(r);
    }
  });
  const label = document.createElementNS(ns, "text");
  label.setAttribute("x", "0");
  label.setAttribute("y", "118");
  label.textContent = "24 hours ago";
  const now = document.createElementNS(ns, "text");
  now.setAttribute("x", "440");
  now.setAttribute("y", "118");
  now.textContent = "this hour";
  svg.append(label, now);
  return svg;
}

const views = {
  async dashboard() {
    const [st, sec, cl] = await Promise.all([api("GET", "/api/v1/status"), api("GET", "/api/v1/logs/security?limit=10"),
                                             api("GET", "/api/v1/cluster").catch(() => ({ cluster: true, unreachable: true }))]);
    const cards = [["Uptime", Math.round(st.uptime_seconds / 60) + " min"], ["Queue", st.queue.messages],
                   ["Accepted (24 h)", st.messages.accepted_24h], ["Refused (24 h)", st.messages.refused_24h],
                   ["Domains", st.domains], ["Users", st.users]];
    return [el("h2", {}, "Dashboard: " + st.hostname),
            el("div", { class: "cards" }, cards.map(([k, v]) => el("div", { class: "card" }, k, el("b", {}, v)))),
            el("h3", {}, "Traffic per hour"),
            el("p", { class: "legend" }, el("span", { class: "a" }, "■ accepted"), el("span", { class: "r" }, "■ refused")),
            chart(st.messages.per_hour),
            el("h3", {}, "Connections open now"),
            table(["Service", "Connections"], Object.entries(st.connections)),
            ...(cl.cluster ? [el("h3", {}, "Cluster" + (cl.node ? ": this is node " + cl.node : "")),
                              cl.unreachable ? el("p", {}, "PostgreSQL cannot be reached from this node.")
                                : table(["Node", "State", "Version", "Address", "Sessions", "Queued", "Last heartbeat"],
                                        cl.nodes.map((n) => [n.name, n.state, n.version, n.address, n.sessions, n.queued,
                                                             Math.round(n.seconds_since_heartbeat) + " s ago"]))] : []),
            el("h3", {}, "Recent security events"),
            table(["Line"], sec.lines.map((l) => [el("span", { class: "mono" }, l)]))];
  },
  async domains() {
    const d = await api("GET", "/api/v1/domains");
    return [el("h2", {}, "Domains"),
            form([["name", "Domain"]], "Add domain", (v) => change("domain added", () => api("POST", "/api/v1/domains", { name: v.name }))),
            table(["Domain", "Anti-spoofing", ""], d.domains.map((x) => [x.name, x.anti_spoofing ? "on" : "off",
                  removeButton("domain", "/api/v1/domains/" + encodeURIComponent(x.name))]))];
  },
  async users() {
    const u = await api("GET", "/api/v1/users");
    return [el("h2", {}, "Users"),
            form([["address", "Address"], ["password", "Password", "password"]], "Add user",
                 (v) => change("user " + v.address + " added", () => api("POST", "/api/v1/users", { address: v.address, password: v.password }))),
            table(["Address", ""], u.users.map((x) => [x.address, removeButton("user", "/api/v1/users/" + encodeURIComponent(x.address))]))];
  },
  async aliases() {
    const a = await api("GET", "/api/v1/aliases");
    return [el("h2", {}, "Aliases"),
            form([["alias", "Alias"], ["target", "Delivers to"]], "Add alias",
                 (v) => change("alias added", () => api("POST", "/api/v1/aliases", { alias: v.alias, target: v.target }))),
            table(["Alias", "Target", ""], a.aliases.map((x) => [x.alias, x.target,
                  removeButton("alias", "/api/v1/aliases/" + encodeURIComponent(x.alias))]))];
  },
  async groups() {
    const g = await api("GET", "/api/v1/groups");
    return [el("h2", {}, "Groups"),
            form([["address", "Group address"], ["members", "Members (comma-separated)"]], "Add group",
                 (v) => change("group added", () => api("POST", "/api/v1/groups", { address: v.address,
                   members: v.members.split(",").map((s) => s.trim()).filter(Boolean) }))),
            table(["Group", "Members", ""], g.groups.map((x) => [x.address, x.members.join(", "),
                  removeButton("group", "/api/v1/groups/" + encodeURIComponent(x.address))]))];
  },
  async delegations() {
    const d = await api("GET", "/api/v1/delegations");
    return [el("h2", {}, "Delegations"),
            el("p", {}, "A user may send as an address it was delegated (SPEC 9)."),
            form([["owner", "Address"], ["user", "May be used by user"]], "Delegate",
                 (v) => change("delegation added", () => api("POST", "/api/v1/delegations", { owner: v.owner, user: v.user }))),
            table(["Address", "User", ""], d.delegations.map((x) => [x.owner, x.user,
                  removeButton("delegation", `/api/v1/delegations/${encodeURIComponent(x.owner)}/${encodeURIComponent(x.user)}`)]))];
  },
  async dkim() {
    const k = await api("GET", "/api/v1/dkim");
    const f = el("form", { class: "inline" },
                 el("label", {}, "Domain", el("input", { name: "domain", required: true })),
                 el("label", {}, "Selector (optional)", el("input", { name: "selector" })),
                 el("label", {}, "Algorithm", el("select", { name: "algorithm" }, el("option", { value: "rsa2048" }, "RSA-2048"),
                                                         el("option", { value: "ed25519" }, "Ed25519"))),
                 el("button", { type: "submit", disabled: state.readOnly }, "Make key"));
    const record = el("pre", {});
    f.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const v = Object.fromEntries(new FormData(f).entries());
      const body = { domain: v.domain, algorithm: v.algorithm };
      if (v.selector) body.selector = v.selector;
      try {
        const r = await api("POST", "/api/v1/dkim", body);
        await route();
        say("key made: publish this record in DNS");
        $("#view pre").textContent = r.record;
      } catch (e) { say(e.message, true); }
    });
    return [el("h2", {}, "DKIM keys"), f, record,
            table(["Domain", "Selector", "Algorithm", "Made", "DNS record", ""], k.keys.map((x) => [x.domain, x.selector, x.algorithm,
                  x.created, el("span", { class: "mono" }, x.record),
                  removeButton("key", `/api/v1/dkim/${encodeURIComponent(x.domain)}/${encodeURIComponent(x.selector)}`)]))];
  },
  async audit() {
    const a = await api("GET", "/api/v1/audit");
    return [el("h2", {}, "Security audit (" + a.findings.filter((f) => f.severity === "warning").length + " warnings)"),
            table(["Severity", "Finding"], a.findings.map((f) => [f.severity, f.text]))];
  },
  async queue() {
    const q = await api("GET", "/api/v1/queue");
    return [el("h2", {}, "Queue (" + q.messages.length + ")"),
            table(["Id", "From", "Recipients", "Arrived", "Attempts", ""], q.messages.map((m) => [
              el("span", { class: "mono" }, m.id), m.sender || "<>",
              (m.recipients || []).map((r) => `${r.address}: ${r.state}${r.reason ? " (" + r.reason + ")" : ""}`).join("; "),
              m.arrival || "", m.attempts ?? "",
              el("span", {}, el("button", { class: "quiet", type: "button", disabled: state.readOnly,
                                            on: { click: () => change("retry requested", () => api("POST", `/api/v1/queue/${m.id}/retry`)) } }, "Retry"),
                 " ", removeButton("message", "/api/v1/queue/" + m.id))]))];
  },
  async logs() {
    const params = new URLSearchParams(location.hash.split("?")[1] || "");
    const which = params.get("log") === "mail" ? "mail" : "security";
    const q = new URLSearchParams();
    for (const k of ["since", "ip", "address", "limit", "before", "skip"]) if (params.get(k)) q.set(k, params.get(k));
    const data = await api("GET", `/api/v1/logs/${which}?${q}`);
    // A full page: the API's `next` (before= and skip=) is the page of older lines.
    let older = [];
    if (data.next) {
      const p = new URLSearchParams(params);
      p.set("log", which);
      for (const [k, v] of new URLSearchParams(data.next)) p.set(k, v);
      older = [el("p", {}, el("a", { href: "#logs?" + p, id: "older" }, "Older lines"))];
    }
    const f = el("form", { class: "inline" },
                 el("label", {}, "Log", el("select", { name: "log" }, el("option", { value: "security", selected: which === "security" }, "security"),
                                                      el("option", { value: "mail", selected: which === "mail" }, "mail"))),
                 ["since", "ip", "address", "limit"].map((k) => el("label", {}, k, el("input", { name: k, value: params.get(k) || "" }))),
                 el("button", { type: "submit" }, "Show"));
    f.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const p = new URLSearchParams();
      for (const [k, v] of new FormData(f).entries()) if (v) p.set(k, v);
      location.hash = "logs?" + p;
    });
    return [el("h2", {}, "Logs: " + which), f, table(["Line (newest first)"], data.lines.map((l) => [el("span", { class: "mono" }, l)])),
            ...older];
  },
  async settings() {
    const s = await api("GET", "/api/v1/settings");
    // The seeds' screens: relay control, security options (limits), security policy,
    // delivery (and the reports' language). An empty field means the default.
    const sections = [
      ["relay", "Relay control", ["allow_ip_group", "allow_authenticated", "pop_before_smtp", "open"]],
      ["limits", "Security options", ["max_recipients", "max_message_size", "max_connections_per_ip", "max_messages_per_hour",
                                      "max_unknown_recipients", "harvest_block", "exempt_ip_group", "max_failed_commands"]],
      ["policy", "Security policy", ["mode", "insecure_auth_ip_group", "max_auth_failures", "auth_failure_delay", "anti_spoofing"]],
      ["delivery", "Delivery", ["mode", "relay_host", "relay_port", "retry_interval", "report_language"]],
    ];
    const groups = s.ip_groups || {};
    const out = [el("h2", {}, "Settings"), el("p", {}, "Only changed fields are saved; a cleared field goes back to its default."),
                 el("h3", {}, "IP groups"),
                 table(["Group", "Addresses", ""], Object.entries(groups).map(([g, list]) => [g, list.join(", "),
                   el("button", { class: "quiet", type: "button", disabled: state.readOnly,
                                  on: { click: () => change("IP group " + g + " removed", () => api("PATCH", "/api/v1/settings", { ip_groups: { [g]: null } })) } }, "Remove")])),
                 form([["group", "Group"], ["addresses", "Addresses, CIDR, ranges, @groups (comma-separated)"]], "Set IP group",
                      (v) => change("IP group " + v.group + " set", () => api("PATCH", "/api/v1/settings",
                        { ip_groups: { [v.group]: v.addresses.split(",").map((x) => x.trim()).filter(Boolean) } })))];
    for (const [sec, title, keys] of sections) {
      const cur = s[sec] || {};
      const f = el("form", {}, el("fieldset", {}, el("legend", {}, title),
        el("div", { class: "fields" }, keys.map((k) => el("label", {}, k,
          el("input", { name: k, "data-section": sec, value: cur[k] === undefined ? "" : String(cur[k]),
                        placeholder: cur[k] === undefined ? "default" : cur[k] === "" ? "\"\" (none)" : "" })))),
        el("button", { type: "submit", disabled: state.readOnly }, "Save " + title.toLowerCase())));
      f.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const patch = {};
        for (const [k, raw] of new FormData(f).entries()) {
          const v = raw.trim();
          const was = cur[k] === undefined ? "" : String(cur[k]);
          if (v === was) continue;  // only what was changed
          if (v === "") { patch[k] = null; continue; }  // cleared: back to the default
          patch[k] = v === "true" ? true : v === "false" ? false : /^-?\d+$/.test(v) && typeof cur[k] !== "string" ? Number(v) : v;
        }
        change(title + " saved", () => api("PATCH", "/api/v1/settings", { [sec]: patch }));
      });
      out.push(f);
    }
    return out;
  },
};

async function route() {
  const name = (location.hash.slice(1).split("?")[0]) || "dashboard";
  const view = views[name] ? name : "dashboard";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("current", a.getAttribute("href") === "#" + view);
  try {
    const parts = await views[view]();
    $("#view").replaceChildren(...parts);
  } catch (e) {
    say(e.message, true);
  }
}

function showLogin() {
  state.csrf = "";
  $("#nav").hidden = true;
  $("#view").replaceChildren();
  $("#login").hidden = false;
}

function loggedIn(s) {
  state.csrf = s.csrf;
  state.name = s.name;
  state.readOnly = s.read_only;
  $("#who").textContent = s.name + (s.read_only ? " (read-only)" : "");
  $("#login").hidden = true;
  $("#nav").hidden = false;
  route();
}

document.addEventListener("DOMContentLoaded", async () => {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const v = Object.fromEntries(new FormData(ev.target).entries());
    try {
      const s = await api("POST", "/api/v1/login", { name: v.name, password: v.password });
      ev.target.reset();
      say("");
      loggedIn(s);
    } catch (e) {
      say(e.message, true);
    }
  });
  $("#logout").addEventListener("click", async () => {
    try { await api("POST", "/api/v1/logout"); } catch (e) { /* already out */ }
    showLogin();
  });
  window.addEventListener("hashchange", () => { say(""); route(); });
  try {
    const s = await api("GET", "/api/v1/session");  // 200 {} when not logged in
    if (s && s.name && s.csrf) loggedIn(s);
    else showLogin();
  } catch (e) {
    showLogin();
    say(e.message, true);
  }
});
