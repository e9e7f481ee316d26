// Adding images from this computer: pick or drop files and folders, upload them in
// parallel (a progress bar, no cap on how many), then import them with the labels
// chosen, and follow the dataset until the server has checked every image.
import { announce, api, poll } from "./common.js";

const form = document.getElementById("upload-form");
const project = form.dataset.project;
const drop = document.getElementById("drop");
const startButton = document.getElementById("start-upload");
const picked = document.getElementById("picked");
const problems = document.getElementById("file-problems");
const result = document.getElementById("import-result");
const MAX_IMAGE_BYTES = 15 * 1024 * 1024;
const PARALLEL = 6;
const IMAGE = /\.(jpe?g|png)$/i;
const ANNOTATIONS = { voc: /\.xml$/i, coco: /\.json$/i, yolo: /\.(txt|ya?ml)$/i };
let files = []; // [{file, path}]

const kind = () => document.querySelector('input[name="kind"]:checked').value;
const mode = () => form.querySelector('input[name="mode"]:checked').value;

// Other forms on the page create the dataset chosen at the top.
document.querySelectorAll('input[name="kind"][form="upload-form"]').forEach((radio) => radio.addEventListener("change", () => {
  document.querySelectorAll("[data-follows-kind]").forEach((input) => { input.value = kind(); });
}));

// A path inside the dropped folder, as a key: '/' separated, no empty, '.' or '..' part.
function cleanPath(path) {
  return path.replace(/\\/g, "/").split("/")
    .map((part) => part.replace(/[\u0000-\u001f\u007f]/g, ""))
    .filter((part) => part && part !== "." && part !== "..").join("/");
}

function addProblem(text) {
  const line = document.createElement("p");
  line.className = "problem";
  line.textContent = text;
  problems.append(line);
}

function take(list) {
  const known = new Set(files.map((f) => f.path));
  for (const { file, path } of list) {
    const clean = cleanPath(path || file.name);
    if (clean && !known.has(clean)) {
      known.add(clean);
      files.push({ file, path: clean });
    }
  }
  const images = files.filter((f) => IMAGE.test(f.path)).length;
  picked.textContent = `${files.length} file(s) chosen, ${images} image(s).`;
  startButton.disabled = files.length === 0;
}

async function entriesOf(entry, prefix = "") {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, path: prefix + entry.name }];
  }
  const reader = entry.createReader();
  const children = [];
  for (;;) { // readEntries answers in batches of about 100
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    children.push(...batch);
  }
  const nested = await Promise.all(children.map((child) => entriesOf(child, `${prefix}${entry.name}/`)));
  return nested.flat();
}

drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const entries = [...event.dataTransfer.items].map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
  if (entries.length) take((await Promise.all(entries.map((entry) => entriesOf(entry)))).flat());
  else take([...event.dataTransfer.files].map((file) => ({ file, path: file.name })));
});
for (const id of ["pick-files", "pick-folder"]) {
  document.getElementById(id).addEventListener("change", (event) => {
    take([...event.target.files].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
  });
}

function uploadUrl(path) {
  return `/console/uploads/${encodeURIComponent(project)}/${kind()}/${path.split("/").map(encodeURIComponent).join("/")}`;
}

async function uploadAll(chosen, onProgress) {
  const done = [];
  let next = 0;
  async function worker() {
    while (next < chosen.length) {
      const item = chosen[next++];
      try {
        await api(uploadUrl(item.path), { method: "PUT", body: item.file, headers: { "Content-Type": "application/octet-stream" } });
        done.push(item.path);
      } catch (error) {
        addProblem(`${item.path}: ${error.message}`);
      }
      onProgress(item.file.size);
    }
  }
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  return done;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  problems.replaceChildren();
  result.textContent = "";
  const annotations = ANNOTATIONS[mode()];
  const chosen = [];
  for (const item of files) {
    if (IMAGE.test(item.path)) {
      if (item.file.size > MAX_IMAGE_BYTES) addProblem(`${item.path}: ${(item.file.size / 1048576).toFixed(1)} MB; the limit is 15 MB (not uploaded).`);
      else chosen.push(item);
    } else if (annotations && annotations.test(item.path)) {
      chosen.push(item);
    } else {
      addProblem(`${item.path}: not a PNG or JPEG image${annotations ? " nor an annotation file of this format" : ""} (not uploaded).`);
    }
  }
  if (!chosen.some((item) => IMAGE.test(item.path))) {
    addProblem("There is no image to upload.");
    return;
  }
  startButton.disabled = true;
  const box = document.getElementById("progress-box");
  const bar = document.getElementById("progress");
  const text = document.getElementById("progress-text");
  box.hidden = false;
  const total = chosen.reduce((sum, item) => sum + item.file.size, 0) || 1;
  let sent = 0;
  let count = 0;
  const started = performance.now();
  bar.value = 0;
  const uploaded = await uploadAll(chosen, (bytes) => {
    sent += bytes;
    count += 1;
    bar.value = sent / total;
    text.textContent = `${count} of ${chosen.length} files, ${(sent / 1048576).toFixed(1)} of ${(total / 1048576).toFixed(1)} MB`;
  });
  const seconds = (performance.now() - started) / 1000;
  form.dataset.uploadSeconds = seconds.toFixed(3);
  if (!uploaded.some((path) => IMAGE.test(path))) {
    addProblem("No image was uploaded, so nothing was imported.");
    startButton.disabled = false;
    return;
  }
  document.getElementById("progress-label").textContent = "Importing";
  try {
    const answer = await api(`/console/projects/${encodeURIComponent(project)}/datasets/${kind()}/import`,
      { method: "POST", json: { mode: mode(), paths: uploaded } });
    for (const warning of answer.warnings) addProblem(warning);
    result.textContent = `${answer.images} image(s) sent to the ${kind()} dataset in ${seconds.toFixed(1)} s; the server is checking them…`;
    follow();
  } catch (error) {
    addProblem(`The import was refused: ${error.message}`);
    startButton.disabled = false;
  }
});

function follow() {
  const base = `/console/projects/${encodeURIComponent(project)}/datasets/${kind()}`;
  poll(`${base}/status.json`, (state) => {
    if (/_IN_PROGRESS$/.test(state.status)) return true;
    const stats = state.stats;
    result.replaceChildren();
    const summary = document.createElement("span");
    summary.textContent = `${state.status}: ${stats.TotalEntries || 0} images, ${stats.LabeledEntries || 0} labeled, `
      + `${stats.ErrorEntries || 0} with errors. ${state.message || ""} `;
    const link = document.createElement("a");
    link.href = base;
    link.id = "open-dataset";
    link.textContent = "Open the dataset";
    result.append(summary, link);
    form.dataset.done = state.status;
    announce(`Import finished: ${state.status}`);
    files = [];
    startButton.disabled = true;
    return false;
  }, 500);
}
