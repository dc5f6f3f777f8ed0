// The console's languages: Swedish, Danish and English. Every visible string comes from one
// catalog per language (i18n/sv.js, da.js, en.js: keys to texts with {name} placeholders), and
// every date and time goes through when() (24 h, the chosen language's date order).
//
// Which language: the member's saved choice (central's /api/me "language", so it follows them to
// another browser); before log-in, or with no choice saved, the browser's (navigator.languages:
// the first of sv, da, en it names; anything else -> en).
import sv from "./i18n/sv.js";
import da from "./i18n/da.js";
import en from "./i18n/en.js";

export const LANGUAGES = ["sv", "da", "en"];
const CATALOGS = { sv, da, en };
// English dates in day-month-year order (en-US would mix in month-first dates).
const LOCALES = { sv: "sv-SE", da: "da-DK", en: "en-GB" };

let current = "en";

// The first of our languages the browser asks for ("sv-FI" counts as sv; "nb" is not da).
export function browserLanguage() {
  const wanted = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || ""];
  for (const tag of wanted) {
    const base = String(tag || "").toLowerCase().split("-")[0];
    if (LANGUAGES.includes(base)) return base;
  }
  return "en";
}

export function language() {
  return current;
}

// Use `lang` (unknown or empty: the browser's) and mark the page with it for screen readers.
export function setLanguage(lang) {
  current = LANGUAGES.includes(lang) ? lang : browserLanguage();
  document.documentElement.lang = current;
  return current;
}

// t("audit.title") or t("fleet.summary", {count: 3}): the text in the chosen language, English
// where a translation is missing, the key itself (never "undefined") where both are.
export function t(key, params = {}) {
  const text = CATALOGS[current][key] ?? en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name) => {
    const value = params[name];
    return value === null || value === undefined ? "—" : String(value);
  });
}

// tn("visits.count", 2, {...}): "<key>.one" for 1, "<key>.other" otherwise, with {count}.
export function tn(key, count, params = {}) {
  return t(`${key}.${count === 1 ? "one" : "other"}`, { ...params, count });
}

// A word for a value from central (a status, a kind, a purpose): "<prefix>.<value>" when the
// catalog has it, else the value as it is ("—" when there is none).
export function word(prefix, value) {
  if (value === null || value === undefined || value === "") return "—";
  const key = `${prefix}.${value}`;
  return CATALOGS[current][key] ?? en[key] ?? String(value);
}

// The one date/time formatter: when(ts) -> "2026-12-04 22:05" (sv), "04.12.2026 22:05" (da),
// "04/12/2026 22:05" (en). Always 24 h with a colon; { date: false } for the time alone,
// { time: false } for the date alone; timeZone: central's zone where the page shows it.
export function when(ts, { date = true, time = true, seconds = false, timeZone } = {}) {
  if (ts === null || ts === undefined || ts === "" || Number.isNaN(Number(ts))) return "—";
  const at = ts instanceof Date ? ts : new Date(Number(ts) * 1000);
  const options = { hourCycle: "h23" };
  if (date) Object.assign(options, { year: "numeric", month: "2-digit", day: "2-digit" });
  if (time) Object.assign(options, { hour: "2-digit", minute: "2-digit" }, seconds ? { second: "2-digit" } : {});
  let parts;
  try {
    parts = new Intl.DateTimeFormat(LOCALES[current], { ...options, timeZone }).formatToParts(at);
  } catch (err) {
    parts = new Intl.DateTimeFormat(LOCALES[current], options).formatToParts(at);
  }
  const part = (type) => (parts.find((p) => p.type === type) || {}).value || "";
  const clock = [part("hour"), part("minute"), seconds ? part("second") : null].filter((p) => p !== null).join(":");
  if (!date) return clock;
  // The date as the language writes it (its own order and separators), then the clock.
  const dayParts = parts.filter((p) => ["year", "month", "day"].includes(p.type) || (p.type === "literal" && !/[\s,]/.test(p.value)));
  const day = dayParts.map((p) => p.value).join("").replace(/^\W+|\W+$/g, "");
  return time ? `${day} ${clock}` : day;
}

// A duration as a running clock: mmss(83) -> "01:23" (the call timer, a call's length).
export function mmss(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

// Something central (or a unit) said with a stable code: {reason, reason_code, params} on a call
// message, {code, params} beside an English text in a list ("reasons" + "reason_codes"). The
// catalog's "why.<code>" in the chosen language; the English text only for a code the catalog
// does not know (known() says which, so the page can mark that text lang="en").
export function known(code) {
  return typeof code === "string" && `why.${code}` in en;
}

export function said(text, code, params = {}) {
  if (!known(code)) return String(text ?? "") || "—";
  return t(`why.${code}`, params || {});
}

// The reasons of a unit or alert from central: [{text, code, params}, …] (codes may be missing:
// an older central, or a reason without one).
export function saidList(texts, codes) {
  return (texts || []).map((text, i) => {
    const c = (codes || [])[i] || {};
    return { text: said(text, c.code, c.params), known: known(c.code) };
  });
}

// A call message's reason ({reason, reason_code, params}) in the chosen language.
export function saidBy(message) {
  if (!message) return "";
  return said(message.reason, message.reason_code, message.params);
}

// A refusal or error from central, in the chosen language where it is one we know; central's
// own words otherwise (they are exact and tests check them).
const REASONS = [
  [/^log-in refused: wrong staff id, password or one-time code/, "reason.login_refused"],
  [/^wrong staff id or password$/, "reason.wrong_password"],
  [/^wrong or missing one-time code: this code was already used/, "reason.code_used"],
  [/^wrong or missing one-time code \(that recovery code is not valid\)$/, "reason.bad_recovery"],
  [/^wrong or missing one-time code$/, "reason.wrong_code"],
  [/^the old password is wrong$/, "reason.old_password_wrong"],
  [/^the new password must differ from the old one$/, "reason.password_same"],
  [/^the new password must be at least (\d+) characters long$/, "reason.password_short", ["min"]],
  [/^account locked until (\d\d:\d\d) after (\d+) /, "reason.locked", ["until", "failures"]],
  [/^logged out after (.+) without activity$/, "reason.idle", ["duration"]],
  [/^your address (\S+) is not in the networks allowed for (.+)$/, "reason.address", ["address", "role"]],
  [/^not logged in$/, "reason.not_logged_in"],
  // why a unit's alerts were closed when it left service (alerts/watch.py, units/standing.py)
  [/^unit suspended(?:: (.*))?$/, "reason.unit_suspended", ["why"]],
  [/^unit revoked(?:: (.*))?$/, "reason.unit_revoked", ["why"]],
  [/^unit decommissioned(?:: (.*))?$/, "reason.unit_decommissioned", ["why"]],
  // a contact refused for want of the home's consent (circle/contacts.py, directory/consent.py)
  [/^no valid consent for calls from the citizen's contacts from citizen (\S+)$/, "reason.no_contact_consent", ["citizen"]],
];

export function reason(text) {
  const message = String(text ?? "");
  if (current === "en") return message;
  for (const [pattern, key, names = []] of REASONS) {
    const found = pattern.exec(message);
    if (found) return t(key, Object.fromEntries(names.map((n, i) => [n, found[i + 1]])));
  }
  return message;
}
