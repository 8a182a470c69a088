"use strict";
// The status page's script, served as /status.js so that the page's
// Content-Security-Policy can forbid inline script. Every value from
// /status.json (client ids are chosen by clients) is written as text or
// as an attribute, never parsed as HTML.
const $ = (id) => document.getElementById(id);
const fmt = (v, d) => (v === null || v === undefined) ? "\u2013" : Number(v).toFixed(d);
const SVG = "http://www.w3.org/2000/svg";

function rows(id, list) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren(...list.map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = String(c);
      tr.appendChild(td);
    }
    return tr;
  }));
}

function svgElement(name, attributes, text) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function curve(records) {
  const svg = $("curve"), w = 640, h = 220, pad = 36;
  const pts = records.filter((r) => typeof r.test_acc === "number" && typeof r.test_loss === "number");
  if (pts.length === 0) {
    svg.replaceChildren(svgElement("text", { x: 20, y: 110, fill: "#777" },
      "no test data configured, or no round done yet"));
    return;
  }
  const maxLoss = Math.max(...pts.map((r) => r.test_loss), 0.01);
  const x = (i) => pad + (pts.length === 1 ? (w - 2 * pad) / 2 : i * (w - 2 * pad) / (pts.length - 1));
  const yAcc = (a) => h - pad - a * (h - 2 * pad);
  const yLoss = (l) => h - pad - (l / maxLoss) * (h - 2 * pad);
  const line = (f, color) => svgElement("polyline", {
    fill: "none", stroke: color, "stroke-width": 2,
    points: pts.map((r, i) => x(i) + "," + f(r)).join(" "),
  });
  const dots = (f, color) => pts.map((r, i) => svgElement("circle", { cx: x(i), cy: f(r), r: 3, fill: color }));
  const acc = (r) => yAcc(r.test_acc), loss = (r) => yLoss(r.test_loss);
  svg.replaceChildren(
    line(acc, "#0072b2"), line(loss, "#d55e00"),
    ...dots(acc, "#0072b2"), ...dots(loss, "#d55e00"),
    ...axes(pts, x, maxLoss, w, h, pad));
}

// Two value axes (accuracy on the left, loss on the right, each in its
// colour) and the rounds along the bottom, so neither curve needs a guess.
function axes(pts, x, maxLoss, w, h, pad) {
  const grey = "#999", small = { "font-size": 11 };
  const axis = (x1, y1, x2, y2, color) => svgElement("line", { x1, y1, x2, y2, stroke: color });
  const out = [
    axis(pad, pad, pad, h - pad, "#0072b2"),
    axis(w - pad, pad, w - pad, h - pad, "#d55e00"),
    axis(pad, h - pad, w - pad, h - pad, grey),
    svgElement("text", { x: pad, y: 16, fill: "#0072b2" }, "test accuracy"),
    svgElement("text", { x: w - pad, y: 16, fill: "#d55e00", "text-anchor": "end" }, "test loss"),
  ];
  for (const f of [0, 0.5, 1]) {
    const y = h - pad - f * (h - 2 * pad);
    out.push(svgElement("text", { x: pad - 4, y: y + 4, fill: "#0072b2", "text-anchor": "end", ...small }, String(f)));
    out.push(svgElement("text", { x: w - pad + 4, y: y + 4, fill: "#d55e00", ...small }, (f * maxLoss).toPrecision(2)));
  }
  const step = Math.ceil(pts.length / 10);
  pts.forEach((r, i) => {
    if (i % step === 0 || i === pts.length - 1) {
      out.push(svgElement("text", { x: x(i), y: h - pad + 14, fill: grey, "text-anchor": "middle", ...small }, String(r.round)));
    }
  });
  out.push(svgElement("text", { x: w / 2, y: h - 2, fill: grey, "text-anchor": "middle", ...small }, "round"));
  return out;
}

// The status token, when the server wants one: asked for once per tab,
// kept in this tab's sessionStorage only, sent as a bearer token.
const TOKEN_KEY = "fusion-status-token";
$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  refresh();
});

// What the server is doing, in words.
function phase(s) {
  if (s.finished) return "finished: all " + s.rounds + " rounds done";
  if (s.sampled > 0) return "round " + s.round + " open: " + s.accepted_in_round + " of " + s.sampled + " sampled clients' updates in";
  return "waiting for clients: " + s.clients.length + " of the " + s.min_clients + " needed to open round " + s.round;
}

async function refresh() {
  try {
    const token = sessionStorage.getItem(TOKEN_KEY);
    const answer = await fetch("status.json", {
      cache: "no-store",
      headers: token ? { Authorization: "Bearer " + token } : {},
    });
    if (answer.status === 401) {
      $("login").hidden = false;
      $("updated").textContent = token ? "the status token was refused" : "this server wants its status token";
      return;
    }
    $("login").hidden = true;
    const s = await answer.json();
    $("phase").textContent = phase(s);
    $("strategy").textContent = "\u00b7 " + s.strategy;
    $("run").textContent = s.run_id;
    $("scoring").textContent = s.scoring
      ? "scored by " + s.scoring + "; model: " + s.model
      : "nothing scores this run (no --test-data or --evaluate-cmd): rounds record no accuracy; model: " + s.model;
    $("round").textContent = s.finished ? s.rounds + " / " + s.rounds + " done" : s.round + " / " + s.rounds;
    $("clients").textContent = s.clients.length;
    $("accepted").textContent = s.updates_accepted;
    $("refused").textContent = Object.values(s.rejected).reduce((a, b) => a + b, 0);
    rows("rounds", s.records.map((r) => [r.round, r.clients, fmt(r.test_acc, 4), fmt(r.test_loss, 4),
      fmt(r.moved_fraction, 3), fmt(r.align_seconds, 3), fmt(r.seconds, 2)]));
    rows("reasons", Object.entries(s.rejected).filter(([, n]) => n > 0));
    rows("clientlist", s.clients.map((c) => [c.id, c.examples, fmt(c.seen_secs_ago, 1)]));
    curve(s.records);
    $("updated").textContent = new Date().toLocaleTimeString();
  } catch (e) {
    $("updated").textContent = "failed (" + e + "), retrying";
  }
}
refresh();
setInterval(refresh, 2000);
