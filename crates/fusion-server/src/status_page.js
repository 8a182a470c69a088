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
  const svg = $("curve"), w = 640, h = 220, pad = 30;
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
    svgElement("text", { x: pad, y: 16, fill: "#0072b2" }, "accuracy (0-1)"),
    svgElement("text", { x: pad + 140, y: 16, fill: "#d55e00" }, "loss (0-" + maxLoss.toFixed(2) + ")"),
    svgElement("text", { x: pad, y: h - 8, fill: "#777" }, "round " + pts[0].round),
    svgElement("text", { x: w - pad - 60, y: h - 8, fill: "#777" }, "round " + pts[pts.length - 1].round));
}

async function refresh() {
  try {
    const s = await (await fetch("status.json", { cache: "no-store" })).json();
    $("strategy").textContent = "\u00b7 " + s.strategy;
    $("run").textContent = s.run_id;
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
