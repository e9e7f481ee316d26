// What every console page shares: the CSRF-carrying fetch, page data, the live
// region, status polling and the keyboard-shortcut registry behind "?".

export function pageData() {
  const element = document.getElementById("page-data");
  return element ? JSON.parse(element.textContent) : {};
}

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]').content;
}

// fetch() with the CSRF token; resolves to the JSON answer, rejects with the server's message.
export async function api(url, { method = "GET", json, body, headers = {} } = {}) {
  const options = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (method !== "GET") options.headers["X-CSRF-Token"] = csrfToken();
  if (json !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json);
  } else if (body !== undefined) {
    options.body = body;
  }
  const response = await fetch(url, options);
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(answer.message || `${response.status} ${response.statusText}`);
    error.code = answer.code;
    error.status = response.status;
    throw error;
  }
  return answer;
}

// A short message for everyone, screen readers included (aria-live="polite").
let clearTimer;
export function announce(text, { keep = false } = {}) {
  const live = document.getElementById("live");
  live.textContent = text;
  clearTimeout(clearTimer);
  if (!keep) clearTimer = setTimeout(() => { live.textContent = ""; }, 4000);
}

// Call onData with url's JSON every `every` ms until it returns false.
export function poll(url, onData, every = 2000) {
  let stopped = false;
  async function tick() {
    if (stopped) return;
    try {
      if ((await onData(await api(url))) === false) return;
    } catch (error) {
      announce(error.message);
    }
    setTimeout(tick, every);
  }
  setTimeout(tick, every);
  return () => { stopped = true; };
}

export const BUSY = /_IN_PROGRESS$|^STARTING$|^STOPPING$|^DELETING$|^CREATING$/;

export function statusClass(status) {
  if (/_COMPLETE$|^TRAINING_COMPLETED$|^RUNNING$|^CREATED$/.test(status)) return "badge ok";
  if (/FAIL|^DELETING$/.test(status)) return "badge bad";
  if (BUSY.test(status)) return "badge busy";
  return "badge";
}

// --- keyboard shortcuts -----------------------------------------------------------
// Shortcuts never fire while typing in a field. Single keys (no Ctrl/Alt/Meta) can be
// turned off in the "?" dialog (WCAG 2.1.4); the choice is kept in this browser.
const OFF_KEY = "customlabels.singleKeysOff";
const helpRows = [["?", "Show this list"]];
const handlers = [];

export function shortcuts(rows, handler) {
  helpRows.push(...rows);
  handlers.push(handler);
}

export function singleKeysOff() {
  return localStorage.getItem(OFF_KEY) === "1";
}

function typing(target) {
  return target.closest && target.closest("input, textarea, select, [contenteditable=''], [contenteditable='true']");
}

function showHelp() {
  const dialog = document.getElementById("keys");
  const body = document.getElementById("keys-body");
  body.replaceChildren(...helpRows.map(([keys, what]) => {
    const row = document.createElement("tr");
    const key = document.createElement("td");
    const kbd = document.createElement("kbd");
    kbd.textContent = keys;
    key.append(kbd);
    const text = document.createElement("td");
    text.textContent = what;
    row.append(key, text);
    return row;
  }));
  const off = document.getElementById("keys-off");
  off.checked = singleKeysOff();
  off.onchange = () => localStorage.setItem(OFF_KEY, off.checked ? "1" : "0");
  dialog.showModal();
}

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || typing(event.target) || document.querySelector("dialog[open]")) return;
  const single = !event.ctrlKey && !event.metaKey && !event.altKey;
  if (single && singleKeysOff() && event.key.length === 1) return;
  if (event.key === "?" && single) {
    event.preventDefault();
    showHelp();
    return;
  }
  for (const handler of handlers) {
    if (handler(event)) {
      event.preventDefault();
      return;
    }
  }
});

// Buttons that copy the text of the element named by data-copy.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = document.getElementById(button.dataset.copy).textContent;
  try {
    await navigator.clipboard.writeText(text);
    announce("Copied to the clipboard");
  } catch {
    announce("Copying was refused by the browser: select the text and copy it");
  }
});
