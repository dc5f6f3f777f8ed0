// A citizen's circle: the relatives and friends who may call the citizen's TV. Staff add a
// contact (only with the citizen's recorded consent: central refuses otherwise and says why),
// hand over an invitation (QR code and short code, shown once, to print or read out), revoke a
// lost device's log-ins, or remove a contact (a call in progress ends at once). A contact may be
// another citizen's TV (kind "citizen"): no invitation, and it counts only once the other
// citizen's circle names this one too (the card says so until then).
import { errorLine, h, mount, replace, showError } from "../dom.js";
import { reason as readable, said, t, when } from "../i18n.js";

const CLOCK = "^([01][0-9]|2[0-4]):[0-5][0-9]$";
const PICTURE_MAX = 256 * 1024;

export function render(main, ctx) {
  let citizen = null;
  let citizens = [];
  let confirming = null; // "remove:<id>" or "revoke:<id>"
  const error = errorLine("circle-error");
  const note = h("p", { id: "circle-note", class: "ok", role: "status", hidden: true });
  const chooser = h("select", { id: "circle-citizen", name: "citizen" });
  const list = h("ul", { id: "circle-contacts", class: "cards" });
  const invitation = h("section", { id: "circle-invitation", hidden: true });
  const form = addForm();
  mount(main, h("h1", {}, t("nav.circle")), error, note,
    h("label", {}, t("circle.citizen"), chooser), invitation, list, form);

  function say(message) { showError(note, message); }

  function addForm() {
    const input = (name, attrs = {}) => h("input", { name, id: `circle-${name}`, autocomplete: "off", ...attrs });
    const check = (name, checked) => h("input", { type: "checkbox", name, id: `circle-${name}`, checked });
    const f = h("form", { id: "circle-add", novalidate: true },
      h("h2", {}, t("circle.add")),
      h("label", {}, t("circle.display_name"), input("display_name", { maxlength: 120, required: true })),
      h("label", {}, t("circle.relation"), h("span", { class: "hint" }, t("circle.relation_hint")),
        input("relation", { maxlength: 64, required: true })),
      h("label", {}, t("circle.citizen_name"), h("span", { class: "hint" }, t("circle.citizen_name_hint")),
        input("citizen_name", { maxlength: 120, required: true })),
      h("label", {}, t("circle.picture"), h("span", { class: "hint" }, t("circle.picture_hint")),
        input("picture", { type: "file", accept: "image/png,image/jpeg" })),
      h("label", { class: "check" }, check("may_call", true), t("circle.may_call")),
      h("div", { class: "filters" },
        h("label", {}, t("circle.from"), input("from", { value: "08:00", pattern: CLOCK, inputmode: "numeric", size: 5 })),
        h("label", {}, t("circle.until"), input("until", { value: "20:00", pattern: CLOCK, inputmode: "numeric", size: 5 }))),
      h("label", { class: "check" }, check("may_be_called", true), t("circle.may_be_called")),
      h("label", { class: "check" }, check("auto_answer", false), t("circle.auto_answer")),
      h("label", {}, t("circle.peer_citizen"), h("span", { class: "hint" }, t("circle.peer_hint")),
        h("select", { name: "peer_citizen", id: "circle-peer_citizen" })),
      h("button", { type: "submit", id: "circle-add-button" }, t("circle.add_button")));
    f.addEventListener("submit", (event) => { event.preventDefault(); add(f); });
    return f;
  }

  function picture(file) {
    return new Promise((resolve, reject) => {
      if (!file) { resolve(null); return; }
      if (file.size > PICTURE_MAX) { reject(new Error(t("circle.picture_large"))); return; }
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result);
      reader.onerror = () => reject(new Error(t("circle.picture_unreadable")));
      reader.readAsDataURL(file);
    });
  }

  async function add(f) {
    showError(error, "");
    say("");
    const v = (name) => f.elements[name].value.trim();
    const missing = ["display_name", "relation", "citizen_name"].find((name) => !v(name));
    if (missing) { showError(error, t("circle.missing", { field: t(`circle.${missing}`) })); return; }
    for (const name of ["from", "until"]) {
      if (!new RegExp(CLOCK).test(v(name))) { showError(error, t("circle.bad_clock", { value: v(name) })); return; }
    }
    let data;
    try { data = await picture(f.elements.picture.files[0]); } catch (err) { showError(error, err.message); return; }
    const body = {
      display_name: v("display_name"), relation: v("relation"), citizen_name: v("citizen_name"),
      picture: data, may_call: f.elements.may_call.checked, hours: { from: v("from"), until: v("until") },
      may_be_called: f.elements.may_be_called.checked, auto_answer: f.elements.auto_answer.checked,
    };
    if (f.elements.peer_citizen.value) body.peer_citizen = f.elements.peer_citizen.value;
    try {
      const added = await ctx.api("POST", `/api/citizens/${encodeURIComponent(citizen)}/contacts`, body);
      f.reset();
      say(t(added.kind === "citizen" ? "circle.added_citizen" : "circle.added", { name: added.display_name }));
      await refresh();
    } catch (err) {
      showError(error, readable(err.message));
    }
  }

  function rules(c) {
    return [
      c.kind === "citizen" ? t("circle.citizen_tv", { citizen: c.peer_citizen }) : null,
      c.may_call ? t("circle.calls_between", { from: c.hours.from, until: c.hours.until }) : t("circle.may_not_call"),
      c.may_be_called ? t("circle.tv_may_call") : null,
      c.auto_answer ? t("circle.answers_itself") : null,
      c.in_call ? t("circle.in_call") : null,
    ].filter(Boolean).join(" · ");
  }

  function card(c) {
    const key = (what) => `${what}:${c.id}`;
    const ask = (what) => () => { confirming = key(what); refresh(); };
    const buttons = confirming === key("remove") || confirming === key("revoke")
      ? [h("span", { class: "confirm-question" }, t(`circle.confirm_${confirming.split(":")[0]}`, { name: c.display_name })),
        h("button", { type: "button", class: "danger", id: `circle-yes-${c.id}`, onclick: () => act(c, confirming.split(":")[0]) }, t("circle.yes")),
        h("button", { type: "button", class: "secondary", onclick: () => { confirming = null; refresh(); } }, t("circle.no"))]
      : [
        // another citizen's TV has no log-in: nothing to invite or revoke
        c.kind === "citizen" ? null : h("button", { type: "button", id: `circle-invite-${c.id}`, onclick: () => invite(c) }, t("circle.invite")),
        c.kind === "citizen" ? null : h("button", { type: "button", class: "secondary", id: `circle-revoke-${c.id}`, onclick: ask("revoke") }, t("circle.revoke")),
        h("button", { type: "button", class: "danger", id: `circle-remove-${c.id}`, onclick: ask("remove") }, t("circle.remove"))].filter(Boolean);
    const mutual = c.kind !== "citizen" ? null : c.mutual
      ? h("p", { class: "hint", id: `circle-mutual-${c.id}` }, t("circle.mutual"))
      : h("p", { class: "error", id: `circle-mutual-${c.id}` }, said(c.note, c.note_code, c.note_params));
    return h("li", { class: "card", "data-contact": c.id },
      c.picture ? h("img", { src: c.picture, alt: "", width: 64, height: 64, class: "contact-picture" }) : null,
      h("div", {},
        h("p", { class: "card-title" }, c.display_name, " · ", c.relation),
        h("p", { class: "hint" }, rules(c)),
        mutual,
        h("p", { class: "hint" }, t("circle.added_by", { who: c.added_by, when: when(c.added_at) }))),
      h("div", { class: "confirm-buttons" }, buttons));
  }

  async function act(c, what) {
    confirming = null;
    showError(error, "");
    try {
      if (what === "remove") await ctx.api("DELETE", `/api/contacts/${encodeURIComponent(c.id)}`);
      else await ctx.api("POST", `/api/contacts/${encodeURIComponent(c.id)}/revoke`);
      say(t(`circle.done_${what}`, { name: c.display_name }));
      invitation.hidden = true;
    } catch (err) {
      showError(error, readable(err.message));
    }
    await refresh();
  }

  async function invite(c) {
    showError(error, "");
    try {
      const made = await ctx.api("POST", `/api/contacts/${encodeURIComponent(c.id)}/invitations`, {});
      // Central's SVG as an image (never parsed into the page); an image needs the namespace
      // that an SVG inlined in HTML may leave out.
      const svg = made.qr_svg.includes("xmlns=") ? made.qr_svg
        : made.qr_svg.replace("<svg", '<svg xmlns="http://www.w3.org/2000/svg"');
      const qr = h("img", { class: "qr", id: "circle-qr", alt: t("circle.qr_alt"), width: 200, height: 200,
        src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}` });
      replace(invitation,
        h("h2", {}, t("circle.invitation_for", { name: c.display_name })),
        qr,
        h("p", {}, t("circle.code"), " ", h("b", { id: "circle-code" }, made.code)),
        h("p", { class: "hint" }, t("circle.invitation_hint", { until: when(made.expires_at) })),
        h("button", { type: "button", onclick: () => window.print() }, t("circle.print")));
      invitation.hidden = false;
    } catch (err) {
      showError(error, readable(err.message));
    }
  }

  function others() {
    const select = form.elements.peer_citizen;
    replace(select, h("option", { value: "" }, t("circle.peer_none")),
      ...citizens.filter((id) => id !== citizen).map((id) => h("option", { value: id }, t("circle.citizen_option", { citizen: id }))));
  }

  async function refresh() {
    if (!citizen) return;
    others();
    try {
      const answer = await ctx.api("GET", `/api/citizens/${encodeURIComponent(citizen)}/contacts`);
      const active = answer.contacts.filter((c) => !c.removed_at);
      replace(list, active.length ? active.map(card) : h("li", { class: "hint", id: "circle-none" }, t("circle.none")));
    } catch (err) {
      if (err.status === 401) { ctx.restart(); return; }
      showError(error, readable(err.message));
    }
  }

  async function start() {
    try {
      const answer = await ctx.api("GET", "/api/circle/citizens");
      citizens = answer.citizens;
      replace(chooser, answer.citizens.map((id) => h("option", { value: id }, t("circle.citizen_option", { citizen: id }))));
      if (!answer.citizens.length) {
        form.hidden = true;
        replace(list, h("li", { class: "hint" }, t("circle.no_citizens")));
        return;
      }
      citizen = answer.citizens[0];
      chooser.addEventListener("change", () => {
        citizen = chooser.value;
        confirming = null;
        invitation.hidden = true;
        say("");
        refresh();
      });
      await refresh();
    } catch (err) {
      if (err.status === 401) { ctx.restart(); return; }
      showError(error, readable(err.message));
    }
  }

  start();
}
