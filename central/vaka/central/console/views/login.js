// The log-in form: staff id, password, one-time code (or a recovery code).
import { api } from "../api.js";
import { errorLine, field, h, mount, showError } from "../dom.js";
import { reason, t } from "../i18n.js";

export function render(main, ctx, message) {
  const error = errorLine("login-error");
  const form = h(
    "form",
    { id: "login-form", novalidate: true },
    field(t("login.staff_id"), { name: "staff_id", id: "staff_id", autocomplete: "username", required: true, autocapitalize: "none", spellcheck: "false" }),
    field(t("login.password"), { name: "password", id: "password", type: "password", autocomplete: "current-password", required: true }),
    field(t("login.code"), { name: "totp", id: "totp", inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9 ]*", maxlength: 8 }, t("login.code_hint")),
    h(
      "details",
      {},
      h("summary", {}, t("login.lost_phone")),
      field(t("login.recovery_code"), { name: "recovery_code", id: "recovery_code", autocomplete: "off", autocapitalize: "characters", maxlength: 24 }),
    ),
    h("button", { type: "submit", id: "login-submit" }, t("login.submit")),
  );
  mount(main,
    h("h1", {}, t("login.title")),
    message ? h("p", { class: "notice", id: "logged-out", role: "status" }, message) : null,
    error,
    form,
  );
  form.elements.staff_id.focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    if (!f.staff_id.value.trim() || !f.password.value) {
      showError(error, t("login.fill_in"));
      return;
    }
    const body = { staff_id: f.staff_id.value.trim(), password: f.password.value, session: "cookie" };
    const totp = f.totp.value.replace(/\s/g, "");
    const recovery = f.recovery_code.value.trim();
    if (totp) body.totp = totp;
    if (recovery) body.recovery_code = recovery;
    form.querySelector("button").disabled = true;
    try {
      await api("POST", "/api/login", body);
    } catch (err) {
      showError(error, reason(err.message));
      form.querySelector("button").disabled = false;
      f.totp.value = "";
      (/code/.test(err.message) ? f.totp : f.password).focus();
      return;
    }
    ctx.notice("");
    // The session is in an HttpOnly cookie; if the browser refused it (https is needed away
    // from this machine), say so.
    try {
      await api("GET", "/api/me");
    } catch (err) {
      showError(error, t("login.no_cookie"));
      form.querySelector("button").disabled = false;
      return;
    }
    ctx.restart();
  });
}
