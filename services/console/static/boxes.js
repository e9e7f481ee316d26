// The canvas box editor that the labeling editor and the review queue share.
//
// One image at a time. Boxes are kept in original-image pixels (the manifest's
// left/top/width/height); one view transform (scale, offset) maps them to the
// screen. Pointer work is drawn in requestAnimationFrame. Each image has its own
// undo/redo history (with any `extra` state the host keeps in it, such as image
// labels). A table (`rows`, optional) mirrors the boxes for keyboards and screen
// readers. Predictions are a separate read-only layer (dashed, with confidence),
// never saved unless the host copies them into the boxes.
//
// Invariants: a box always lies within 0…width × 0…height and is at least
// MIN_SIDE image pixels a side (a smaller one is refused with a message, never
// dropped silently); a drag shorter than CLICK screen pixels is a click; resize
// handles are HANDLE screen pixels whatever the zoom.
import { announce } from "./common.js";

const HANDLE = 8;
const CLICK = 4;
const MIN_SIDE = 1;

export const BOX_KEYS = [
  ["B / V", "Box tool / select tool"],
  ["1 … 9", "Label of the selected box, or of the next box drawn"],
  ["N", "Draw the next box with the last label"],
  ["Delete, Backspace", "Delete the selected box"],
  ["Esc", "Cancel the drawing, or unselect"],
  ["Tab", "Select the next box (on the image)"],
  ["Arrows", "With a box selected: move it 1 px (Shift: 10)"],
  ["Ctrl + Z, Ctrl + Shift + Z / Ctrl + Y", "Undo, redo"],
  ["Ctrl + C, Ctrl + V", "Copy, paste the selected box"],
  ["A / P", "Hide or show the boxes / the predictions"],
  ["0, +, -", "Fit, zoom in, zoom out"],
  ["Space + drag, middle button", "Pan"],
];

const clamp = (value, low, high) => Math.max(low, Math.min(high, value));
const round = (value) => Math.round(value * 100) / 100;

