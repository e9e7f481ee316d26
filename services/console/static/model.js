// A model version: live status, the threshold what-if, the confusion matrix colours,
// the test results gallery (TP/FP/FN drawn) and the quick test of a photo.
import { BUSY, announce, api, pageData, poll, statusClass } from "./common.js";

const data = pageData();
const OUTCOME = { TP: ["✓", "true positive", "tp"], FP: ["✗", "false positive", "fp"], FN: ["○", "false negative", "fn"] };
const COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#469990", "#800000"];
const labelNames = Object.keys(data.thresholds).sort();
const colorOf = (label) => COLORS[Math.max(0, labelNames.indexOf(label)) % COLORS.length];

// --- status -------------------------------------------------------------------------------
// Watched while it is in progress, and after Start/Stop until it gets where it was sent.
if (BUSY.test(data.status) || data.expect) {
  poll(data.status_url, (state) => {
    const badge = document.querySelector("#status-line [data-status]");
    badge.textContent = state.status;
    badge.className = statusClass(state.status);
    document.getElementById("status-message").textContent = state.message;
    const use = document.getElementById("use-status");
    if (use) use.textContent = state.status;
    if (state.status !== data.status) {
      announce(`${state.status}: reloading`);
      setTimeout(() => window.location.reload(), 800);
      return false;
    }
    return true;
  }, 1000);
}

// --- evaluation: what-if threshold ----------------------------------------------------------
// A prediction is positive when the label is in the ground truth (TP or FN at the
// assumed threshold); it is reported at threshold t when its confidence reaches t.
function metricsAt(thresholdOf) {
  const counts = {};
  for (const label of labelNames) counts[label] = { tp: 0, fp: 0, fn: 0 };
  for (const test of data.tests) {
    for (const p of test.predictions) {
      const c = counts[p.label];
      if (!c) continue;
      const positive = p.outcome === "TP" || p.outcome === "FN";
      const reported = p.confidence > 0 && p.confidence >= thresholdOf(p.label);
      if (positive && reported) c.tp += 1;
      else if (!positive && reported) c.fp += 1;
      else if (positive) c.fn += 1;
    }
  }
  return counts;
}

const slider = document.getElementById("threshold");
if (slider) {
  const output = document.getElementById("threshold-value");
  const show = (thresholdOf) => {
    const counts = metricsAt(thresholdOf);
    for (const [label, c] of Object.entries(counts)) {
      const row = document.querySelector(`#label-metrics tr[data-label="${CSS.escape(label)}"]`);
      if (!row) continue;
      const precision = c.tp + c.fp ? c.tp / (c.tp + c.fp) : 0;
      const recall = c.tp + c.fn ? c.tp / (c.tp + c.fn) : 0;
      const f1 = precision + recall ? (2 * precision * recall) / (precision + recall) : 0;
      row.querySelector("[data-precision]").textContent = precision.toFixed(3);
      row.querySelector("[data-recall]").textContent = recall.toFixed(3);
      row.querySelector("[data-f1]").textContent = f1.toFixed(3);
      row.querySelector("[data-threshold]").textContent = thresholdOf(label).toFixed(3);
    }
  };
  slider.addEventListener("input", () => {
    const t = Number(slider.value);
    output.textContent = t.toFixed(2);
    show(() => t);
  });
  document.getElementById("threshold-reset").addEventListener("click", () => {
    output.textContent = "assumed";
    slider.value = "0.5";
    show((label) => data.thresholds[label] ?? 0.5);
  });
}

// Confusion matrix cells shaded by value (text stays readable: white on dark, dark on light).
for (const cell of document.querySelectorAll("#confusion td[data-value]")) {
  const value = Number(cell.dataset.value);
  cell.style.background = `rgba(10, 88, 184, ${0.08 + 0.92 * value})`;
  cell.style.color = value > 0.45 ? "#fff" : "#1d232b";
}

// --- test results gallery --------------------------------------------------------------------
function drawBoxes(context, scale, boxes, dashed) {
  for (const box of boxes) {
    const [left, top, width, height] = Array.isArray(box.box) ? box.box : [box.left, box.top, box.width, box.height];
    context.setLineDash(dashed ? [6, 4] : []);
    context.lineWidth = 2;
    context.strokeStyle = colorOf(box.label);
    context.strokeRect(left * scale, top * scale, width * scale, height * scale);
    if (dashed) {
      const [icon] = OUTCOME[box.outcome] || ["?"];
      const text = `${icon} ${box.label} ${(100 * box.confidence).toFixed(0)}%`;
      context.font = "11px system-ui, sans-serif";
      context.fillStyle = "rgba(0, 0, 0, 0.7)";
      context.fillRect(left * scale, top * scale, context.measureText(text).width + 6, 14);
      context.fillStyle = "#fff";
      context.fillText(text, left * scale + 3, top * scale + 11);
    }
  }
}

