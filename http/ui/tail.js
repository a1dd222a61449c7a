// The live tail: the log as Server-Sent Events (/subscriptions/all),
// filtered. Pausing keeps the connection and buffers what arrives, so
// resuming shows every event in order; a dropped connection resumes after
// the last event seen (EventSource sends Last-Event-ID), so none is lost.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const { el, clear, api, describe, status } = strata;
  const $ = (id) => document.getElementById(id);
  // Rows kept on screen; the counters still count every event.
  const MAX_ROWS = 1000;
  let source = null;
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
    if (source) source.close();
    buffered = [];
    shown = 0;
    clear($("tail"));
    let after = 0;
    if (!$("from-start").checked) {
      // From now on: after the head.
      const r = await api("/log?limit=1&from=1");
      if (!r.ok) { status($("tail-status"), describe(r), "error"); return; }
      after = r.body.head;
    }
    lastSeen = after;
    paused = false;
    $("pause").disabled = false;
    $("pause").textContent = "Pause";
    open(after);
  }

  function open(after) {
    source = new EventSource("/subscriptions/all?" + filterQuery(after));
    setState("connecting");
    source.addEventListener("open", () => { setState(paused ? "paused" : "live"); status($("tail-status"), ""); });
    source.addEventListener("message", (m) => {
      const e = JSON.parse(m.data);
      if (e.position <= lastSeen) return;
      lastSeen = e.position;
      if (paused) { buffered.push(e); count(); } else show([e]);
    });
    source.addEventListener("checkpoint", (m) => { lastSeen = Math.max(lastSeen, Number(m.lastEventId) || 0); });
    source.addEventListener("error", (m) => {
      if (m.data) status($("tail-status"), "the server ended the stream: " + m.data, "error");
      setState(source.readyState === EventSource.CLOSED ? "stopped" : "reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // Closed for good (not a retry): start again after the last event seen.
        setTimeout(() => { if (source && source.readyState === EventSource.CLOSED) open(lastSeen); }, 1000);
      }
    });
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
