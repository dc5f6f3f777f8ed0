// DOM helpers: an element builder, labelled fields, error lines and the call view. Missing values
// (null, undefined, false) are left out, never written as the words "null" or "undefined".
import { saidList, t } from "./i18n.js";

function nodes(children) {
  return children.flat(Infinity)
    .filter((child) => child !== null && child !== undefined && child !== false)
    .map((child) => (child instanceof Node ? child : document.createTextNode(String(child))));
}

// A tiny element builder: h("p", {class: "x"}, "text", child). Text is never parsed as HTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  el.append(...nodes(children));
  return el;
}

// parent.append(...) that leaves out missing children (the DOM's own append writes "null").
export function mount(parent, ...children) {
  parent.append(...nodes(children));
  return parent;
}

// parent.replaceChildren(...) likewise.
export function replace(parent, ...children) {
  parent.replaceChildren(...nodes(children));
  return parent;
}

// A value from central for display: "—" when there is none.
export function shown(value) {
  return value === null || value === undefined || value === "" ? "—" : String(value);
}

// A labelled input: field("Staff id", {name: "staff_id", autocomplete: "username"}).
export function field(label, attrs, hint) {
  return h("label", {}, label, hint ? h("span", { class: "hint" }, hint) : null, h("input", attrs));
}

// An error line that screen readers announce.
export function errorLine(id) {
  return h("p", { id, class: "error", role: "alert", hidden: true });
}

export function showError(el, message) {
  el.textContent = message || "";
  el.hidden = !message;
}

// The picture of a call: the other end large, our own camera small, a state line and "Hang up".
// callView("duty") -> { root, title, remote, local, state, hangup } (ids: <prefix>-call,
// <prefix>-call-title, -remote, -local, -call-state, -hangup).
export function callView(prefix) {
  const title = h("h2", { id: `${prefix}-call-title`, class: "call-title" });
  const remote = h("video", { id: `${prefix}-remote`, class: "remote-video", autoplay: true, playsinline: true });
  const local = h("video", { id: `${prefix}-local`, class: "local-video", autoplay: true, playsinline: true, muted: true });
  const state = h("p", { id: `${prefix}-call-state`, class: "call-state", role: "status", "aria-live": "polite" });
  const hangup = h("button", { type: "button", id: `${prefix}-hangup`, class: "hangup" }, t("call.hangup"));
  const root = h("section", { id: `${prefix}-call`, class: "call", hidden: true, "aria-label": t("call.label") },
    title, state, h("div", { class: "videos" }, remote, local), hangup);
  return { root, title, remote, local, state, hangup };
}

// Central's reasons (texts and their codes) as one line "a; b", each in the reader's language;
// one whose code the catalog does not know keeps central's English and says so (lang="en").
// `none` when there are none.
export function reasonsLine(texts, codes, none = "—") {
  const items = saidList(texts, codes);
  if (!items.length) return document.createTextNode(none);
  const line = document.createElement("span");
  line.className = "reasons";
  items.forEach((item, i) => {
    if (i) line.append("; ");
    const part = document.createElement("span");
    if (!item.known) part.lang = "en";
    part.textContent = item.text;
    line.append(part);
  });
  return line;
}

// t(key, params) as nodes, where a param may itself be a node (a reasonsLine): the catalog's
// sentence with that node in its place.
export function phrase(key, params = {}) {
  const marks = {};
  const plain = {};
  for (const [name, value] of Object.entries(params)) {
    if (value instanceof Node) {
      marks[name] = value;
      plain[name] = `\u0000${name}\u0000`;
    } else {
      plain[name] = value;
    }
  }
  return t(key, plain).split("\u0000").map((piece, i) => (i % 2 ? marks[piece] : piece)).filter((p) => p !== "" && p !== undefined);
}
