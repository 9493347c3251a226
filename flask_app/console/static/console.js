// The console's script: small behaviours on top of working HTML forms (every page works without it).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // A form that asks for a typed confirmation (clear all pictures) enables its button only when it matches.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    const input = form.querySelector("input[name=confirmation]");
    const button = form.querySelector("button[type=submit]");
    if (!input || !button) continue;
    const check = () => { button.disabled = input.value !== form.dataset.confirm; };
    input.addEventListener("input", check);
    check();
  }
});
