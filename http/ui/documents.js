// Documents: view, edit, save with If-Match. A 409 shows the three
// versions (where the user started, what changed since and by whom, what
// the user wants) with the conflicting fields highlighted, and offers
// Merge (when the server proposes one), Overwrite and Discard. History
// shows each version's diff.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const { el, clear, pretty, api, describe, status, hashParams, setHash } = strata;
  const $ = (id) => document.getElementById(id);
  // The document as loaded: {collection, id, version, doc}.
  let loaded = null;
  // The last 409: {current_version, merged, mine}.
  let conflict = null;

  function path() {
    return "/docs/" + encodeURIComponent(loaded.collection) + "/" + encodeURIComponent(loaded.id);
  }

  function withoutVersion(doc) {
    const d = Object.assign({}, doc);
    delete d._version;
    return d;
  }

  // Fields as the server counts them: JSON Pointers to leaves, objects
  // walked, arrays whole.
  function flatten(value, prefix, out) {
    out = out || [];
    prefix = prefix || "";
    if (value && typeof value === "object" && !Array.isArray(value)) {
      const keys = Object.keys(value).sort();
      if (!keys.length && prefix) out.push([prefix, value]);
      for (const k of keys) flatten(value[k], prefix + "/" + k.replace(/~/g, "~0").replace(/\//g, "~1"), out);
    } else {
      out.push([prefix, value]);
    }
    return out;
  }

  function overlaps(a, b) { return a === b || a.startsWith(b + "/") || b.startsWith(a + "/") || a === "" || b === ""; }

  // A document as one line per field: conflicting fields marked
  // "conflict", the other fields this side changed marked "changed".
  function fields(node, doc, conflicting, changed) {
    clear(node);
    for (const [p, v] of flatten(withoutVersion(doc))) {
      const kind = conflicting.some((c) => overlaps(p, c)) ? "conflict" : (changed.some((c) => overlaps(p, c)) ? "changed" : null);
      node.append(el("div", { class: kind, dataset: { field: p } }, p + ": " + JSON.stringify(v)));
    }
  }

  // The fields whose values differ between two documents.
  function differing(a, b) {
    const x = new Map(flatten(withoutVersion(a))), y = new Map(flatten(withoutVersion(b)));
    return [...new Set([...x.keys(), ...y.keys()])].filter((p) => JSON.stringify(x.get(p)) !== JSON.stringify(y.get(p)));
  }

  function headers(extra) {
    const h = Object.assign({}, extra);
    const actor = $("actor").value.trim();
    if (actor) h["Strata-Actor"] = actor;
    return h;
  }

  async function load() {
    const collection = $("collection").value.trim();
    const id = $("doc-id").value.trim();
    if (!collection || !id) return;
    setHash({ collection, id, actor: $("actor").value.trim() });
    loaded = { collection, id };
    const r = await api(path());
    $("conflict").hidden = true;
    if (!r.ok) { status($("doc-status"), describe(r), "error"); $("editor-section").hidden = true; return; }
    loaded.version = r.body._version;
    loaded.doc = r.body;
    $("editor").value = pretty(withoutVersion(r.body));
    $("doc-title").textContent = collection + "/" + id;
    $("doc-version").textContent = "version " + loaded.version;
    $("editor-section").hidden = false;
    status($("doc-status"), "Loaded version " + loaded.version + ".");
    if (!$("history-section").hidden) showHistory();
  }

  function mine() {
    try { return JSON.parse($("editor").value); } catch (e) {
      status($("doc-status"), "Not JSON: " + e.message, "error");
      return null;
    }
  }

  async function put(doc, version, what) {
    const r = await api(path(), { method: "PUT", json: doc, headers: headers({ "If-Match": '"' + version + '"' }) });
    if (r.ok) {
      $("conflict").hidden = true;
      await load();
      status($("doc-status"), what + ": now version " + loaded.version + ".", "ok");
    } else if (r.status === 409 || r.status === 412) {
      if (r.body && r.body.current_version !== undefined) showConflict(r.body, doc);
      else status($("doc-status"), describe(r), "error");
    } else {
      status($("doc-status"), describe(r), "error");
    }
  }

  function showConflict(p, doc) {
    conflict = { current_version: p.current_version, merged: p.merged, mine: doc };
    const conflicting = p.conflicting_fields || [];
    $("base-version").textContent = "version " + loaded.version;
    $("current-version").textContent = "now version " + p.current_version;
    const theirs = (p.changes_since || []).flatMap((c) => c.changed || []);
    fields($("base-fields"), loaded.doc, conflicting, []);
    fields($("current-fields"), p.current || {}, conflicting, theirs);
    fields($("mine-fields"), doc, conflicting, differing(loaded.doc, doc));
    const changes = clear($("changes-since"));
    for (const c of p.changes_since || []) {
      changes.append(el("li", {}, "v" + c.version + " " + c.kind + " by " + (c.actor || "someone unnamed") + " at " + c.at + ": " + (c.changed || []).join(", ")));
    }
    $("conflicting-fields").textContent = p.conflicting_fields === undefined ? "(cannot tell)" : (conflicting.length ? conflicting.join(", ") : "none");
    $("merge").hidden = !p.merged;
    $("conflict-summary").textContent = "Your save named version " + loaded.version + "; the document is at version " + p.current_version + ".";
    $("conflict").hidden = false;
    $("conflict").scrollIntoView({ block: "start" });
    status($("doc-status"), "Conflict: choose below.", "error");
  }

  async function showHistory() {
    const r = await api(path() + "/history");
    $("history-section").hidden = false;
    const body = clear($("history"));
    clear($("diff"));
    if (!r.ok) { status($("doc-status"), describe(r), "error"); return; }
    for (const c of r.body.changes) {
      body.append(el("tr", { dataset: { version: c.version } },
        el("td", {}, el("button", { class: "link", type: "button", text: "v" + c.version, onclick: () => diff(c.version) })),
        el("td", { text: c.kind + (c.merge_base ? " (merged from v" + c.merge_base + ")" : "") }),
        el("td", { text: c.actor || "" }),
        el("td", { class: "muted", text: c.at }),
        el("td", { text: (c.changed || []).join(", ") })));
    }
  }

  async function version(v) {
    if (v < 1) return {};
    const r = await api(path() + "?version=" + v);
    return r.ok ? withoutVersion(r.body) : {};
  }

  async function diff(v) {
    const [before, after] = await Promise.all([version(v - 1), version(v)]);
    const a = new Map(flatten(before)), b = new Map(flatten(after));
    const out = clear($("diff"));
    out.append(el("h2", { text: "v" + (v - 1) + " → v" + v }));
    for (const p of [...new Set([...a.keys(), ...b.keys()])].sort()) {
      const x = a.has(p) ? JSON.stringify(a.get(p)) : undefined, y = b.has(p) ? JSON.stringify(b.get(p)) : undefined;
      if (x === y) continue;
      if (x !== undefined) out.append(el("div", { class: "removed" }, "- " + p + ": " + x));
      if (y !== undefined) out.append(el("div", { class: "added" }, "+ " + p + ": " + y));
    }
  }

  $("load-form").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  $("reload").addEventListener("click", load);
  $("save").addEventListener("click", () => { const d = mine(); if (d) put(d, loaded.version, "Saved"); });
  $("overwrite").addEventListener("click", () => put(conflict.mine, conflict.current_version, "Overwritten"));
  $("merge").addEventListener("click", () => put(withoutVersion(conflict.merged), conflict.current_version, "Merged"));
  $("discard").addEventListener("click", async () => { await load(); status($("doc-status"), "Discarded your changes: showing version " + loaded.version + ".", "ok"); });
  $("show-history").addEventListener("click", showHistory);

  const p = hashParams();
  if (p.collection) $("collection").value = p.collection;
  if (p.id) $("doc-id").value = p.id;
  if (p.actor) $("actor").value = p.actor;
  if (p.collection && p.id) load();
});
