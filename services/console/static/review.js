// The review queue: one image at a time with the model's predictions drawn, answered
// with single keys. The next tasks and their images are fetched ahead, and an answer is
// sent in the background while the next image shows, so a reviewer never waits on the
// network. Corrections of boxes use the labeling editor's box editor (boxes.js).
//
// Keys (while not correcting): A / Enter accept, 1-9 the right label (detection: start
// correcting with that label), C correct, N none of the labels (negative), S skip.
// Correcting boxes: the box editor's keys, Ctrl+Enter (or Enter) sends, Esc goes back.
import { announce, api, pageData, shortcuts } from "./common.js";
import { BOX_KEYS, BoxEditor } from "./boxes.js";
import { LabelSet } from "./labels.js";

const data = pageData();
const AHEAD = 3; // tasks fetched (with their images) ahead of the one shown
const WORKER_KEY = "customlabels.reviewer";
const $ = (id) => document.getElementById(id);

const reviewer = $("reviewer");
reviewer.value = localStorage.getItem(WORKER_KEY) || data.worker;

const editor = new BoxEditor({
  stage: $("stage"), canvas: $("canvas"), labels: new LabelSet("review", []), rows: $("box-rows"),
  onChange: () => { $("box-count").textContent = String(editor.boxes.length); },
});
editor.setEditable(false);

const queue = {
  names: [], more: false, details: new Map(), done: new Set(), task: null, shownAt: 0, ready: false,
  correcting: false, chosen: new Set(), answered: 0, skipped: 0, pending: 0, loading: null, turn: 0,
};

// --- the queue ----------------------------------------------------------------------------------
function worker() { return reviewer.value.trim() || data.worker; }

function listUrl() {
  const query = new URLSearchParams({ worker: worker() });
  if (data.project) query.set("project", data.project);
  if (data.flow) query.set("flow", data.flow);
  return `${data.tasks_url}?${query}`;
}

// The reviewer's queue from the server; one request at a time per reviewer (a newer reviewer's wins).
function refill() {
  const url = listUrl();
  if (!queue.loading || queue.loading.url !== url) {
    const loading = api(url).then((answer) => {
      if (queue.loading !== loading) return; // another reviewer's list was asked for since
      const current = queue.task && queue.task.name;
      queue.names = answer.tasks.map((t) => t.name).filter((name) => !queue.done.has(name) && name !== current);
      queue.more = answer.more;
    }).finally(() => { if (queue.loading === loading) queue.loading = null; });
    loading.url = url;
    queue.loading = loading;
  }
  return queue.loading;
}

// GetReviewTask through the page, once per task; its image is fetched as soon as the task is.
function detail(name) {
  if (!queue.details.has(name)) {
    const promise = api(`${data.task_url}${encodeURIComponent(name)}.json`).then((task) => {
      if (task.image.url) new Image().src = task.image.url;
      return task;
    });
    promise.catch(() => queue.details.delete(name));
    queue.details.set(name, promise);
  }
  return queue.details.get(name);
}

function prefetch() {
  for (const name of queue.names.slice(0, AHEAD)) detail(name).catch(() => {});
}

// The next task; a later call (the next answer, another reviewer) supersedes one still waiting.
async function showNext() {
  const turn = ++queue.turn;
  leaveCorrection();
  queue.task = null;
  queue.ready = false;
  delete document.body.dataset.task;
  document.body.dataset.queue = "loading";
  if (queue.names.length < AHEAD && (queue.more || !queue.names.length)) {
    try { await refill(); } catch (error) { announce(error.message); }
    if (turn !== queue.turn) return;
  }
  const line = queue.names;
  const name = line.shift();
  progress();
  if (!name) {
    $("review").hidden = true;
    $("empty").hidden = false;
    $("empty-who").textContent = worker();
    editor.open(null);
    document.body.dataset.queue = "empty";
    return;
  }
  document.body.dataset.queue = "busy";
  $("review").hidden = false;
  $("empty").hidden = true;
  prefetch();
  let task;
  try {
    task = await detail(name);
  } catch (error) {
    announce(`${name}: ${error.message}`);
    queue.done.add(name);
    if (turn === queue.turn) showNext();
    return;
  }
  if (turn !== queue.turn) {
    if (queue.names === line) line.unshift(name); // not shown: first in line again (unless the list was replaced)
    return;
  }
  show(task);
}

