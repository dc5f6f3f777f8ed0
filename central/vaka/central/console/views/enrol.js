// First log-in without a second factor: set up a TOTP app by QR code, confirm one code, and
// write down the recovery codes.
import { api } from "../api.js";
import { errorLine, field, h, showError } from "../dom.js";

export function render(main, ctx) {
  const error = errorLine("enrol-error");
  const start = h("button", { type: "button", id: "enrol-start" }, "Show the QR code");
  main.append(
    h("h1", {}, "Set up your one-time code"),
    h("p", {}, "Logging in needs a code from an authenticator app on your work phone (for example FreeOTP or Google Authenticator). Until it is set up, you can do nothing else here."),
    error,
    start,
  );
  start.addEventListener("click", async () => {
    start.disabled = true;
    let enrolment;
    try {
      enrolment = await api("POST", "/api/totp/enrol", {});
    } catch (err) {
      showError(error, err.message);
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
    alt: "QR code to scan with the authenticator app",
    src: `data:image/svg+xml;base64,${btoa(enrolment.qr_svg)}`,
  });
  const form = h(
    "form",
    { id: "enrol-form" },
    field("The code the app shows now", { name: "code", id: "enrol-code", inputmode: "numeric", autocomplete: "one-time-code", required: true, maxlength: 8 }),
    h("button", { type: "submit" }, "Confirm"),
  );
  main.append(
    h("ol", {}, h("li", {}, "Scan this code with the app."), h("li", {}, "Type the 6 digits it shows.")),
    qr,
    h("p", {}, "Cannot scan? Type this key into the app: ", h("span", { class: "secret", id: "enrol-secret" }, enrolment.secret)),
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
      showError(error, err.message);
      form.elements.code.value = "";
      form.elements.code.focus();
      return;
    }
    main.replaceChildren(
      h("h1", {}, "Your one-time code is set up"),
      h("p", { class: "ok" }, "Write these recovery codes down and keep them somewhere safe. Each works once, instead of the code from your phone. They are shown only now."),
      h("ol", { class: "codes", id: "recovery-codes" }, answer.recovery_codes.map((c) => h("li", {}, c))),
      h("button", { type: "button", id: "enrol-done", onclick: () => ctx.restart() }, "I have written them down — continue"),
    );
  });
}
