// The dataset grid: keyboard and mouse selection, labels from number keys, paging.
import { announce, api, pageData, shortcuts } from "./common.js";
import { LabelSet, SaveQueue } from "./labels.js";

const data = pageData();
const base = `/console/projects/${encodeURIComponent(data.project)}/datasets/${data.kind}`;
const labels = new LabelSet(data.project, data.labels);
const tiles = [...document.querySelectorAll(".tile")];
const saveState = document.getElementById("save-state");
let focused = 0;
let anchor = null;

// --- paging: a trail of page tokens in this tab, so Previous works with opaque tokens ----
const trailKey = `customlabels.trail.${base}?${new URLSearchParams(data.query)}`;
const trail = JSON.parse(sessionStorage.getItem(trailKey) || "{}");
trail[data.page] = data.token || "";
sessionStorage.setItem(trailKey, JSON.stringify(trail));
const previous = document.getElementById("prev-page");
if (data.page > 1 && (data.page - 1) in trail) {
  const query = new URLSearchParams({ ...data.query, page: data.page - 1 });
  if (trail[data.page - 1]) query.set("token", trail[data.page - 1]);
  previous.href = `${base}?${query}`;
  previous.hidden = false;
}

function editorUrl(index) {
  const query = new URLSearchParams({ ...data.query, page: data.page, i: index });
  if (data.token) query.set("token", data.token);
  return `${base}/edit?${query}`;
}

// --- the label bar and dialog ---------------------------------------------------------------
function renderLabelBar() {
  const bar = document.getElementById("labelbar");
  bar.replaceChildren(...labels.list().map((name, i) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = i < 9 ? `${i + 1} ${name}` : name;
    button.title = `Label the selected images ${name} (Shift+click: add or remove, keeping other labels)`;
    button.addEventListener("click", (event) => assign(name, event.shiftKey));
    return button;
  }));
  if (!labels.list().length) bar.textContent = "No labels yet: add them with Labels… (L).";
}

function renderLabelDialog() {
  const body = document.getElementById("labels-table");
  body.replaceChildren(...labels.list().map((name, i) => {
    const row = document.createElement("tr");
    const key = document.createElement("td");
    key.textContent = i < 9 ? String(i + 1) : "";
    const label = document.createElement("td");
    label.textContent = name;
    const count = document.createElement("td");
    count.className = "num";
    const used = labels.known.has(name);
    count.textContent = used ? "in use" : "0";
    const actions = document.createElement("td");
    if (!used) {
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "secondary";
      remove.textContent = "Remove";
      remove.addEventListener("click", () => { labels.remove(name); renderLabels(); });
      actions.append(remove);
    }
    row.append(key, label, count, actions);
    return row;
  }));
}

// Renaming rewrites every entry carrying the label (both datasets), on the server.
document.getElementById("rename-label").addEventListener("submit", async (event) => {
  event.preventDefault();
  const from = document.getElementById("rename-from").value;
  const to = document.getElementById("rename-to").value.trim();
  if (!to || to === from) return;
  try {
    const answer = await api(`/console/projects/${encodeURIComponent(data.project)}/labels/rename`, { method: "POST", json: { from, to } });
    labels.rename(from, to);
    document.body.dataset.renamed = String(answer.renamed);
    announce(`Renamed on ${answer.renamed} image(s); reloading`);
    setTimeout(() => window.location.reload(), 1500);
  } catch (error) {
    announce(`Not renamed: ${error.message}`);
  }
});

function renderLabels() {
  renderLabelBar();
  renderLabelDialog();
  const from = document.getElementById("rename-from");
  from.replaceChildren(...labels.list().filter((name) => labels.known.has(name)).map((name) => {
    const option = document.createElement("option");
    option.textContent = name;
    option.value = name;
    return option;
  }));
}

document.getElementById("manage-labels").addEventListener("click", () => document.getElementById("labels-dialog").showModal());
document.getElementById("add-label").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = document.getElementById("new-label");
  const name = input.value.trim();
  if (name && labels.add(name)) announce(`Label ${name} added: it is saved with the first image you give it`);
  input.value = "";
  renderLabels();
});

// --- selection -----------------------------------------------------------------------------
function selected() {
  const chosen = tiles.filter((tile) => tile.getAttribute("aria-selected") === "true");
  return chosen.length ? chosen : (tiles[focused] ? [tiles[focused]] : []);
}

function setSelected(tile, on) { tile.setAttribute("aria-selected", on ? "true" : "false"); }

function focusTile(index) {
  if (!tiles.length) return;
  focused = Math.max(0, Math.min(tiles.length - 1, index));
  tiles.forEach((tile, i) => { tile.tabIndex = i === focused ? 0 : -1; });
  tiles[focused].focus();
}

function selectRange(from, to) {
  const [low, high] = from < to ? [from, to] : [to, from];
  tiles.forEach((tile, i) => setSelected(tile, i >= low && i <= high));
}

function columns() {
  if (tiles.length < 2) return 1;
  const top = tiles[0].offsetTop;
  const index = tiles.findIndex((tile) => tile.offsetTop !== top);
  return index < 0 ? tiles.length : index;
}

