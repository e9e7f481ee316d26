// The labeling editor: image-level labels and the box editor (boxes.js) over one page
// of entries, walking to the neighbouring pages at either end. Edits are saved when
// leaving the image and on Ctrl+S, through the same queue as the grid.
import { announce, api, pageData, shortcuts } from "./common.js";
import { BOX_KEYS, BoxEditor } from "./boxes.js";
import { LabelSet, SaveQueue } from "./labels.js";

const data = pageData();
const base = `/console/projects/${encodeURIComponent(data.project)}/datasets/${data.kind}`;
const labels = new LabelSet(data.project, data.labels);
const stage = document.getElementById("stage");

const trailKey = `customlabels.trail.${base}?${new URLSearchParams(data.query)}`;
const state = {
  entries: data.entries, index: data.index, page: data.page, token: data.token, next: data.next,
  imageLabels: [], original: "",
};

const editor = new BoxEditor({
  stage, canvas: document.getElementById("canvas"), labels, rows: document.getElementById("box-rows"),
  extra: { get: () => [...state.imageLabels].sort(), set: (imageLabels) => { state.imageLabels = imageLabels; } },
  onChange: () => renderSide(),
});

const queue = new SaveQueue(`${base}/entries`, (entries, ms) => {
  for (const view of entries) {
    const entry = state.entries.find((e) => e.ref === view.ref);
    if (entry) Object.assign(entry, { line: view.line, labels: view.labels, boxes: view.boxes });
  }
  document.body.dataset.lastSaveMs = ms.toFixed(1);
}, (text) => {
  document.getElementById("save-state").textContent = text;
  document.body.dataset.saveState = text;
});

// --- the current image ---------------------------------------------------------------------
const dirty = () => editor.snapshot() !== state.original;

function entry() { return state.entries[state.index]; }

function load(index) {
  state.index = index;
  const current = entry();
  state.imageLabels = [...current.labels];
  editor.reset(current.boxes);
  state.original = editor.snapshot();
  document.getElementById("image-name").textContent = current.name;
  document.getElementById("position").textContent = `${index + 1} of ${state.entries.length} · page ${state.page}`;
  const problems = document.getElementById("problems");
  problems.textContent = current.problems.length ? `Problems: ${current.problems.join(" · ")}` : "";
  problems.className = current.problems.length ? "small problem" : "small";
  const query = new URLSearchParams({ ...data.query, page: state.page, i: index });
  if (state.token) query.set("token", state.token);
  history.replaceState(null, "", `${base}/edit?${query}`);
  editor.open(current.src).then((shown) => {
    if (shown && entry() === current) document.body.dataset.ready = current.ref;
  });
  const following = state.entries[index + 1];
  if (following && following.src) new Image().src = following.src; // prefetch
  renderSide();
}

function changeOf(current) {
  const change = { line: current.line };
  const before = JSON.parse(state.original);
  if (JSON.stringify([...state.imageLabels].sort()) !== JSON.stringify(before.extra)) change.labels = state.imageLabels;
  if (JSON.stringify(editor.boxes) !== JSON.stringify(before.boxes)) {
    change.boxes = editor.boxes;
    change.size = [editor.width, editor.height];
  }
  return change;
}

function save() {
  if (!dirty()) return false;
  if (editor.boxes.length && !editor.width) {
    announce("The image has not loaded: its boxes cannot be saved yet");
    return false;
  }
  const current = entry();
  queue.put(current.ref, changeOf(current));
  Object.assign(current, { labels: [...state.imageLabels], boxes: editor.boxes.map((b) => ({ ...b })) });
  state.original = editor.snapshot();
  renderSide();
  return true;
}