export class BoxEditor {
  // stage: the focusable element around `canvas`; labels: a LabelSet; rows: a <tbody> to mirror the
  // boxes in; extra: {get, set} for host state kept in the undo history; onChange(): after any edit.
  constructor({ stage, canvas, labels, rows = null, extra = null, onChange = () => {} }) {
    Object.assign(this, { stage, canvas, labels, rows, extra, onChange });
    this.ctx = canvas.getContext("2d");
    Object.assign(this, {
      image: null, width: 0, height: 0, boxes: [], selected: null, mode: "box", label: labels.list()[0] || null,
      lastLabel: null, scale: 1, ox: 0, oy: 0, drag: null, spaceDown: false, showBoxes: true, clipboard: null,
      undo: [], redo: [], predictions: [], showPredictions: true, editable: true, opened: 0, frame: 0,
    });
    stage.addEventListener("pointerdown", (event) => this.pointerDown(event));
    stage.addEventListener("pointermove", (event) => this.pointerMove(event));
    stage.addEventListener("pointerup", () => this.pointerUp());
    stage.addEventListener("wheel", (event) => {
      event.preventDefault();
      const [sx, sy] = this.point(event);
      this.zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15, sx, sy);
    }, { passive: false });
    window.addEventListener("resize", () => this.fit());
    window.addEventListener("keyup", (event) => { if (event.key === " ") this.spaceDown = false; });
    window.addEventListener("keydown", (event) => this.stageKey(event));
  }

  // --- the image and its boxes -----------------------------------------------------------------
  // Show the image at `src` (null: none); resolves to true once it is drawn, false if another was opened meanwhile.
  open(src) {
    const ticket = ++this.opened;
    this.image = null;
    this.draw();
    if (!src) return Promise.resolve(false);
    return new Promise((resolve) => {
      const image = new Image();
      image.onload = () => {
        if (ticket !== this.opened) { resolve(false); return; }
        Object.assign(this, { image, width: image.naturalWidth, height: image.naturalHeight });
        this.fit();
        resolve(true);
      };
      image.onerror = () => resolve(false);
      image.src = src;
    });
  }

  // New boxes for the image: no selection, a fresh history.
  reset(boxes) {
    this.boxes = boxes.map(({ label, left, top, width, height }) => ({ label, left, top, width, height }));
    Object.assign(this, { selected: null, drag: null, undo: [], redo: [] });
    this.changed();
  }

  setPredictions(predictions) {
    this.predictions = predictions;
    this.draw();
  }

  setEditable(editable) {
    this.editable = editable;
    if (!editable) Object.assign(this, { selected: null, drag: null });
    this.stage.classList.toggle("mode-box", editable && this.mode === "box");
    this.changed();
  }

  snapshot() {
    return JSON.stringify({ boxes: this.boxes, extra: this.extra ? this.extra.get() : null });
  }

  restore(text) {
    const saved = JSON.parse(text);
    this.boxes = saved.boxes;
    if (this.extra) this.extra.set(saved.extra);
    this.selected = null;
  }

  recordUndo() {
    this.undo.push(this.snapshot());
    if (this.undo.length > 200) this.undo.shift();
    this.redo = [];
  }

  step(from, to) {
    if (!from.length) return;
    to.push(this.snapshot());
    this.restore(from.pop());
    this.changed();
  }

  changed() {
    this.renderRows();
    this.onChange();
    this.draw();
  }

  // --- view transform ------------------------------------------------------------------------
  resize() {
    const ratio = window.devicePixelRatio || 1;
    const rect = this.stage.getBoundingClientRect();
    this.canvas.width = Math.round(rect.width * ratio);
    this.canvas.height = Math.round(rect.height * ratio);
    this.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  }

  fit() {
    this.resize();
    const rect = this.stage.getBoundingClientRect();
    if (!this.width) return;
    this.scale = Math.min(rect.width / this.width, rect.height / this.height);
    this.ox = (rect.width - this.width * this.scale) / 2;
    this.oy = (rect.height - this.height * this.scale) / 2;
    this.draw();
  }

  zoom(factor, sx, sy) {
    const rect = this.stage.getBoundingClientRect();
    const x = sx ?? rect.width / 2;
    const y = sy ?? rect.height / 2;
    const scale = Math.max(0.05, Math.min(40, this.scale * factor));
    this.ox = x - ((x - this.ox) * scale) / this.scale;
    this.oy = y - ((y - this.oy) * scale) / this.scale;
    this.scale = scale;
    this.draw();
  }

  toImage(sx, sy) { return [(sx - this.ox) / this.scale, (sy - this.oy) / this.scale]; }

  toScreen(x, y) { return [x * this.scale + this.ox, y * this.scale + this.oy]; }

  // --- drawing -------------------------------------------------------------------------------
  draw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.paint();
    });
  }

  paint() {
    const { ctx } = this;
    const rect = this.stage.getBoundingClientRect();
    ctx.clearRect(0, 0, rect.width, rect.height);
    if (!this.image) return;
    ctx.drawImage(this.image, this.ox, this.oy, this.width * this.scale, this.height * this.scale);
    ctx.font = "12px system-ui, sans-serif";
    if (this.showPredictions) {
      for (const p of this.predictions) this.paintBox(p, { dashed: true, text: `${p.label} ${p.confidence.toFixed(0)} %` });
    }
    if (!this.showBoxes) return;
    this.boxes.forEach((box, i) => this.paintBox(box, { selected: i === this.selected }));
    if (this.drag && this.drag.kind === "draw" && this.drag.box) this.paintBox(this.drag.box, { dashed: true });
  }

  paintBox(box, { selected = false, dashed = false, text = null }) {
    const { ctx } = this;
    const [x, y] = this.toScreen(box.left, box.top);
    const w = box.width * this.scale;
    const h = box.height * this.scale;
    const color = this.labels.color(box.label);
    ctx.lineWidth = selected ? 3 : 2;
    ctx.strokeStyle = color;
    ctx.setLineDash(dashed ? [6, 4] : []);
    ctx.strokeRect(x, y, w, h);
    ctx.setLineDash([]);
    const caption = text || box.label || "(no label)";
    const captionWidth = ctx.measureText(caption).width + 8;
    const top = y - 16 < 0 ? y : y - 16;
    ctx.fillStyle = color;
    ctx.fillRect(x, top, captionWidth, 16);
    ctx.fillStyle = "#fff";
    ctx.fillText(caption, x + 4, top + 12);
    if (selected) {
      ctx.fillStyle = "#fff";
      ctx.strokeStyle = "#000";
      ctx.lineWidth = 1;
      for (const [hx, hy] of this.handles(box)) {
        ctx.fillRect(hx - HANDLE / 2, hy - HANDLE / 2, HANDLE, HANDLE);
        ctx.strokeRect(hx - HANDLE / 2, hy - HANDLE / 2, HANDLE, HANDLE);
      }
    }
  }

  // The 8 handles in screen px: [x, y, which edges they move].
  handles(box) {
    const [x0, y0] = this.toScreen(box.left, box.top);
    const [x1, y1] = this.toScreen(box.left + box.width, box.top + box.height);
    const xm = (x0 + x1) / 2;
    const ym = (y0 + y1) / 2;
    return [[x0, y0, "nw"], [xm, y0, "n"], [x1, y0, "ne"], [x1, ym, "e"], [x1, y1, "se"], [xm, y1, "s"], [x0, y1, "sw"], [x0, ym, "w"]];
  }

  // --- pointer -------------------------------------------------------------------------------
  point(event) {
    const rect = this.stage.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  handleAt(sx, sy) {
    if (this.selected === null) return null;
    const hit = this.handles(this.boxes[this.selected]).find(([hx, hy]) => Math.abs(hx - sx) <= HANDLE && Math.abs(hy - sy) <= HANDLE);
    return hit ? hit[2] : null;
  }

  // The smallest box under the point (image px), or null.
  boxAt(x, y) {
    let found = null;
    this.boxes.forEach((box, i) => {
      const inside = x >= box.left && x <= box.left + box.width && y >= box.top && y <= box.top + box.height;
      if (inside && (found === null || box.width * box.height < this.boxes[found].width * this.boxes[found].height)) found = i;
    });
    return found;
  }

  normalized(x0, y0, x1, y1) {
    const left = clamp(Math.min(x0, x1), 0, this.width);
    const top = clamp(Math.min(y0, y1), 0, this.height);
    const right = clamp(Math.max(x0, x1), 0, this.width);
    const bottom = clamp(Math.max(y0, y1), 0, this.height);
    return { left: round(left), top: round(top), width: round(right - left), height: round(bottom - top) };
  }

  pointerDown(event) {
    if (!this.image) return;
    this.stage.focus();
    this.stage.setPointerCapture(event.pointerId);
    const [sx, sy] = this.point(event);
    const [x, y] = this.toImage(sx, sy);
    if (event.button === 1 || this.spaceDown || !this.editable) {
      this.drag = { kind: "pan", sx, sy, ox: this.ox, oy: this.oy };
      return;
    }
    const handle = this.handleAt(sx, sy);
    if (handle) {
      this.drag = { kind: "resize", handle, start: { ...this.boxes[this.selected] }, sx, sy, moved: false };
      return;
    }
    const under = this.boxAt(x, y);
    if (this.mode === "select" && under !== null) {
      this.selected = under;
      this.drag = { kind: "move", start: { ...this.boxes[under] }, sx, sy, moved: false };
      this.changed();
      return;
    }
    this.drag = { kind: this.mode === "box" ? "draw" : "click", x, y, sx, sy, box: null, under };
  }

  pointerMove(event) {
    const drag = this.drag;
    if (!drag) return;
    const [sx, sy] = this.point(event);
    const far = Math.hypot(sx - drag.sx, sy - drag.sy) >= CLICK;
    if (drag.kind === "pan") {
      this.ox = drag.ox + sx - drag.sx;
      this.oy = drag.oy + sy - drag.sy;
    } else if (drag.kind === "draw" && (far || drag.box)) {
      const [x, y] = this.toImage(sx, sy);
      drag.box = { label: this.label, ...this.normalized(drag.x, drag.y, x, y) };
    } else if (drag.kind === "move" && (far || drag.moved)) {
      if (!drag.moved) this.recordUndo();
      drag.moved = true;
      const box = this.boxes[this.selected];
      box.left = round(clamp(drag.start.left + (sx - drag.sx) / this.scale, 0, this.width - box.width));
      box.top = round(clamp(drag.start.top + (sy - drag.sy) / this.scale, 0, this.height - box.height));
    } else if (drag.kind === "resize" && (far || drag.moved)) {
      if (!drag.moved) this.recordUndo();
      drag.moved = true;
      const s = drag.start;
      let [x0, y0, x1, y1] = [s.left, s.top, s.left + s.width, s.top + s.height];
      const [x, y] = this.toImage(sx, sy);
      if (drag.handle.includes("w")) x0 = x;
      if (drag.handle.includes("e")) x1 = x;
      if (drag.handle.includes("n")) y0 = y;
      if (drag.handle.includes("s")) y1 = y;
      Object.assign(this.boxes[this.selected], this.normalized(x0, y0, x1, y1));
    }
    this.draw();
  }

  pointerUp() {
    const drag = this.drag;
    this.drag = null;
    if (!drag) return;
    if (drag.kind === "draw" && drag.box) {
      if (drag.box.width < MIN_SIDE || drag.box.height < MIN_SIDE) {
        announce("That box is under 1 image pixel on a side, so it was not drawn: zoom in (+) to draw small boxes");
      } else if (!this.label) {
        announce("Choose a label first (a number key, or add one): the box was not drawn");
      } else {
        this.recordUndo();
        this.boxes.push(drag.box);
        this.selected = this.boxes.length - 1;
        this.lastLabel = this.label;
      }
    } else if (drag.kind === "draw" || drag.kind === "click") {
      this.selected = drag.under ?? null; // a click selects the smallest box under the pointer
    } else if (drag.kind === "resize" || drag.kind === "move") {
      const box = this.boxes[this.selected];
      if (box && (box.width < MIN_SIDE || box.height < MIN_SIDE)) {
        this.restore(this.undo.pop());
        announce("A box needs at least 1 image pixel a side: the change was undone");
      }
    }
    this.changed();
  }

  // --- editing -------------------------------------------------------------------------------
  setMode(mode) {
    this.mode = mode;
    this.stage.classList.toggle("mode-box", mode === "box");
    announce(mode === "box" ? "Box tool: drag to draw" : "Select tool: click a box, drag to move it");
    this.changed();
  }

  // The label of the selected box, and of the boxes drawn next.
  setLabel(name) {
    if (!name) return;
    this.labels.add(name);
    if (this.selected !== null) {
      this.recordUndo();
      this.boxes[this.selected].label = name;
    }
    this.label = name;
    this.lastLabel = name;
    this.changed();
  }

  select(index) {
    this.selected = index;
    this.changed();
  }

  deleteBox(index) {
    this.recordUndo();
    this.boxes.splice(index, 1);
    this.selected = null;
    this.changed();
  }

  nudge(dx, dy) {
    const box = this.boxes[this.selected];
    this.recordUndo();
    box.left = round(clamp(box.left + dx, 0, this.width - box.width));
    box.top = round(clamp(box.top + dy, 0, this.height - box.height));
    this.changed();
  }

  // Tab cycles the boxes while the image has the focus (past the last one it leaves); Space pans.
  stageKey(event) {
    if (document.activeElement !== this.stage) return;
    if (event.key === " ") {
      this.spaceDown = true;
      event.preventDefault();
    }
    if (event.key === "Tab" && this.editable && this.boxes.length) {
      const step = event.shiftKey ? -1 : 1;
      const next = this.selected === null ? (step > 0 ? 0 : this.boxes.length - 1) : this.selected + step;
      if (next >= 0 && next < this.boxes.length) {
        event.preventDefault();
        this.select(next);
      }
    }
  }

  // The keys of BOX_KEYS; true when the key was this editor's (a read-only editor takes the view keys only).
  handleKey(event) {
    const key = event.key;
    const lower = key.toLowerCase();
    const ctrl = event.ctrlKey || event.metaKey;
    if (!ctrl && !event.altKey) {
      if (key === "0") { this.fit(); return true; }
      if (key === "+" || key === "=") { this.zoom(1.25); return true; }
      if (key === "-") { this.zoom(1 / 1.25); return true; }
      if (lower === "p") { this.showPredictions = !this.showPredictions; this.draw(); return true; }
    }
    if (!this.editable) return false;
    if (ctrl && (lower === "y" || (lower === "z" && event.shiftKey))) { this.step(this.redo, this.undo); return true; }
    if (ctrl && lower === "z") { this.step(this.undo, this.redo); return true; }
    if (ctrl && lower === "c" && this.selected !== null) {
      this.clipboard = { ...this.boxes[this.selected] };
      announce("Box copied");
      return true;
    }
    if (ctrl && lower === "v" && this.clipboard) {
      this.recordUndo();
      const box = { ...this.clipboard };
      Object.assign(box, this.normalized(box.left + 10, box.top + 10, box.left + 10 + box.width, box.top + 10 + box.height));
      this.boxes.push(box);
      this.select(this.boxes.length - 1);
      return true;
    }
    if (ctrl || event.altKey) return false;
    const digit = /^Digit([1-9])$/.exec(event.code);
    if (digit && !event.shiftKey) {
      const name = this.labels.byKey(Number(digit[1]));
      if (!name) announce(`There is no label ${digit[1]}: add one in the panel`);
      else this.setLabel(name);
      return true;
    }
    if (lower === "b") { this.setMode("box"); return true; }
    if (lower === "v") { this.setMode("select"); return true; }
    if (lower === "n") {
      this.setMode("box");
      if (this.lastLabel) this.setLabel(this.lastLabel);
      this.select(null);
      return true;
    }
    if (lower === "a") { this.showBoxes = !this.showBoxes; this.draw(); return true; }
    if ((key === "Delete" || key === "Backspace") && this.selected !== null) { this.deleteBox(this.selected); return true; }
    if (key === "Escape" && (this.drag || this.selected !== null)) {
      if (this.drag) this.drag = null;
      else this.selected = null;
      this.changed();
      return true;
    }
    const step = event.shiftKey ? 10 : 1;
    const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (this.selected !== null && key in moves) { this.nudge(...moves[key]); return true; }
    return false;
  }

  // --- the table that mirrors the boxes ---------------------------------------------------------
  renderRows() {
    if (!this.rows) return;
    this.rows.replaceChildren(...this.boxes.map((box, i) => {
      const row = document.createElement("tr");
      row.setAttribute("aria-selected", String(i === this.selected));
      const labelCell = document.createElement("td");
      const select = document.createElement("select");
      select.setAttribute("aria-label", `Label of box ${i + 1}`);
      select.disabled = !this.editable;
      for (const name of this.labels.list()) {
        const option = document.createElement("option");
        option.value = name;
        option.textContent = name;
        option.selected = name === box.label;
        select.append(option);
      }
      select.addEventListener("change", () => { this.recordUndo(); box.label = select.value; this.changed(); });
      labelCell.append(select);
      row.append(labelCell);
      for (const field of ["left", "top", "width", "height"]) {
        const cell = document.createElement("td");
        const input = document.createElement("input");
        input.type = "number";
        input.step = "any";
        input.min = "0";
        input.disabled = !this.editable;
        input.value = Math.round(box[field] * 10) / 10;
        input.setAttribute("aria-label", `${field} of box ${i + 1}`);
        input.addEventListener("change", () => {
          const value = Number(input.value);
          if (!Number.isFinite(value)) return;
          this.recordUndo();
          box[field] = value;
          Object.assign(box, this.normalized(box.left, box.top, box.left + box.width, box.top + box.height));
          this.changed();
        });
        cell.append(input);
        row.append(cell);
      }
      const remove = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary";
      button.textContent = "✕";
      button.disabled = !this.editable;
      button.setAttribute("aria-label", `Delete box ${i + 1}`);
      button.addEventListener("click", () => this.deleteBox(i));
      remove.append(button);
      row.append(remove);
      row.addEventListener("click", (event) => {
        if (event.target.closest("input, select, button")) return;
        this.select(i);
      });
      return row;
    }));
  }
}
