// What the grid and the editor share: the project's label list (the datasets' labels
// plus labels added here and not used yet, kept in this browser) and the save queue
// that sends edited entries to the server in batches, one request at a time.
import { announce, api } from "./common.js";

const PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#469990", "#800000"];

export class LabelSet {
  constructor(project, known) {
    this.storageKey = `customlabels.labels.${project}`;
    this.known = new Set(known);
    this.names = [...new Set([...known, ...JSON.parse(localStorage.getItem(this.storageKey) || "[]")])].sort();
  }

  list() { return this.names; }

  add(name) {
    if (!name || this.names.includes(name)) return false;
    this.names = [...this.names, name].sort();
    this.keepLocal();
    return true;
  }

  rename(from, to) {
    this.names = [...new Set(this.names.map((n) => (n === from ? to : n)))].sort();
    this.keepLocal();
  }

  remove(name) {
    this.names = this.names.filter((n) => n !== name);
    this.keepLocal();
  }

  keepLocal() {
    localStorage.setItem(this.storageKey, JSON.stringify(this.names.filter((n) => !this.known.has(n))));
  }

  // Label n (1-based) of the list, for the number keys.
  byKey(n) { return this.names[n - 1]; }

  color(name) {
    const index = this.names.indexOf(name);
    return PALETTE[(index < 0 ? 0 : index) % PALETTE.length];
  }
}

// Changes wait 250 ms to be sent with the next ones; the last change of an entry wins.
export class SaveQueue {
  constructor(url, onSaved, onState) {
    this.url = url;
    this.onSaved = onSaved;
    this.onState = onState;
    this.pending = new Map();
    this.sending = false;
    this.timer = null;
    window.addEventListener("beforeunload", (event) => {
      if (this.dirty()) event.preventDefault();
    });
  }

  dirty() { return this.pending.size > 0 || this.sending; }

  put(ref, change) {
    this.pending.set(ref, change);
    this.onState("Saving…");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.flush(), 250);
  }

  async flush() {
    if (this.sending || this.pending.size === 0) return;
    const changes = [...this.pending.values()];
    this.pending.clear();
    this.sending = true;
    const started = performance.now();
    try {
      const answer = await api(this.url, { method: "POST", json: { changes } });
      this.onSaved(answer.entries, performance.now() - started);
      this.onState(this.pending.size ? "Saving…" : "All changes saved");
    } catch (error) {
      const retry = !error.status || error.status >= 500 || error.status === 403
        || ["ResourceInUseException", "ThrottlingException"].includes(error.code);
      if (retry) {
        for (const change of changes) if (!this.pending.has(change.line["source-ref"])) this.pending.set(change.line["source-ref"], change);
        setTimeout(() => this.flush(), 2000);
      }
      this.onState(`Not saved: ${error.message}${retry ? " (trying again)" : ""}`);
      announce(`Not saved: ${error.message}`);
    } finally {
      this.sending = false;
    }
    if (this.pending.size) this.flush();
  }
}
