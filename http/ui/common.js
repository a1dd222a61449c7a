// What every page of the console shares: building elements (text only,
// never markup), calling the API, the navigation bar.
"use strict";

const strata = (() => {
  // An element with attributes and children; strings become text nodes.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function clear(node) { node.replaceChildren(); return node; }

  // JSON shown as text, indented.
  function pretty(value) {
    if (value === undefined) return "";
    try { return JSON.stringify(value, null, 2); } catch (_) { return String(value); }
  }

  // The bearer token, kept for this tab only (sessionStorage), sent when set.
  const TOKEN = "strata.token";
  function headers(extra) {
    const h = Object.assign({}, extra || {});
    const t = sessionStorage.getItem(TOKEN);
    if (t) h["Authorization"] = "Bearer " + t;
    return h;
  }

  // Calls the API: resolves to {status, ok, headers, body} (body parsed
  // when JSON); never throws for an HTTP status.
  async function api(path, options) {
    const o = Object.assign({}, options || {});
    o.headers = headers(o.headers);
    if (o.json !== undefined) {
      o.body = JSON.stringify(o.json);
      o.headers["Content-Type"] = "application/json";
      delete o.json;
    }
    const r = await fetch(path, o);
    const type = r.headers.get("content-type") || "";
    const body = type.includes("json") ? await r.json().catch(() => null) : await r.text();
    return { status: r.status, ok: r.ok, headers: r.headers, body };
  }

  // A problem body (or any failure) as one line of text.
  function describe(r) {
    if (r && r.body && typeof r.body === "object" && r.body.title) {
      return r.status + " " + r.body.title + (r.body.detail ? ": " + r.body.detail : "");
    }
    return "HTTP " + (r ? r.status : "?");
  }

  function status(node, text, kind) {
    node.textContent = text || "";
    node.className = "status" + (kind ? " " + kind : "");
  }

  // The query part of the page's address (#a=1&b=2) as an object, and back.
  function hashParams() { return Object.fromEntries(new URLSearchParams(location.hash.slice(1))); }
  function setHash(params) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") p.set(k, v);
    history.replaceState(null, "", "#" + p.toString());
  }

  function nav() {
    const pages = [["index.html", "Streams"], ["tail.html", "Live tail"], ["documents.html", "Documents"], ["operations.html", "Operations"]];
    const here = location.pathname.split("/").pop() || "index.html";
    const token = el("input", { type: "password", id: "token", placeholder: "bearer token", autocomplete: "off", value: sessionStorage.getItem(TOKEN) || "" });
    token.addEventListener("change", () => {
      if (token.value) sessionStorage.setItem(TOKEN, token.value); else sessionStorage.removeItem(TOKEN);
    });
    const bar = el("header", {},
      el("span", { class: "brand", text: "strata" }),
      el("nav", {}, pages.map(([href, name]) => el("a", { href, "aria-current": href === here ? "page" : null, text: name }))),
      el("label", { class: "token" }, "token", token));
    document.body.prepend(bar);
  }

  document.addEventListener("DOMContentLoaded", nav);
  return { el, clear, pretty, api, describe, status, hashParams, setHash, headers };
})();
