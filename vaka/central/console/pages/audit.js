// The "Audit" page (to be filled in): render(main, ctx) may return a clean-up function.
export function render(main, ctx) {
  main.append(
    ctx.h("h1", {}, "Audit"),
    ctx.h("p", {}, "The audit trail: who saw which unit, when and why."),
    ctx.h("p", { class: "hint" }, "This page is not ready yet."),
  );
}
