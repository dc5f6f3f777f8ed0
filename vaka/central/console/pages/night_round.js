// The "Night round" page (to be filled in): render(main, ctx) may return a clean-up function.
export function render(main, ctx) {
  main.append(
    ctx.h("h1", {}, "Night round"),
    ctx.h("p", {}, "The night round: the night checks due, and dialling in."),
    ctx.h("p", { class: "hint" }, "This page is not ready yet."),
  );
}
