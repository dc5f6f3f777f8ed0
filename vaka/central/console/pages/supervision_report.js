// The "Supervision report" page (to be filled in): render(main, ctx) may return a clean-up function.
export function render(main, ctx) {
  main.append(
    ctx.h("h1", {}, "Supervision report"),
    ctx.h("p", {}, "Performed supervisions, for the care provider's records."),
    ctx.h("p", { class: "hint" }, "This page is not ready yet."),
  );
}
