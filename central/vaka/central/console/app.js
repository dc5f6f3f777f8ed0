// The console shell: who is logged in, the navigation by role, the language, a tiny hash router,
// and the browser's side of the idle time-out (it shows the same message as central).
import { api, ApiError, onActivity } from "./api.js";
import { h, mount, replace } from "./dom.js";
import { LANGUAGES, reason, setLanguage, t, tn, word } from "./i18n.js";
import { navPagesFor, pagesFor } from "./pages.js";
import * as idle from "./idle.js";
import * as loginView from "./views/login.js";
import * as enrolView from "./views/enrol.js";
import * as passwordView from "./views/password.js";

const main = document.getElementById("view");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const logoutButton = document.getElementById("logout");
const notice = document.getElementById("notice");
const languageSelect = document.getElementById("language");

let me = null;
let cleanup = null;
// A language picked on the log-in page (for this visit only; null: the browser's).
let pickedBeforeLogIn = null;

function setNotice(message) {
  notice.textContent = message || "";
  notice.hidden = !message;
}

function clearView() {
  if (typeof cleanup === "function") {
    try { cleanup(); } catch (err) { /* a page's clean-up must not stop the console */ }
  }
  cleanup = null;
  main.replaceChildren();
}

const ctx = {
  api,
  h,
  t,
  get me() { return me; },
  notice: setNotice,
  // Start over: ask central who we are and show the right view.
  restart: () => start(),
  go: (id) => { location.hash = `#/${id}`; },
  // what the address names after the page id: #/units/u-cam -> ["u-cam"]
  params: [],
};

// The texts of the page's frame in the chosen language (the view draws its own).
function frameTexts() {
  document.title = t("app.title");
  nav.setAttribute("aria-label", t("nav.label"));
  logoutButton.textContent = t("app.logout");
  languageSelect.value = LANGUAGES.includes(document.documentElement.lang) ? document.documentElement.lang : "en";
}

function showShell(visible) {
  nav.hidden = !visible;
  logoutButton.hidden = !me;
  who.textContent = me ? `${me.staff.name} (${word("role", me.staff.role)})` : "";
  frameTexts();
}

// Logged out (by the user, by the idle time-out, or never logged in): the log-in view, in the
// browser's language again. `message` is a function so that it is worded in that language.
function loggedOut(message = () => "") {
  idle.stop();
  me = null;
  setLanguage(pickedBeforeLogIn);
  showShell(false);
  clearView();
  loginView.render(main, ctx, message());
}

async function start(message) {
  let answer;
  try {
    answer = await api("GET", "/api/me");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      loggedOut(() => message || idleMessage(err.message));
      return;
    }
    clearView();
    setLanguage(pickedBeforeLogIn);
    frameTexts();
    main.append(h("p", { class: "error", role: "alert" }, reason(err.message)));
    return;
  }
  me = answer;
  setLanguage(answer.language || pickedBeforeLogIn); // the member's saved choice first
  idle.start(answer, onIdle);
  clearView();
  if (answer.must_enrol_totp) {
    showShell(false);
    enrolView.render(main, ctx);
    return;
  }
  if (answer.must_change_password) {
    showShell(false);
    passwordView.render(main, ctx, { expired: true });
    return;
  }
  buildNav();
  showShell(true);
  route();
}

// Central's "logged out after 15 minutes without activity" as a sentence in the chosen language.
function idleMessage(text) {
  const found = /after (\d+) (second|minute)s? without activity/.exec(text || "");
  if (!found) return "";
  const amount = tn(`duration.${found[2]}s`, Number(found[1]));
  return t("app.idle_logged_out", { duration: amount });
}

function onIdle(text) {
  loggedOut(() => idleMessage(text) || reason(text));
}

function buildNav() {
  const pages = navPagesFor(me.staff.role);
  replace(nav,
    ...pages.map((page) => h("a", { href: `#/${page.id}`, "data-page": page.id }, t(`nav.${page.id}`))),
    h("a", { href: "#/password", "data-page": "password" }, t("nav.password")),
  );
}

// Which route() call is the newest: an older one still loading its page's script draws nothing
// (two quick changes of address must not leave two pages on the screen).
let routing = 0;

async function route() {
  if (!me || me.must_enrol_totp || me.must_change_password) return;
  const mine = ++routing;
  const pages = pagesFor(me.staff.role);
  const [wanted, ...params] = location.hash.replace(/^#\/?/, "").split("/");
  ctx.params = params.map((p) => { try { return decodeURIComponent(p); } catch (err) { return p; } });
  const shownAs = (pages.find((p) => p.id === wanted) || {}).under || wanted;
  for (const link of nav.querySelectorAll("a")) {
    if (link.dataset.page === shownAs) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  clearView();
  if (wanted === "password") {
    passwordView.render(main, ctx, { expired: false });
    return;
  }
  const page = pages.find((p) => p.id === wanted) || pages.find((p) => p.nav !== false);
  if (!page) {
    mount(main, h("h1", {}, t("app.welcome", { name: me.staff.name })), h("p", {}, t("app.no_pages")));
    return;
  }
  if (page.id !== wanted) {
    ctx.params = [];
    history.replaceState(null, "", `#/${page.id}`);
    nav.querySelector(`a[data-page="${page.id}"]`)?.setAttribute("aria-current", "page");
  }
  try {
    const module = await import(page.module);
    if (mine !== routing) return;
    cleanup = await module.render(main, ctx);
  } catch (err) {
    main.append(h("p", { class: "error", role: "alert" }, t("app.page_failed", { reason: reason(err.message) })));
  }
}

onActivity((ok, status, message) => {
  if (ok) {
    idle.activity();
  } else if (status === 401 && me) {
    // Central ended the session (idle, expired, logged out elsewhere).
    loggedOut(() => idleMessage(message) || reason(message));
  }
});

logoutButton.addEventListener("click", async () => {
  try { await api("POST", "/api/logout", {}); } catch (err) { /* logged out either way */ }
  loggedOut(() => t("app.logged_out"));
});

// A new language: saved with the account when someone is logged in (it follows them to another
// browser), then the console is drawn again in it.
languageSelect.addEventListener("change", async () => {
  const chosen = setLanguage(languageSelect.value);
  if (!me) {
    pickedBeforeLogIn = chosen;
    loggedOut();
    return;
  }
  try {
    await api("POST", "/api/me/language", { language: chosen });
  } catch (err) {
    setNotice(reason(err.message));
  }
  start();
});

window.addEventListener("hashchange", () => route());
setLanguage(null);
frameTexts();
start();
