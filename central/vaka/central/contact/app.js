// The contact's page: a relative's or friend's own phone, tablet or PC calls the citizen's TV.
//
// Steps: an invitation code (typed, or from the QR code's link: /contact#code=K7QXM-3RW9T; the
// fragment never reaches a server log) -> a passkey (WebAuthn) or a password -> one big button,
// "Call <name>". The call is the staff's call path (the console's rtc.js) on the contact's own
// WebSocket, /api/contact/call. Every refusal comes from central with a code and is said here in
// the contact's language (sv, da, en); the page shows nothing of the citizen but the name the
// contact knows them by.
import { startCall } from "/console/rtc.js";
import { setLanguage as setCallLanguage } from "/console/i18n.js";
import sv from "./i18n/sv.js";
import da from "./i18n/da.js";
import en from "./i18n/en.js";

const LANGUAGES = ["sv", "da", "en"];
const CATALOGS = { sv, da, en };
const STORED = "vaka-contact-language";
const SECTIONS = ["welcome", "enrol", "home", "in-call", "ringing", "gone"];

const $ = (id) => document.getElementById(id);
let lang = "en";
let me = null;
let call = null;
let cancel = null;
let ringSocket = null;
let ringing = null; // the TV's request ringing here
let ringRetry = 1000;

function browserLanguage() {
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ""];
  for (const tag of wanted) {
    const base = String(tag || "").toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "en";
}

function t(key, params = {}) {
  const text = CATALOGS[lang][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => (params[name] ?? "—").toString());
}

function known(code) {
  return typeof code === "string" && `why.${code}` in en;
}

function setLanguage(wanted) {
  lang = LANGUAGES.includes(wanted) ? wanted : browserLanguage();
  document.documentElement.lang = lang;
  setCallLanguage(lang);
  $("language").value = lang;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  if (me && ringing) showRinging();
  else if (me) showHome();
}

function show(section) {
  for (const name of SECTIONS) $(name).hidden = name !== section;
}

function say(text) {
  $("error").textContent = text || "";
  $("error").hidden = !text;
}

// A refusal from central ({error, code}) in the contact's words.
function why(data, params = {}) {
  const name = me ? me.citizen_name : "";
  if (data && known(data.code)) return t(`why.${data.code}`, { name, ...params });
  return t("why.other", { reason: (data && data.error) || "?" });
}

async function api(path, body) {
  const options = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, options);
  } catch (err) {
    return { ok: false, status: 0, data: { code: "channel" } };
  }
  let data = {};
  try {
    data = await response.json();
  } catch (err) { /* an empty answer */ }
  if (response.status === 429) data = { ...data, code: "rate_limited" };
  return { ok: response.ok, status: response.status, data };
}

// ---------------------------------------------------------------- who is here

async function load() {
  const answer = await api("/api/contact/me");
  if (answer.ok) {
    me = answer.data;
    showHome();
    listen();
    return;
  }
  me = null;
  const code = answer.data.code;
  if (code === "enrol_first") show("enrol");
  else if (code === "contact_removed") gone(answer.data);
  else {
    show("welcome");
    if (code === "session_ended") say(why(answer.data));
  }
}

function gone(data) {
  me = null;
  $("gone-text").textContent = why(data);
  show("gone");
}

function showHome() {
  show("home");
  $("greeting").textContent = t("home.greeting", { name: me.display_name });
  $("call").textContent = t("home.call", { name: me.citizen_name });
  $("call").disabled = !me.unit || !me.may_call;
  $("hours").textContent = me.unit ? t("home.hours", { hours: me.hours }) : t("home.no_tv", { name: me.citizen_name });
  const kinds = me.log_in || [];
  $("extra").hidden = !kinds.includes("password") || kinds.includes("totp");
}

// ---------------------------------------------------------------- invitation and log-in

const fromB64u = (s) => {
  const bin = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0)).buffer;
};
const toB64u = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");

function passkeysWork() {
  return Boolean(window.PublicKeyCredential && navigator.credentials);
}

async function redeem(event) {
  event.preventDefault();
  say("");
  const answer = await api("/api/contact/redeem", { code: $("code").value });
  if (!answer.ok) return say(why(answer.data));
  show("enrol");
}

