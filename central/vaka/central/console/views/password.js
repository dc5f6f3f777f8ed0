// Change the password: old one, new one twice. When it has expired, nothing else is possible.
import { api } from "../api.js";
import { errorLine, field, h, mount, showError } from "../dom.js";
import { reason, t } from "../i18n.js";

export function render(main, ctx, { expired }) {
  const error = errorLine("password-error");
  const form = h(
    "form",
    { id: "password-form" },
    field(t("password.current"), { name: "old_password", id: "old_password", type: "password", autocomplete: "current-password", required: true }),
    field(t("password.new"), { name: "new_password", id: "new_password", type: "password", autocomplete: "new-password", required: true, minlength: 12 }, t("password.new_hint")),
    field(t("password.repeat"), { name: "repeat", id: "repeat_password", type: "password", autocomplete: "new-password", required: true }),
    h("button", { type: "submit" }, t("password.submit")),
  );
  mount(main,
    h("h1", {}, expired ? t("password.expired_title") : t("password.title")),
    expired ? h("p", { class: "notice", id: "password-expired" }, t("password.expired_text")) : null,
    error,
    form,
  );
  form.elements.old_password.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    if (f.new_password.value !== f.repeat.value) {
      showError(error, t("password.differ"));
      return;
    }
    try {
      await api("POST", "/api/password", { old_password: f.old_password.value, new_password: f.new_password.value });
    } catch (err) {
      showError(error, reason(err.message));
      return;
    }
    ctx.notice(t("password.changed"));
    location.hash = "";
    ctx.restart();
  });
}
