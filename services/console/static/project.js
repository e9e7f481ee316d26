// The project page: datasets' statistics and model statuses, refreshed while something is in progress.
import { BUSY, pageData, poll, statusClass } from "./common.js";

const data = pageData();

function setBadge(container, status) {
  const badge = container.querySelector("[data-status]");
  if (badge && badge.textContent !== status) {
    badge.textContent = status;
    badge.className = statusClass(status);
  }
}

function busy() {
  return [...document.querySelectorAll("[data-status]")].some((badge) => BUSY.test(badge.textContent));
}

function update(state) {
  for (const [kind, dataset] of Object.entries(state.datasets)) {
    const card = document.querySelector(`[data-dataset="${kind}"]`);
    if (!card || !dataset) continue;
    setBadge(card, dataset.status);
    for (const [name, value] of Object.entries(dataset.stats)) {
      const cell = card.querySelector(`[data-stat="${name}"]`);
      if (cell) cell.textContent = value;
    }
    card.querySelector("[data-message]").textContent = dataset.message;
  }
  for (const version of state.versions) {
    const row = document.querySelector(`tr[data-version="${CSS.escape(version.name)}"]`);
    if (!row) {
      if (BUSY.test(version.status)) window.location.reload();
      continue;
    }
    setBadge(row, version.status);
    row.querySelector("[data-message]").textContent = version.message;
    row.querySelector("[data-f1]").textContent = version.f1 == null ? "—" : version.f1.toFixed(3);
  }
  return true;
}

poll(data.status_url, (state) => update(state) && busy(), 2000);