async function makePasskey() {
  say("");
  if (!passkeysWork()) return say(t("why.passkey_unsupported"));
  const asked = await api("/api/contact/passkey/options", {});
  if (!asked.ok) return say(why(asked.data));
  const options = asked.data;
  options.challenge = fromB64u(options.challenge);
  options.user.id = fromB64u(options.user.id);
  options.excludeCredentials = (options.excludeCredentials || []).map((c) => ({ ...c, id: fromB64u(c.id) }));
  let made;
  try {
    made = await navigator.credentials.create({ publicKey: options });
  } catch (err) {
    return say(t("why.passkey_failed"));
  }
  const credential = {
    id: made.id,
    rawId: toB64u(made.rawId),
    type: made.type,
    response: {
      clientDataJSON: toB64u(made.response.clientDataJSON),
      attestationObject: toB64u(made.response.attestationObject),
      transports: made.response.getTransports ? made.response.getTransports() : [],
    },
    clientExtensionResults: {},
  };
  const answer = await api("/api/contact/passkey", { credential });
  if (!answer.ok) return say(why(answer.data));
  await load();
}

async function setPassword(event) {
  event.preventDefault();
  say("");
  const answer = await api("/api/contact/password", { password: $("new-password").value });
  if (!answer.ok) return say(why(answer.data));
  await load();
  $("login-name-note").textContent = t("home.login_name", { login: answer.data.login });
  $("login-name-note").hidden = false;
}

async function passkeyLogin() {
  say("");
  if (!passkeysWork()) return say(t("why.passkey_unsupported"));
  const asked = await api("/api/contact/login/options", {});
  if (!asked.ok) return say(why(asked.data));
  const options = asked.data;
  options.challenge = fromB64u(options.challenge);
  options.allowCredentials = (options.allowCredentials || []).map((c) => ({ ...c, id: fromB64u(c.id) }));
  let got;
  try {
    got = await navigator.credentials.get({ publicKey: options });
  } catch (err) {
    return say(t("why.login_refused"));
  }
  const credential = {
    id: got.id,
    rawId: toB64u(got.rawId),
    type: got.type,
    response: {
      clientDataJSON: toB64u(got.response.clientDataJSON),
      authenticatorData: toB64u(got.response.authenticatorData),
      signature: toB64u(got.response.signature),
      userHandle: got.response.userHandle ? toB64u(got.response.userHandle) : null,
    },
    clientExtensionResults: {},
  };
  const answer = await api("/api/contact/login", { credential });
  if (!answer.ok) return say(why(answer.data));
  await load();
}

async function passwordLogin(event) {
  event.preventDefault();
  say("");
  const body = { contact: $("login-name").value.trim(), password: $("login-password").value };
  if ($("login-totp").value.trim()) body.totp = $("login-totp").value.trim();
  const answer = await api("/api/contact/login", body);
  if (!answer.ok) return say(why(answer.data));
  await load();
}

async function startTotp() {
  say("");
  const answer = await api("/api/contact/totp/start", {});
  if (!answer.ok) return say(why(answer.data));
  $("totp-qr").src = `data:image/svg+xml;base64,${btoa(answer.data.qr_svg)}`;
  $("totp-secret").textContent = answer.data.secret;
  $("totp-setup").hidden = false;
}

async function confirmTotp(event) {
  event.preventDefault();
  say("");
  const answer = await api("/api/contact/totp/confirm", { code: $("totp-code").value.trim() });
  if (!answer.ok) return say(why(answer.data));
  await load();
  $("totp-done").textContent = t("totp.done");
  $("totp-done").hidden = false;
}

async function logOut() {
  await api("/api/contact/logout", {});
  me = null;
  if (ringSocket) ringSocket.close();
  show("welcome");
}

// ---------------------------------------------------------------- the call

function refusal(err) {
  const name = me ? me.citizen_name : "";
  if (err.outcome === "declined" || err.code === "unit_declined") return t("why.declined", { name });
  if (err.outcome === "busy" || err.code === "unit_busy") return t("why.busy", { name });
  if (err.outcome === "no_answer" || err.code === "no_answer") return t("why.no_answer", { name });
  if (known(err.code)) return why({ code: err.code });
  return t("why.other", { reason: err.message });
}

