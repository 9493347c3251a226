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

// The Search tab: the chosen picture is shown; dragging on it draws the region (in the picture's pixels)
// and picks "Custom region". The results page draws the detected region and the other subjects.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form.search-form");
  if (form) {
    const showMode = () => {
      const stored = form.querySelector("input[name=mode][value=stored]").checked;
      form.querySelector(".by-upload").hidden = stored;
      form.querySelector(".by-stored").hidden = !stored;
    };
    for (const radio of form.querySelectorAll("input[name=mode]")) radio.addEventListener("change", showMode);
    showMode();
    const file = form.querySelector("#picture");
    const picker = form.querySelector(".region-picker");
    const preview = form.querySelector("#preview");
    const box = form.querySelector(".box.drawn");
    const region = form.querySelector("#region");
    file.addEventListener("change", () => {
      if (!file.files.length) { picker.hidden = true; return; }
      preview.src = URL.createObjectURL(file.files[0]);
      picker.hidden = false;
      box.hidden = true;
    });
    let start = null;
    const point = (event) => {
      const r = preview.getBoundingClientRect();
      return { x: Math.min(Math.max(event.clientX - r.left, 0), r.width), y: Math.min(Math.max(event.clientY - r.top, 0), r.height) };
    };
    preview.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      start = point(event);
      preview.setPointerCapture(event.pointerId);
    });
    preview.addEventListener("pointermove", (event) => {
      if (!start) return;
      const p = point(event);
      Object.assign(box.style, { left: Math.min(start.x, p.x) + "px", top: Math.min(start.y, p.y) + "px",
        width: Math.abs(p.x - start.x) + "px", height: Math.abs(p.y - start.y) + "px" });
      box.hidden = false;
    });
    preview.addEventListener("pointerup", (event) => {
      if (!start) return;
      const p = point(event);
      const r = preview.getBoundingClientRect();
      const sx = preview.naturalWidth / r.width, sy = preview.naturalHeight / r.height;
      const x1 = Math.round(Math.min(start.x, p.x) * sx), x2 = Math.round(Math.max(start.x, p.x) * sx);
      const y1 = Math.round(Math.min(start.y, p.y) * sy), y2 = Math.round(Math.max(start.y, p.y) * sy);
      start = null;
      if (x2 - x1 < 2 || y2 - y1 < 2) { box.hidden = true; return; }
      region.value = `${x1},${x2},${y1},${y2}`;
      form.querySelector("input[name=region_mode][value=custom]").checked = true;
    });
  }
  const query = document.querySelector("#query");
  if (query) {
    const draw = () => {
      const stage = query.parentElement;
      const sx = query.clientWidth / query.naturalWidth, sy = query.clientHeight / query.naturalHeight;
      const regions = [query.dataset.region, ...query.dataset.multiRegion.split(";").slice(1)].filter(Boolean);
      regions.forEach((text, at) => {
        const [x1, x2, y1, y2] = text.split(",").map(Number);
        const box = document.createElement("div");
        box.className = at === 0 ? "box main" : "box other";
        Object.assign(box.style, { left: x1 * sx + "px", top: y1 * sy + "px", width: (x2 - x1) * sx + "px", height: (y2 - y1) * sy + "px" });
        stage.appendChild(box);
      });
    };
    if (query.complete) draw(); else query.addEventListener("load", draw);
  }
});
