// Keyswitch dashboard: polls the node's JSON API (the session cookie rides along) and redraws.
"use strict";
const ASSETS = JSON.parse(document.querySelector('meta[name="keyswitch-assets"]').content || "{}");
const POLL = 1000 * Number(document.querySelector('meta[name="keyswitch-poll"]').content || 3);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k == null ? "" : String(k)));
  return e;
}
function short(id) { id = String(id || ""); return id.length > 16 ? id.slice(0, 8) + "…" + id.slice(-6) : id; }
function idCell(id) { return el("span", {class: "mono", title: String(id || "")}, short(id)); }
function coin(asset, base) {
  const a = ASSETS[asset];
  if (!a || base == null) return String(base ?? "");
  const v = Number(base) / 10 ** a.decimals;
  return v.toLocaleString("en-US", {maximumFractionDigits: Math.min(a.decimals, 8)}) + " " + asset;
}
function usd(cents) { return cents == null ? "" : "$" + (Number(cents) / 100).toLocaleString("en-US", {minimumFractionDigits: 2, maximumFractionDigits: 2}); }
function age(seconds) {
  seconds = Math.max(0, Number(seconds) || 0);
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  if (seconds < 172800) return (seconds / 3600).toFixed(1) + " h";
  return (seconds / 86400).toFixed(1) + " d";
}
function when(epoch) { return epoch ? new Date(epoch * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : ""; }
function text(v) {
  if (v == null) return "";
  if (typeof v === "object") return Array.isArray(v) ? v.map(text).join(", ")
    : Object.entries(v).map(([k, x]) => k + "=" + text(x)).join(", ");
  return String(v);
}
function stateCell(s) {
  s = String(s || "");
  const cls = /done|complete|confirmed|ok|finished|accept/i.test(s) ? "ok"
    : /fail|abort|refus|reject|cheat|expired|error/i.test(s) ? "bad" : "wait";
  return el("span", {class: "state " + cls}, s);
}
function table(cols, rows, empty) {
  if (!rows.length) return el("p", {class: "dim"}, empty);
  const t = el("table", {}, el("tr", {}, ...cols.map(c => el("th", {}, c[0]))));
  for (const r of rows) t.append(el("tr", {}, ...cols.map(c => {
    const v = c[1](r);
    return el("td", c[2] ? {class: c[2]} : {}, v instanceof Node ? v : text(v));
  })));
  return t;
}
function fill(id, node) { const b = document.querySelector("#" + id + " .body"); b.replaceChildren(node); }

async function get(path) {
  const r = await fetch(path, {credentials: "same-origin", cache: "no-store"});
  if (r.status === 401) throw new Error("the session ended (401): run `keyswitch dashboard` for a new link");
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function drawNode(s) {
  document.getElementById("peer-id").textContent = s.peer_id || "";
  const facts = [["network", s.net], ["uptime", age(s.uptime)], ["peers", s.peers],
    ["offers in book", s.offers_in_book], ["own offers", s.own_offers],
    ["enclave", s.enclave ? (s.enclave.simulated ? "SIMULATED (development only)" : "hardware") + ", device " + short(s.enclave.device_id) : ""],
    ["listening on", (s.listen || []).join("\n")]];
  const dl = document.getElementById("node-facts");
  dl.replaceChildren(...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {class: k === "listening on" ? "mono" : ""}, v)]));
}
function drawDeposits(rows) {
  fill("deposits", table([["status", r => stateCell(r.status)], ["asset", r => r.asset],
    ["amount", r => coin(r.asset, r.amount), "num"], ["USD", r => usd(r.usd_cents), "num"],
    ["address", r => el("span", {class: "mono"}, r.address)], ["key", r => r.key_state],
    ["confirmations", r => r.confirmations, "num"]], rows, "no deposits yet (keyswitch deposit --asset …)"));
}
function drawOffers(rows) {
  const by = {};
  for (const r of rows) {
    const a = by[r.asset] || (by[r.asset] = {asset: r.asset, n: 0, amount: 0, cents: 0, origins: new Set()});
    a.n++; a.amount += Number(r.amount) || 0; a.cents += Number(r.usd_cents) || 0; a.origins.add(r.origin);
  }
  fill("offers", table([["asset", r => r.asset], ["offers", r => r.n, "num"], ["origins", r => r.origins.size, "num"],
    ["total", r => coin(r.asset, r.amount), "num"], ["total USD", r => usd(r.cents), "num"]],
    Object.values(by), "the offer book is empty"));
}
const FINAL = /done|complete|finished|refunded|aborted|failed|expired|closed|cancel/i;
function drawContracts(rows) {
  const cols = [["contract", r => idCell(r.contract)], ["kind", r => r.kind || "swap"], ["role", r => r.role],
    ["with", r => r.peer ? idCell(r.peer) : (r.parties || []).map(short).join(", ")],
    ["state", r => stateCell(r.state)], ["rounds", r => r.rounds, "num"], ["reason", r => r.reason]];
  const open = rows.filter(r => !FINAL.test(String(r.state))), done = rows.filter(r => FINAL.test(String(r.state)));
  const box = el("div", {}, el("h3", {}, "in flight (" + open.length + ")"), table(cols, open, "none in flight"),
    el("h3", {}, "done (" + done.length + ")"), table(cols, done, "none done yet"));
  fill("contracts", box);
}
function drawPeers(rows) {
  // whatever /v1/peers returns: the peer id first (shortened, full on hover), then every other field
  const keys = [];
  for (const r of rows) for (const k of Object.keys(r)) if (k !== "peer" && !keys.includes(k)) keys.push(k);
  fill("peers", table([["peer", r => idCell(r.peer)], ...keys.map(k => [k.replace(/_/g, " "), r =>
    typeof r[k] === "boolean" ? (r[k] ? "yes" : "no") : (k.includes("addr") ? el("span", {class: "mono"}, text(r[k])) : r[k])])],
    rows, "no peers connected"));
}
function drawReputation(rows) {
  const keys = [];
  for (const r of rows) for (const k of Object.keys(r)) if (k !== "device" && !keys.includes(k)) keys.push(k);
  fill("reputation", table([["device", r => idCell(r.device)], ...keys.map(k => [k.replace(/_cents$/, " USD").replace(/_/g, " "),
    r => k.endsWith("_cents") ? usd(r[k]) : (k === "owner" ? idCell(r[k]) : (typeof r[k] === "number" ? Math.round(r[k] * 100) / 100 : r[k])),
    k.endsWith("_cents") || k === "score" ? "num" : ""])], rows, "no devices known yet"));
}
function drawGossip(g) {
  fill("gossip", table([["topic", r => r.topic], ["accepted", r => r.accept, "num"], ["rejected", r => r.reject, "num"],
    ["ignored", r => r.ignore, "num"], ["sent", r => r.sent, "num"]], g.topics || [], "no gossip yet"));
}

async function tick() {
  const err = document.getElementById("error");
  try {
    const [s, p, d, o, c, rep, g] = await Promise.all(["/v1/status", "/v1/peers", "/v1/deposits", "/v1/offers?limit=1000",
      "/v1/contracts", "/v1/reputation", "/v1/gossip"].map(get));
    drawNode(s); drawDeposits(d.deposits); drawOffers(o.offers); drawContracts(c.contracts);
    drawPeers(p.peers); drawReputation(rep.devices); drawGossip(g);
    err.hidden = true;
    document.getElementById("updated").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC, every " + POLL / 1000 + " s";
  } catch (e) {
    err.textContent = String(e.message || e); err.hidden = false;
  }
}
if (location.pathname !== "/dashboard") history.replaceState(null, "", "/dashboard");
tick();
setInterval(tick, POLL);