async function placeCall(request = null) {
  if (!me || !me.unit) return;
  $("refusal").hidden = true;
  say("");
  // A log-in revoked or a contact removed since the page loaded: say so before dialling.
  const now = await api("/api/contact/me");
  if (!now.ok) return afterCall("", now);
  me = now.data;
  show("in-call");
  $("call-title").textContent = t("call.title", { name: me.citizen_name });
  $("hangup").textContent = t("call.cancel");
  cancel = new AbortController();
  try {
    call = await startCall({
      unit: me.unit,
      purpose: "contact_call",
      request: request || undefined,
      path: "/api/contact/call",
      video: $("remote"),
      local: $("local"),
      sendMedia: true,
      signal: cancel.signal,
      onState: (text) => { $("call-state").textContent = text; },
    });
  } catch (err) {
    call = null;
    cancel = null;
    await afterCall(err.cancelled ? "" : refusal(err));
    return;
  }
  $("hangup").textContent = t("call.hangup");
  $("in-call").dataset.callId = call.callId || "";
  await call.ended;
  call = null;
  cancel = null;
  await afterCall(t("call.ended"));
}

// Back to the big button, saying why; a contact removed or revoked meanwhile is told so.
async function afterCall(text, known = null) {
  const answer = known || await api("/api/contact/me");
  if (!answer.ok) {
    if (answer.data.code === "contact_removed") return gone(answer.data);
    me = null;
    show("welcome");
    return say(why(answer.data));
  }
  me = answer.data;
  showHome();
  $("refusal").textContent = text;
  $("refusal").hidden = !text;
}

// ---------------------------------------------------------------- the TV calls

// The ring socket: open while logged in, opened again (with a growing pause) when it drops.
function listen() {
  if (ringSocket || !me) return;
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/api/contact/ring`);
  ringSocket = ws;
  ws.onopen = () => { ringRetry = 1000; };
  ws.onmessage = (event) => {
    let said = null;
    try { said = JSON.parse(event.data); } catch (err) { return; }
    if (said.type === "ring") ring(said);
    else if (said.type === "stop_ringing") stopRinging(said);
    else if (said.type === "ended") afterCall("");
  };
  ws.onclose = () => {
    if (ringSocket === ws) ringSocket = null;
    if (!me) return;
    setTimeout(listen, ringRetry);
    ringRetry = Math.min(ringRetry * 2, 30000);
  };
}

function ring(said) {
  if (call || cancel) return; // busy in a call: central ends the ring when nobody answers
  ringing = said.request_id;
  showRinging();
}

function showRinging() {
  show("ringing");
  $("ring-title").textContent = t("ring.title", { name: me.citizen_name });
  $("ringing").dataset.requestId = ringing || "";
}

function stopRinging(said) {
  if (said.request_id !== ringing) return;
  ringing = null;
  showHome();
  $("refusal").textContent = t("ring.missed", { name: me.citizen_name });
  $("refusal").hidden = false;
}

async function answerRing() {
  const request = ringing;
  ringing = null;
  if (request) await placeCall(request);
}

function declineRing() {
  const request = ringing;
  ringing = null;
  if (request && ringSocket && ringSocket.readyState === WebSocket.OPEN) {
    ringSocket.send(JSON.stringify({ type: "decline", request_id: request }));
  }
  showHome();
}

function hangUp() {
  if (call) call.hangup();
  else if (cancel) cancel.abort();
}

// ---------------------------------------------------------------- start

function start() {
  let wanted = null;
  try { wanted = localStorage.getItem(STORED); } catch (err) { /* private mode */ }
  setLanguage(wanted);
  $("language").addEventListener("change", () => {
    try { localStorage.setItem(STORED, $("language").value); } catch (err) { /* private mode */ }
    setLanguage($("language").value);
  });
  const found = /(?:^#|&)code=([A-Za-z0-9-]{1,20})/.exec(location.hash);
  if (found) {
    $("code").value = found[1];
    history.replaceState(null, "", location.pathname);
  }
  $("code-form").addEventListener("submit", redeem);
  $("make-passkey").addEventListener("click", makePasskey);
  $("password-form").addEventListener("submit", setPassword);
  $("passkey-login").addEventListener("click", passkeyLogin);
  $("login-form").addEventListener("submit", passwordLogin);
  $("logout").addEventListener("click", logOut);
  $("totp-start").addEventListener("click", startTotp);
  $("totp-form").addEventListener("submit", confirmTotp);
  $("call").addEventListener("click", () => placeCall());
  $("answer").addEventListener("click", answerRing);
  $("decline").addEventListener("click", declineRing);
  $("hangup").addEventListener("click", hangUp);
  load();
}

start();
