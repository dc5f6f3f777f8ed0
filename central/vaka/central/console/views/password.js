// Change the password: old one, new one twice. When it has expired, nothing else is possible.
import { api } from "../api.js";
import { errorLine, field, h, showError } from "../dom.js";

export function render(main, ctx, { expired }) {
  const error = errorLine("password-error");
  const form = h(
    "form",
    { id: "password-form" },
    field("Current password", { name: "old_password", id: "old_password", type: "password", autocomplete: "current-password", required: true }),
    field("New password", { name: "new_password", id: "new_password", type: "password", autocomplete: "new-password", required: true, minlength: 12 }, "At least 12 characters, not the same as the current one."),
    field("New password again", { name: "repeat", id: "repeat_password", type: "password", autocomplete: "new-password", required: true }),
    h("button", { type: "submit" }, "Change password"),
  );
  main.append(
    h("h1", {}, expired ? "Your password has expired" : "Change password"),
    expired ? h("p", { class: "notice", id: "password-expired" }, "Passwords must be renewed regularly. Choose a new one to continue.") : null,
    error,
    form,
  );
  form.elements.old_password.focus();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const f = form.elements;
    if (f.new_password.value !== f.repeat.value) {
      showError(error, "The two new passwords differ.");
      return;
    }
    try {
      await api("POST", "/api/password", { old_password: f.old_password.value, new_password: f.new_password.value });
    } catch (err) {
      showError(error, err.message);
      return;
    }
    ctx.notice("Your password is changed.");
    location.hash = "";
    ctx.restart();
  });
}
