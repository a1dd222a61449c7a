// Operations: the service's own /metrics, scraped every 2 s, as small
// line charts drawn on canvases (no chart library): append rate, conflict
// rate per route and problem type, p99 latency per route, read-model lag,
// subscription groups' lag.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const { el, clear, api, describe, status } = strata;
  const $ = (id) => document.getElementById(id);
  const EVERY_MS = 2000;
  const KEEP = 150; // points: 5 minutes
  const COLORS = ["#2456c8", "#b3261e", "#1e7a3a", "#a15c00", "#6b3fa0", "#00798c", "#c2185b", "#5d6778"];
  let previous = null;
  // chart id -> Map(series name -> [values]) and the timestamps.
  const series = {};
  const times = [];

  // Prometheus text: [{name, labels, value}], names without the
  // service's `strata_` prefix.
  function parse(text) {
    const out = [];
    for (const line of text.split("\n")) {
      if (!line || line.startsWith("#")) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[3]) for (const l of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
      out.push({ name: m[1].replace(/^strata_/, ""), labels, value: Number(m[4]) });
    }
    return out;
  }

  function sum(samples, name, key) {
    const out = new Map();
    for (const s of samples) if (s.name === name) { const k = key(s.labels); out.set(k, (out.get(k) || 0) + s.value); }
    return out;
  }

  // p99 per route from the histogram's cumulative buckets over the last interval.
  function p99(now, before) {
    const buckets = (samples) => {
      const m = new Map();
      for (const s of samples) if (s.name === "http_request_duration_seconds_bucket") {
        const route = s.labels.route, le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
        if (!m.has(route)) m.set(route, new Map());
        const r = m.get(route);
        r.set(le, (r.get(le) || 0) + s.value);
      }
      return m;
    };
    const a = buckets(now), b = before ? buckets(before) : new Map();
    const out = new Map();
    for (const [route, r] of a) {
      const les = [...r.keys()].sort((x, y) => x - y);
      const count = (le) => r.get(le) - ((b.get(route) && b.get(route).get(le)) || 0);
      const total = count(Infinity);
      if (!total) continue;
      const le = les.find((x) => count(x) >= 0.99 * total);
      out.set(route, le === Infinity ? les[les.length - 2] * 1000 : le * 1000);
    }
    return out;
  }

  function push(chart, values) {
    const s = series[chart] || (series[chart] = new Map());
    for (const [name, v] of values) if (!s.has(name)) s.set(name, new Array(times.length - 1).fill(null));
    for (const [name, arr] of s) { arr.push(values.has(name) ? values.get(name) : null); if (arr.length > KEEP) arr.shift(); }
  }

  function draw(chart) {
    const canvas = $("chart-" + chart);
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 28;
    ctx.clearRect(0, 0, w, h);
    const s = series[chart] || new Map();
    let max = 0;
    for (const arr of s.values()) for (const v of arr) if (v !== null && v > max) max = v;
    max = max > 0 ? max * 1.1 : 1;
    ctx.strokeStyle = "#d9dde4"; ctx.fillStyle = "#5d6778"; ctx.font = "11px system-ui, sans-serif";
    for (let i = 0; i <= 2; i++) {
      const y = h - pad / 2 - (h - pad) * i / 2;
      ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w, y); ctx.stroke();
      ctx.fillText((max * i / 2).toPrecision(2), 0, y + 4);
    }
    const legend = clear($("legend-" + chart));
    let i = 0;
    for (const [name, arr] of s) {
      const color = COLORS[i++ % COLORS.length];
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
      let started = false;
      arr.forEach((v, j) => {
        if (v === null) { started = false; return; }
        const x = pad + (w - pad) * j / Math.max(KEEP - 1, 1), y = h - pad / 2 - (h - pad) * v / max;
        if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
      });
      ctx.stroke();
      const last = arr[arr.length - 1];
      const item = el("span", { text: name + (last === null ? "" : " " + (Math.round(last * 100) / 100)) });
      item.style.setProperty("--swatch", color);
      legend.append(item);
    }
    if (!s.size) legend.append(el("span", { class: "muted", text: "nothing yet" }));
  }

  function rates(now, before, dt) {
    const out = new Map();
    for (const [k, v] of now) out.set(k, Math.max(0, v - ((before && before.get(k)) || 0)) / dt);
    return out;
  }

  async function scrape() {
    const r = await api("/metrics");
    if (!r.ok) { status($("ops-status"), describe(r), "error"); $("ops-state").textContent = "failing"; return; }
    const t = Date.now();
    const samples = parse(r.body);
    const appends = sum(samples, "http_appends_total", () => "appends");
    if (!appends.size) appends.set("appends", 0);
    const conflicts = sum(samples, "http_conflicts_total", (l) => l.route + " · " + l.problem);
    if (previous) {
      const dt = (t - previous.t) / 1000;
      times.push(t); if (times.length > KEEP) times.shift();
      push("appends", rates(appends, previous.appends, dt));
      push("conflicts", rates(conflicts, previous.conflicts, dt));
      push("latency", p99(samples, previous.samples));
      push("models", sum(samples, "projection_model_lag_events", (l) => l.model));
      push("groups", sum(samples, "subscription_group_lag_positions", (l) => l.group));
      for (const c of ["appends", "conflicts", "latency", "models", "groups"]) draw(c);
    }
    const totals = clear($("conflict-totals"));
    for (const s of samples) if (s.name === "http_conflicts_total") {
      totals.append(el("tr", {}, el("td", { text: s.labels.route }), el("td", { text: s.labels.problem }), el("td", { class: "num", text: s.value })));
    }
    if (!totals.children.length) totals.append(el("tr", {}, el("td", { class: "muted", colspan: 3, text: "No conflict yet." })));
    previous = { t, samples, appends, conflicts };
    $("ops-state").textContent = "live";
    status($("ops-status"), "");
  }

  scrape();
  setInterval(scrape, EVERY_MS);
});