async function go(step) {
  save();
  const target = state.index + step;
  if (target >= 0 && target < state.entries.length) {
    load(target);
    return;
  }
  const trail = JSON.parse(sessionStorage.getItem(trailKey) || "{}");
  trail[state.page] = state.token || "";
  let token;
  let page;
  if (step > 0) {
    if (!state.next) { announce("This is the last image"); return; }
    [token, page] = [state.next, state.page + 1];
  } else {
    if (state.page <= 1 || !((state.page - 1) in trail)) { announce("This is the first image"); return; }
    [token, page] = [trail[state.page - 1], state.page - 1];
  }
  const query = new URLSearchParams(data.query);
  if (token) query.set("token", token);
  try {
    const answer = await api(`${base}/entries.json?${query}`);
    if (!answer.entries.length) { announce("No more images"); return; }
    Object.assign(state, { entries: answer.entries, next: answer.next, token: token || null, page });
    trail[page] = token || "";
    sessionStorage.setItem(trailKey, JSON.stringify(trail));
    load(step > 0 ? 0 : answer.entries.length - 1);
  } catch (error) {
    announce(error.message);
  }
}

// --- the side panel --------------------------------------------------------------------------
function toggleImageLabel(name) {
  editor.recordUndo();
  state.imageLabels = state.imageLabels.includes(name) ? state.imageLabels.filter((l) => l !== name) : [...state.imageLabels, name];
  labels.add(name);
  editor.changed();
}

function renderSide() {
  document.getElementById("mode-box").setAttribute("aria-pressed", String(editor.mode === "box"));
  document.getElementById("mode-select").setAttribute("aria-pressed", String(editor.mode === "select"));
  const list = document.getElementById("labels");
  list.replaceChildren(...labels.list().map((name, i) => {
    const item = document.createElement("li");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.id = `image-label-${i}`;
    check.checked = state.imageLabels.includes(name);
    check.title = `The whole image is ${name}`;
    check.addEventListener("change", () => toggleImageLabel(name));
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = labels.color(name);
    const pick = document.createElement("button");
    pick.type = "button";
    pick.className = "label-pick";
    pick.setAttribute("aria-pressed", String(editor.label === name));
    pick.textContent = i < 9 ? `${i + 1}  ${name}` : name;
    pick.title = `Box label: ${name}`;
    pick.addEventListener("click", () => editor.setLabel(name));
    const visible = document.createElement("label");
    visible.className = "visually-hidden";
    visible.htmlFor = check.id;
    visible.textContent = `Image label ${name}`;
    item.append(check, visible, swatch, pick);
    return item;
  }));
  document.getElementById("dirty").textContent = dirty() ? "unsaved changes" : "";
  document.getElementById("dirty").className = dirty() ? "dirty" : "";
}

document.getElementById("mode-box").addEventListener("click", () => editor.setMode("box"));
document.getElementById("mode-select").addEventListener("click", () => editor.setMode("select"));
document.getElementById("fit").addEventListener("click", () => editor.fit());
document.getElementById("prev").addEventListener("click", () => go(-1));
document.getElementById("next").addEventListener("click", () => go(1));
document.getElementById("save").addEventListener("click", () => { if (!save()) announce("Nothing to save"); });
document.getElementById("add-label").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("new-label");
  const name = input.value.trim();
  if (name) editor.setLabel(name);
  input.value = "";
});

// --- keys ------------------------------------------------------------------------------------
shortcuts([
  ...BOX_KEYS,
  ["Shift + 1 … 9", "Give or take the whole image label n"],
  ["← → (D F)", "Previous / next image (with a box selected, the arrows move it)"],
  ["Ctrl + S", "Save"],
  ["Ctrl + Enter", "Save and go to the next image"],
], (event) => {
  const ctrl = event.ctrlKey || event.metaKey;
  const lower = event.key.toLowerCase();
  if (ctrl && lower === "s") { if (!save()) announce("Nothing to save"); return true; }
  if (ctrl && event.key === "Enter") { go(1); return true; }
  const digit = /^Digit([1-9])$/.exec(event.code);
  if (digit && event.shiftKey && !ctrl && !event.altKey) {
    const name = labels.byKey(Number(digit[1]));
    if (!name) announce(`There is no label ${digit[1]}: add one in the panel`);
    else toggleImageLabel(name);
    return true;
  }
  if (editor.handleKey(event)) return true;
  if (ctrl || event.altKey) return false;
  if (event.key === "ArrowLeft" || lower === "d") { go(-1); return true; }
  if (event.key === "ArrowRight" || lower === "f") { go(1); return true; }
  return false;
});

if (state.entries.length) load(Math.min(state.index, state.entries.length - 1));
else document.getElementById("image-name").textContent = "No image matches";
stage.focus();
