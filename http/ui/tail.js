// The live tail: the log as Server-Sent Events (/subscriptions/all),
// filtered. The stream is read with fetch() rather than EventSource, so
// that it carries the console's bearer token in the Authorization header
// (EventSource cannot send headers, and a token must never be put in a URL:
// URLs end up in access logs). The text/event-stream body is parsed here,
// line by line. Pausing keeps the connection and buffers what arrives, so
// resuming shows every event in order; a dropped connection is reopened
// after the last event seen (with Last-Event-ID), so none is lost.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const { el, clear, api, describe, status, headers } = strata;
  const $ = (id) => document.getElementById(id);
  // Rows kept on screen; the counters still count every event.
  const MAX_ROWS = 1000;
  // The longest line (or unfinished line) of the stream kept while
  // parsing; a longer one ends the connection (the server's events are far
  // smaller: a page of the log stops at 4 MiB of payloads).
  const MAX_LINE = 16 * 1024 * 1024;
  // Waits before reconnecting: doubled per failure, back to the first
  // once a stream opens.
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30000;
  // The open stream's controller (aborting it ends the stream), and which
  // follow() it belongs to: a stale one stops touching the page.
  let connection = null;
  let generation = 0;
  let retryMs = RETRY_FIRST_MS;
  let paused = false;
  let buffered = [];
  let shown = 0;
  let lastSeen = 0;

  function now() { return performance.timeOrigin + performance.now(); }

  function row(e) {
    const payload = e.data !== undefined ? JSON.stringify(e.data) : (e.data_base64 !== undefined ? "base64: " + e.data_base64 : "");
    return el("tr", { class: "event", dataset: { position: e.position, shownAt: now().toFixed(3) } },
      el("td", { class: "num", text: e.position }),
      el("td", { text: e.stream }),
      el("td", { text: e.event_type }),
      el("td", { class: "num muted", text: e.recorded_at }),
      el("td", { class: "payload" }, el("pre", { text: payload })));
  }

  function show(events) {
    const body = $("tail");
    const frag = document.createDocumentFragment();
    for (const e of events) frag.prepend(row(e));
    body.prepend(frag);
    while (body.children.length > MAX_ROWS) body.lastElementChild.remove();
    shown += events.length;
    count();
  }

  function count() {
    $("tail-count").textContent = shown + " shown" + (buffered.length ? ", " + buffered.length + " waiting" : "") +
      (lastSeen ? " · last position " + lastSeen : "");
  }

  function setState(text) { $("tail-state").textContent = text; }

  function filterQuery(after) {
    const q = new URLSearchParams();
    const add = (key, id) => { const v = $(id).value.trim(); if (v) q.append(key, v); };
    add("stream_prefix", "filter-stream-prefix");
    add("category", "filter-category");
    add("event_type_prefix", "filter-type-prefix");
    q.set("after", String(after));
    return q;
  }

  async function follow() {
    const gen = ++generation;
    if (connection) connection.abort();
    connection = null;
    buffered = [];
    shown = 0;
    clear($("tail"));
    status($("tail-status"), "");
    let after = 0;
    if (!$("from-start").checked) {
      // From now on: after the head.
      const r = await api("/log?limit=1&from=1");
      if (gen !== generation) return;
      if (!r.ok) { status($("tail-status"), describe(r) + tokenHint(r.status), "error"); setState("stopped"); return; }
      after = r.body.head;
    }
    lastSeen = after;
    paused = false;
    retryMs = RETRY_FIRST_MS;
    $("pause").disabled = false;
    $("pause").textContent = "Pause";
    open(gen, false);
  }

  function tokenHint(code) {
    return code === 401 || code === 403 ? " (set a token of scope read in the bar above, then Apply)" : "";
  }

  // One event of the stream, as the SSE parser dispatches it.
  function dispatch(type, data, id) {
    if (type === "message") {
      let e;
      try { e = JSON.parse(data); } catch (_) { status($("tail-status"), "an event that is not JSON was skipped", "error"); return; }
      if (!e || typeof e.position !== "number" || e.position <= lastSeen) return;
      lastSeen = e.position;
      if (paused) { buffered.push(e); count(); } else show([e]);
    } else if (type === "checkpoint") {
      lastSeen = Math.max(lastSeen, Number(id) || 0);
    } else if (type === "error") {
      // The server's last word before it ends the stream (a problem body).
      let text = data;
      try { const p = JSON.parse(data); text = p.title + (p.detail ? ": " + p.detail : ""); } catch (_) { /* shown as sent */ }
      status($("tail-status"), "the server ended the stream: " + text, "error");
    }
  }

  // Reads a text/event-stream body until it ends (resolves) or fails
  // (throws), dispatching each event: fields `id`, `event`, `data`
  // (several join with "\n"), comments (":...") skipped, an empty line
  // dispatches. Lines end with \n, \r\n or \r.
  async function readEvents(body, gen) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    let data = [];
    let type = "";
    let id = "";
    const line = (l) => {
      if (l === "") {
        if (data.length) dispatch(type || "message", data.join("\n"), id);
        data = [];
        type = "";
        return;
      }
      if (l.startsWith(":")) return;
      const colon = l.indexOf(":");
      const field = colon < 0 ? l : l.slice(0, colon);
      let value = colon < 0 ? "" : l.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") data.push(value);
      else if (field === "event") type = value;
      else if (field === "id" && !value.includes("\0")) id = value;
      // `retry` and unknown fields are ignored.
    };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || gen !== generation) return;
        text += value;
        let start = 0;
        const breaks = /[\r\n]/g;
        for (;;) {
          breaks.lastIndex = start;
          const found = breaks.exec(text);
          if (!found) break;
          const end = found.index;
          // A \r last in the chunk may be the first half of \r\n: wait.
          if (text[end] === "\r" && end + 1 === text.length) break;
          line(text.slice(start, end));
          start = end + (text[end] === "\r" && text[end + 1] === "\n" ? 2 : 1);
          if (gen !== generation) return;
        }
        text = text.slice(start);
        if (text.length > MAX_LINE) throw new Error("a line of the stream is longer than " + MAX_LINE + " characters");
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // Opens the stream after the last event seen (a reconnect also sends
  // Last-Event-ID, which the server reads in place of `after`); when it
  // ends or fails, opens it again after a wait, until follow() starts
  // another or the server refuses the token.
  async function open(gen, reconnect) {
    const controller = new AbortController();
    connection = controller;
    setState(reconnect ? "reconnecting" : "connecting");
    const h = headers({ Accept: "text/event-stream" });
    if (reconnect && lastSeen > 0) h["Last-Event-ID"] = String(lastSeen);
    try {
      const r = await fetch("/subscriptions/all?" + filterQuery(lastSeen), { headers: h, signal: controller.signal, cache: "no-store" });
      if (gen !== generation) return;
      if (!r.ok) {
        const type = r.headers.get("content-type") || "";
        const body = type.includes("json") ? await r.json().catch(() => null) : null;
        status($("tail-status"), describe({ status: r.status, body }) + tokenHint(r.status), "error");
        if (r.status === 401 || r.status === 403 || r.status === 400) { setState("stopped"); return; }
      } else {
        retryMs = RETRY_FIRST_MS;
        setState(paused ? "paused" : "live");
        status($("tail-status"), "");
        await readEvents(r.body, gen);
      }
    } catch (err) {
      if (gen !== generation || controller.signal.aborted) return;
      status($("tail-status"), "the stream broke: " + (err && err.message ? err.message : err), "error");
    }
    if (gen !== generation) return;
    setState("reconnecting");
    const wait = retryMs;
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    setTimeout(() => { if (gen === generation) open(gen, true); }, wait);
  }

  $("filter-form").addEventListener("submit", (ev) => { ev.preventDefault(); follow(); });
  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
    setState(paused ? "paused" : "live");
    if (!paused && buffered.length) { const b = buffered; buffered = []; show(b); }
  });
  follow();
});
