// Sorting and filtering of the leaderboard's tables. No network, no dependencies.
"use strict";

// A cell's sort key: its data-value as a number (null when empty: such rows go last), else its text.
function sortKey(cell, numeric) {
  if (!numeric) return cell.textContent.trim().toLowerCase();
  const value = cell.dataset.value;
  return value === undefined || value === "" ? null : Number(value);
}

// First click: best first for a number column (descending unless lower is better), A-Z for text.
function sortTable(th) {
  const row = th.parentNode;
  const index = Array.prototype.indexOf.call(row.children, th);
  const numeric = th.dataset.type === "number";
  const previous = th.getAttribute("aria-sort");
  const first = numeric && th.dataset.better !== "lower" ? "descending" : "ascending";
  const direction = previous === "ascending" ? "descending" : previous === "descending" ? "ascending" : first;
  for (const other of row.children) other.removeAttribute("aria-sort");
  th.setAttribute("aria-sort", direction);
  const sign = direction === "ascending" ? 1 : -1;
  const body = th.closest("table").tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = sortKey(a.children[index], numeric);
    const y = sortKey(b.children[index], numeric);
    if (x === null || y === null) return (x === null) - (y === null);
    return x < y ? -sign : x > y ? sign : 0;
  });
  for (const each of rows) body.appendChild(each);
}

// A table is shown when its threat model matches and it covers the chosen B and r; within a table over
// the filtered axis only the chosen column stays.
function applyFilters(form) {
  const want = {};
  for (const select of form.querySelectorAll("select[data-filter]")) want[select.dataset.filter] = select.value;
  let shown = 0;
  let total = 0;
  for (const board of document.querySelectorAll("section.board")) {
    const visible = (!want.threat || board.dataset.threat === want.threat) &&
      ["b", "r"].every((key) => !want[key] || board.dataset[key].split(" ").includes(want[key]));
    board.hidden = !visible;
    const column = want[board.dataset.axis];
    for (const cell of board.querySelectorAll("[data-col]")) cell.hidden = Boolean(column) && cell.dataset.col !== column;
    const rows = board.querySelectorAll("tbody tr").length;
    total += rows;
    if (visible) shown += rows;
  }
  for (const view of document.querySelectorAll("section.view.tables")) {
    view.hidden = view.querySelector("section.board:not([hidden])") === null;
  }
  document.getElementById("shown").textContent = `showing ${shown} of ${total} rows`;
}

document.addEventListener("DOMContentLoaded", () => {
  for (const th of document.querySelectorAll("table.sortable th[data-type]")) {
    th.querySelector("button").addEventListener("click", () => sortTable(th));
  }
  const form = document.getElementById("filters");
  if (form) {
    form.addEventListener("change", () => applyFilters(form));
    applyFilters(form);
  }
});