tiles.forEach((tile, i) => {
  tile.addEventListener("click", (event) => {
    if (event.shiftKey && anchor !== null) selectRange(anchor, i);
    else if (event.ctrlKey || event.metaKey) setSelected(tile, tile.getAttribute("aria-selected") !== "true");
    else {
      const only = tile.getAttribute("aria-selected") === "true" && selected().length === 1;
      tiles.forEach((t) => setSelected(t, false));
      setSelected(tile, !only);
    }
    anchor = i;
    focusTile(i);
  });
  tile.addEventListener("dblclick", () => { window.location.href = editorUrl(i); });
  tile.addEventListener("focus", () => { focused = i; });
});

// --- labeling ------------------------------------------------------------------------------
const queue = new SaveQueue(`${base}/entries`, (entries, ms) => {
  for (const view of entries) {
    const index = data.entries.findIndex((e) => e.ref === view.ref);
    if (index >= 0) data.entries[index].line = view.line;
  }
  document.body.dataset.lastSaveMs = ms.toFixed(1);
}, (text) => { saveState.textContent = text; document.body.dataset.saveState = text; });

function showLabels(index) {
  const entry = data.entries[index];
  const box = tiles[index].querySelector("[data-labels]");
  box.replaceChildren(...entry.labels.map((name) => {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = name;
    return badge;
  }));
  if (entry.boxes.length) {
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = `${entry.boxes.length} box${entry.boxes.length === 1 ? "" : "es"}`;
    box.append(badge);
  }
}

// Replace the image-level labels with `name` (toggle: add or remove it, keeping the others).
function assign(name, toggle = false, labelsFor = null) {
  const chosen = selected();
  for (const tile of chosen) {
    const index = Number(tile.dataset.index);
    const entry = data.entries[index];
    let next;
    if (labelsFor) next = labelsFor(entry);
    else if (toggle) next = entry.labels.includes(name) ? entry.labels.filter((l) => l !== name) : [...entry.labels, name];
    else next = [name];
    entry.labels = next;
    queue.put(entry.ref, { line: entry.line, labels: next });
    showLabels(index);
  }
  if (name) labels.add(name);
  renderLabels();
  announce(name ? `${chosen.length} image(s): ${name}` : `${chosen.length} image(s): labels removed`);
  const explicit = tiles.some((tile) => tile.getAttribute("aria-selected") === "true");
  if (!explicit && chosen.length === 1) focusTile(focused + 1); // label and move on
}

shortcuts([
  ["← ↑ → ↓", "Move between images"],
  ["Space", "Select or unselect the image"],
  ["Shift + arrows", "Select a range"],
  ["Ctrl + A", "Select every image of the page"],
  ["Esc", "Unselect all"],
  ["1 … 9", "Give the selected images (or this one) label n, replacing their labels"],
  ["Shift + 1 … 9", "Add or remove label n, keeping the other labels"],
  ["0", "Remove the image-level labels"],
  ["L", "Labels: add, rename, remove"],
  ["Enter", "Open the image in the editor"],
  ["[ ]", "Previous / next page"],
], (event) => {
  const key = event.key;
  const width = columns();
  const moves = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -width, ArrowDown: width };
  if (key in moves && tiles.length) {
    const from = focused;
    focusTile(focused + moves[key]);
    if (event.shiftKey) {
      if (anchor === null) anchor = from;
      selectRange(anchor, focused);
    } else {
      anchor = focused;
    }
    return true;
  }
  if (key === " " && tiles.length) {
    setSelected(tiles[focused], tiles[focused].getAttribute("aria-selected") !== "true");
    anchor = focused;
    return true;
  }
  if ((event.ctrlKey || event.metaKey) && key.toLowerCase() === "a") {
    tiles.forEach((tile) => setSelected(tile, true));
    return true;
  }
  if (key === "Escape") {
    tiles.forEach((tile) => setSelected(tile, false));
    return true;
  }
  const digit = /^Digit([1-9])$/.exec(event.code);
  if (digit && !event.ctrlKey && !event.metaKey && !event.altKey && tiles.length) {
    const name = labels.byKey(Number(digit[1]));
    if (name) assign(name, event.shiftKey);
    else announce(`There is no label ${digit[1]}: add labels with L`);
    return true;
  }
  if (key === "0" && tiles.length) {
    assign(null, false, () => []);
    return true;
  }
  if (key.toLowerCase() === "l" && !event.ctrlKey && !event.metaKey) {
    document.getElementById("labels-dialog").showModal();
    return true;
  }
  if (key === "Enter" && tiles.length) {
    window.location.href = editorUrl(focused);
    return true;
  }
  if (key === "]" || key === "[") {
    const link = document.getElementById(key === "]" ? "next-page" : "prev-page");
    if (link && !link.hidden && link.href) window.location.href = link.href;
    return true;
  }
  return false;
});

renderLabels();
if (tiles.length && !document.activeElement?.closest("form")) tiles[0].tabIndex = 0;