function show(task) {
  queue.task = task;
  queue.chosen = new Set();
  progress();
  editor.labels = new LabelSet(`review.${task.project || task.flow}`, task.labels);
  editor.label = task.labels[0] || null;
  editor.reset([]);
  editor.setPredictions([]);
  $("task-title").textContent = task.title || (task.type === "DETECTION" ? "Are the boxes right?" : "Is the label right?");
  $("task-description").textContent = task.description;
  $("task-meta").textContent = [task.project && `project ${task.project}`, task.version && `model ${task.version}`,
    `answer ${task.answers + 1} of ${task.task_count}`].filter(Boolean).join(" · ");
  $("image-name").textContent = task.image.ref ? task.image.ref.split("/").pop() : "(no image)";
  renderPredictions();
  renderLabels();
  if (!task.image.url) {
    announce("This task's image is missing: skip it (S)");
    return;
  }
  editor.open(task.image.url).then((drawn) => {
    if (!drawn || queue.task !== task) return;
    editor.setPredictions(pixelBoxes(task.predictions));
    queue.ready = true;
    queue.shownAt = performance.now();
    document.body.dataset.task = task.name;
    if (!document.activeElement.closest("input, select, textarea")) $("stage").focus();
  });
}

// Predictions with boxes, in pixels of the image as loaded.
function pixelBoxes(predictions) {
  return predictions.filter((p) => p.box).map((p) => ({
    label: p.label, confidence: p.confidence, reported: p.reported,
    left: p.box.left * editor.width, top: p.box.top * editor.height,
    width: p.box.width * editor.width, height: p.box.height * editor.height,
  }));
}

// --- answering ----------------------------------------------------------------------------------
function answer(verdict, extra = {}) {
  const task = queue.task;
  if (!task) return;
  if (!queue.ready && verdict !== "SKIP") {
    announce(task.image.url ? "The image is still loading" : "This task has no image: skip it (S)");
    return;
  }
  const body = { verdict, worker: worker(), seconds: (performance.now() - queue.shownAt) / 1000, ...extra };
  queue.done.add(task.name);
  queue.details.delete(task.name);
  queue.pending += 1;
  document.body.dataset.pending = String(queue.pending);
  const item = remember(task, verdict, extra);
  api(`${data.task_url}${encodeURIComponent(task.name)}/answer`, { method: "POST", json: body }).then((result) => {
    if (verdict === "SKIP") queue.skipped += 1;
    else queue.answered += 1;
    item.querySelector(".outcome").textContent = result.status === "Completed" ? "done" : `${result.answers} of ${result.task_count} answers`;
  }).catch((error) => {
    item.classList.add("bad-text");
    item.querySelector(".outcome").textContent = `not saved: ${error.message}`;
    announce(`Not saved: ${error.message}`);
    if (!error.status || error.status >= 500) queue.done.delete(task.name); // the next refill offers it again
  }).finally(() => {
    queue.pending -= 1;
    document.body.dataset.pending = String(queue.pending);
    document.body.dataset.answered = String(queue.answered);
    progress();
  });
  showNext();
}

function accept() {
  if (queue.task && queue.task.type === "MULTILABEL" && queue.chosen.size) {
    answer("CORRECT", { labels: [...queue.chosen] });
  } else {
    answer("ACCEPT");
  }
}

// Label n (1-based) is the right one: a single-label task is answered at once.
function pickLabel(n) {
  const task = queue.task;
  const name = task && task.labels[n - 1];
  if (!name) { announce(`There is no label ${n}`); return; }
  if (task.type === "DETECTION") {
    correct();
    editor.setLabel(name);
  } else if (task.type === "MULTILABEL") {
    if (queue.chosen.has(name)) queue.chosen.delete(name);
    else queue.chosen.add(name);
    renderLabels();
  } else {
    const reported = task.predictions.filter((p) => p.reported).map((p) => p.label);
    if (reported.length === 1 && reported[0] === name) answer("ACCEPT");
    else answer("CORRECT", { labels: [name] });
  }
}

// Detection: correct the boxes in the box editor, starting from what the model reported.
function correct() {
  const task = queue.task;
  if (!task || queue.correcting) return;
  if (task.type !== "DETECTION") {
    announce("Press the number of the right label");
    $("labels").querySelector("button")?.focus();
    return;
  }
  if (!queue.ready) { announce("The image is still loading"); return; }
  queue.correcting = true;
  $("correction").hidden = false;
  $("answer-buttons").hidden = true;
  editor.setEditable(true);
  editor.reset(pixelBoxes(task.predictions.filter((p) => p.reported)));
  $("stage").focus();
  announce("Correcting: draw, move or delete boxes; Ctrl+Enter sends them, Esc goes back");
}

function leaveCorrection() {
  if (!queue.correcting) return;
  queue.correcting = false;
  $("correction").hidden = true;
  $("answer-buttons").hidden = false;
  editor.reset([]);
  editor.setEditable(false);
}

function sendCorrection() {
  const boxes = editor.boxes.map(({ label, left, top, width, height }) => ({ label, left, top, width, height }));
  if (!boxes.length) {
    announce("No box left: sent as none of the labels");
    answer("NEGATIVE");
    return;
  }
  answer("CORRECT", { boxes, size: [editor.width, editor.height] });
}