function resultItem(test) {
  const item = document.createElement("li");
  item.className = "result";
  const canvas = document.createElement("canvas");
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `${test.name}: truth ${test.labels.join(", ") || "no image label"}, ${test.boxes.length} true box(es)`);
  item.append(canvas);
  if (test.src) {
    const image = new Image();
    image.onload = () => {
      const scale = Math.min(1, 440 / image.naturalWidth);
      canvas.width = Math.round(image.naturalWidth * scale);
      canvas.height = Math.round(image.naturalHeight * scale);
      const context = canvas.getContext("2d");
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      drawBoxes(context, scale, test.boxes, false);
      drawBoxes(context, scale, test.predictions.filter((p) => p.box), true);
    };
    image.src = test.src;
  }
  const name = document.createElement("div");
  name.className = "small";
  name.textContent = `${test.name} · truth: ${test.labels.join(", ") || (test.boxes.length ? `${test.boxes.length} box(es)` : "none")}`;
  const list = document.createElement("ul");
  for (const p of test.predictions) {
    const [icon, words, css] = OUTCOME[p.outcome] || ["", p.outcome, ""];
    const line = document.createElement("li");
    line.className = css;
    line.textContent = `${icon} ${p.label} ${(100 * p.confidence).toFixed(1)} % (${words})`;
    list.append(line);
  }
  const outcome = document.createElement("div");
  outcome.className = "outcome";
  outcome.append(name, list);
  item.append(outcome);
  return item;
}

const results = document.getElementById("results");
if (results) {
  const PAGE = 40;
  let shown = PAGE;
  const more = document.getElementById("results-more");
  const render = () => {
    const label = document.getElementById("r-label").value;
    const outcome = document.getElementById("r-outcome").value;
    const matching = data.tests.filter((test) => test.predictions.some((p) => (!label || p.label === label) && (!outcome || p.outcome === outcome))
      || (!outcome && (!label || test.labels.includes(label) || test.boxes.some((b) => b.label === label))));
    results.replaceChildren(...matching.slice(0, shown).map(resultItem));
    document.getElementById("results-count").textContent = `${matching.length} of ${data.tests.length} test images`;
    more.hidden = matching.length <= shown;
  };
  document.getElementById("result-filters").addEventListener("change", () => { shown = PAGE; render(); });
  more.addEventListener("click", () => { shown += PAGE; render(); });
  render();
}

// --- quick test ------------------------------------------------------------------------------
const tryCanvas = document.getElementById("try-canvas");
if (tryCanvas) {
  const confidence = document.getElementById("min-confidence");
  const confidenceValue = document.getElementById("min-confidence-value");
  let current = null; // {bitmap, labels}

  const render = () => {
    if (!current) return;
    const minimum = Number(confidence.value);
    const { bitmap, labels } = current;
    const scale = Math.min(1, 560 / bitmap.width);
    tryCanvas.width = Math.round(bitmap.width * scale);
    tryCanvas.height = Math.round(bitmap.height * scale);
    const context = tryCanvas.getContext("2d");
    context.drawImage(bitmap, 0, 0, tryCanvas.width, tryCanvas.height);
    const kept = labels.filter((l) => l.Confidence >= minimum);
    for (const label of kept) {
      const box = label.Geometry && label.Geometry.BoundingBox;
      if (!box) continue;
      context.lineWidth = 3;
      context.strokeStyle = colorOf(label.Name);
      context.strokeRect(box.Left * tryCanvas.width, box.Top * tryCanvas.height, box.Width * tryCanvas.width, box.Height * tryCanvas.height);
      const text = `${label.Name} ${label.Confidence.toFixed(0)}%`;
      context.font = "13px system-ui, sans-serif";
      context.fillStyle = "rgba(0, 0, 0, 0.7)";
      context.fillRect(box.Left * tryCanvas.width, box.Top * tryCanvas.height, context.measureText(text).width + 6, 16);
      context.fillStyle = "#fff";
      context.fillText(text, box.Left * tryCanvas.width + 3, box.Top * tryCanvas.height + 12);
    }
    const list = document.getElementById("try-labels");
    list.replaceChildren(...kept.map((label) => {
      const item = document.createElement("li");
      item.textContent = `${label.Name}: ${label.Confidence.toFixed(1)} %${label.Geometry ? " (box drawn)" : ""}`;
      return item;
    }));
    if (!kept.length) list.textContent = `Nothing at ${minimum} % or more.`;
    document.body.dataset.detected = String(kept.length);
  };

  const tryFile = async (file) => {
    if (!file) return;
    announce("Asking the model…", { keep: true });
    try {
      const answer = await api(data.detect_url, { method: "POST", body: file, headers: { "Content-Type": file.type || "application/octet-stream" } });
      current = { bitmap: await createImageBitmap(file), labels: answer.labels };
      render();
      announce(`${answer.labels.length} label(s) found`);
    } catch (error) {
      announce(error.message);
      document.getElementById("try-labels").textContent = error.message;
    }
  };

  confidence.addEventListener("input", () => { confidenceValue.textContent = confidence.value; render(); });
  document.getElementById("try-file").addEventListener("change", (event) => tryFile(event.target.files[0]));
  const drop = document.getElementById("try-drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    tryFile(event.dataTransfer.files[0]);
  });
}
