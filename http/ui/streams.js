// The streams page: find streams by prefix or category, page through a
// stream's events, or read the whole log from a position.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const { el, clear, pretty, api, describe, status, hashParams, setHash } = strata;
  const $ = (id) => document.getElementById(id);
  const PAGE = 20;
  let nextAfter = null;
  // What the events table shows: {kind: "stream", stream, from} or {kind: "log", from}.
  let view = null;
  let back = [];

  async function searchStreams(more) {
    const mode = $("search-mode").value;
    const term = $("search").value;
    const q = new URLSearchParams({ limit: "50" });
    if (term) q.set(mode, term);
    if (more && nextAfter) q.set("after", nextAfter);
    const r = await api("/streams?" + q);
    if (!r.ok) { status($("streams-status"), describe(r), "error"); return; }
    if (!more) clear($("streams"));
    for (const s of r.body.streams) {
      $("streams").append(el("li", {},
        el("button", { class: "link stream-link", type: "button", dataset: { stream: s.stream }, text: s.stream,
          onclick: () => openStream(s.stream, 1) }),
        el("span", { class: "badge", text: s.version + (s.version === 1 ? " event" : " events") })));
    }
    nextAfter = r.body.next_after || null;
    $("more-streams").hidden = !nextAfter;
    status($("streams-status"), $("streams").children.length ? "" : "No stream matches.");
  }

  function cell(value) { return el("td", {}, el("pre", { text: value === undefined ? "" : pretty(value) })); }

  function showEvents(events) {
    const body = clear($("events"));
    for (const e of events) {
      const payload = e.data !== undefined ? e.data : (e.data_base64 !== undefined ? "base64: " + e.data_base64 : undefined);
      body.append(el("tr", { class: "event", dataset: { position: e.position } },
        el("td", { class: "num", text: e.position }),
        el("td", { class: "num", text: e.version }),
        el("td", {}, el("button", { class: "link", type: "button", text: e.stream, onclick: () => openStream(e.stream, 1) }), el("div", { class: "muted", text: e.event_type })),
        el("td", { class: "num muted", text: e.recorded_at }),
        el("td", { class: "payload" }, el("pre", { text: typeof payload === "string" ? payload : pretty(payload) })),
        cell(e.metadata)));
    }
    status($("events-status"), events.length ? "" : "No events here.");
  }

  async function openStream(stream, from) {
    view = { kind: "stream", stream, from };
    setHash({ stream, from });
    const r = await api("/streams/" + encodeURIComponent(stream) + "?" + new URLSearchParams({ from, limit: PAGE }));
    $("events-section").hidden = false;
    $("events-title").textContent = "Stream " + stream;
    if (!r.ok) { status($("events-status"), describe(r), "error"); return; }
    showEvents(r.body.events);
    const last = r.body.events.length ? r.body.events[r.body.events.length - 1].version : from - 1;
    $("events-range").textContent = r.body.events.length
      ? "versions " + r.body.events[0].version + "–" + last + " of " + r.body.version : "version " + r.body.version;
    view.next = r.body.next_from || null;
    $("next-page").disabled = !view.next;
    $("previous-page").disabled = from <= 1;
  }

  async function openLog(from) {
    view = { kind: "log", from };
    setHash({ position: from });
    const r = await api("/log?" + new URLSearchParams({ from, limit: PAGE }));
    $("events-section").hidden = false;
    $("events-title").textContent = "The log from position " + from;
    if (!r.ok) { status($("events-status"), describe(r), "error"); return; }
    showEvents(r.body.events);
    $("events-range").textContent = "head " + r.body.head;
    view.next = r.body.next_from || null;
    $("next-page").disabled = !view.next;
    $("previous-page").disabled = from <= 1;
  }

  function go(from) { return view.kind === "stream" ? openStream(view.stream, from) : openLog(from); }

  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); searchStreams(false); });
  $("more-streams").addEventListener("click", () => searchStreams(true));
  $("position-form").addEventListener("submit", (ev) => { ev.preventDefault(); openLog(Math.max(1, Number($("position").value) || 1)); });
  $("next-page").addEventListener("click", () => { if (view && view.next) { back.push(view.from); go(view.next); } });
  $("previous-page").addEventListener("click", () => {
    if (!view) return;
    go(back.length ? back.pop() : Math.max(1, view.from - PAGE));
  });

  const p = hashParams();
  if (p.stream) openStream(p.stream, Number(p.from) || 1);
  else if (p.position) openLog(Number(p.position) || 1);
  searchStreams(false);
});