// --- the page around the image ------------------------------------------------------------------
function renderPredictions() {
  const task = queue.task;
  const list = $("predictions");
  if (!task.predictions.length) {
    const none = document.createElement("li");
    none.textContent = "nothing (no label reached any confidence)";
    list.replaceChildren(none);
    return;
  }
  list.replaceChildren(...task.predictions.map((p) => {
    const item = document.createElement("li");
    item.className = p.reported ? "reported" : "";
    const name = document.createElement("span");
    name.textContent = `${p.reported ? "✓ " : ""}${p.label}`;
    const meter = document.createElement("meter");
    meter.min = 0;
    meter.max = 100;
    meter.value = p.confidence;
    meter.setAttribute("aria-label", `${p.label} confidence`);
    const figures = document.createElement("span");
    figures.className = "small muted";
    figures.textContent = `${p.confidence.toFixed(1)} % (threshold ${p.threshold.toFixed(1)} %)`;
    item.append(name, meter, figures);
    return item;
  }));
}

function renderLabels() {
  const task = queue.task;
  $("labels").replaceChildren(...task.labels.map((name, i) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "label-pick";
    button.textContent = i < 9 ? `${i + 1}  ${name}` : name;
    button.setAttribute("aria-pressed", String(queue.chosen.has(name)));
    button.addEventListener("click", () => pickLabel(i + 1));
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = editor.labels.color(name);
    item.append(swatch, button);
    return item;
  }));
  $("labels-hint").textContent = {
    DETECTION: "A number starts correcting the boxes with that label.",
    MULTILABEL: "Numbers pick the right labels; Enter sends them.",
  }[task.type] || "A number answers: that is the right label.";
}

function remember(task, verdict, extra) {
  const item = document.createElement("li");
  const what = extra.labels ? `${verdict.toLowerCase()} → ${extra.labels.join(", ")}`
    : extra.boxes ? `${verdict.toLowerCase()} → ${extra.boxes.length} box(es)` : verdict.toLowerCase();
  item.textContent = `${task.image.ref ? task.image.ref.split("/").pop() : task.name}: ${what} `;
  const outcome = document.createElement("span");
  outcome.className = "outcome muted";
  outcome.textContent = "sending…";
  item.append(outcome);
  $("recent").prepend(item);
  while ($("recent").children.length > 8) $("recent").lastElementChild.remove();
  return item;
}

function progress() {
  const waiting = queue.names.length + (queue.task ? 1 : 0);
  const handled = queue.answered + queue.skipped;
  $("progress").max = Math.max(1, handled + waiting);
  $("progress").value = handled;
  $("progress-text").textContent = `${queue.answered} answered · ${queue.skipped} skipped · ${waiting}${queue.more ? "+" : ""} waiting`;
}

$("accept").addEventListener("click", accept);
$("correct").addEventListener("click", correct);
$("negative").addEventListener("click", () => answer("NEGATIVE"));
$("skip").addEventListener("click", () => answer("SKIP"));
$("send-correction").addEventListener("click", sendCorrection);
$("cancel-correction").addEventListener("click", leaveCorrection);
reviewer.addEventListener("change", () => {
  localStorage.setItem(WORKER_KEY, reviewer.value.trim());
  queue.names = [];
  queue.details.clear();
  // The name is set: the keys answer again. The stage takes the focus now, or (hidden while the first list
  // is on its way) when the next task shows, which it does only when no field has the focus.
  reviewer.blur();
  $("stage").focus();
  showNext();
});

shortcuts([
  ["A, Enter", "Accept: the model is right"],
  ["1 … 9", "The right label is n (detection: correct the boxes with label n)"],
  ["C", "Correct the boxes (detection)"],
  ["N", "None of the labels is in the image"],
  ["S", "Skip: someone else answers"],
  ["Ctrl + Enter", "While correcting: send the boxes"],
  ["Esc", "While correcting: unselect, then go back without sending"],
  ...BOX_KEYS.map(([keys, what]) => [keys, `While correcting: ${what.charAt(0).toLowerCase()}${what.slice(1)}`]),
], (event) => {
  const ctrl = event.ctrlKey || event.metaKey;
  if (queue.correcting) {
    if (event.key === "Enter" && !event.altKey) { sendCorrection(); return true; }
    if (editor.handleKey(event)) return true;
    if (event.key === "Escape") { leaveCorrection(); return true; }
    return false;
  }
  if (editor.handleKey(event)) return true; // view keys: fit, zoom, predictions
  if (ctrl || event.altKey) return false;
  const lower = event.key.toLowerCase();
  const digit = /^Digit([1-9])$/.exec(event.code);
  if (digit) { pickLabel(Number(digit[1])); return true; }
  if (lower === "a" || event.key === "Enter") { accept(); return true; }
  if (lower === "c") { correct(); return true; }
  if (lower === "n") { answer("NEGATIVE"); return true; }
  if (lower === "s") { answer("SKIP"); return true; }
  return false;
});

showNext();
