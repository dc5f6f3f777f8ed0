// First log-in without a second factor: set up a TOTP app by QR code, confirm one code, and
// write down the recovery codes.
import { api } from "../api.js";
import { errorLine, field, h, mount, replace, showError } from "../dom.js";
import { reason, t } from "../i18n.js";

export function render(main, ctx) {
  const error = errorLine("enrol-error");
  const start = h("button", { type: "button", id: "enrol-start" }, t("enrol.show_qr"));
  mount(main,
    h("h1", {}, t("enrol.title")),
    h("p", {}, t("enrol.intro")),
    error,
    start,
  );
  start.addEventListener("click", async () => {
    start.disabled = true;
    let enrolment;
    try {
      enrolment = await api("POST", "/api/totp/enrol", {});
    } catch (err) {
      showError(error, reason(err.message));
      start.disabled = false;
      return;
    }
    start.remove();
    showConfirm(main, ctx, enrolment, error);
  });
}

function showConfirm(main, ctx, enrolment, error) {
  const qr = h("img", {
    class: "qr",
    id: "enrol-qr",
    alt: t("enrol.qr_alt"),
    src: `data:image/svg+xml;base64,${btoa(enrolment.qr_svg)}`,
  });
  const form = h(
    "form",
    { id: "enrol-form" },
    field(t("enrol.code"), { name: "code", id: "enrol-code", inputmode: "numeric", autocomplete: "one-time-code", required: true, maxlength: 8 }),
    h("button", { type: "submit" }, t("enrol.confirm")),
  );
  mount(main,
    h("ol", {}, h("li", {}, t("enrol.step_scan")), h("li", {}, t("enrol.step_type"))),
    qr,
    h("p", {}, t("enrol.cannot_scan"), " ", h("span", { class: "secret", id: "enrol-secret" }, enrolment.secret)),
    form,
  );
  form.elements.code.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = form.elements.code.value.replace(/\s/g, "");
    let answer;
    try {
      answer = await api("POST", "/api/totp/confirm", { code });
    } catch (err) {
      showError(error, reason(err.message));
      form.elements.code.value = "";
      form.elements.code.focus();
      return;
    }
    replace(main,
      h("h1", {}, t("enrol.done_title")),
      h("p", { class: "ok" }, t("enrol.done_text")),
      h("ol", { class: "codes", id: "recovery-codes" }, answer.recovery_codes.map((c) => h("li", {}, c))),
      h("button", { type: "button", id: "enrol-done", onclick: () => ctx.restart() }, t("enrol.continue")),
    );
  });
}
