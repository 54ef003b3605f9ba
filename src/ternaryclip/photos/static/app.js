// The photo search page: one fetch per query (or per duplicates view), results drawn from a <template>;
// no framework, no build.
"use strict";

const form = document.getElementById("search-form");
const input = document.getElementById("q");
const status = document.getElementById("status");
const grid = document.getElementById("results");
const template = document.getElementById("result-template");
const duplicatesForm = document.getElementById("duplicates-form");
const threshold = document.getElementById("threshold");

function card(hit, score, digits = 3) {
  const el = template.content.firstElementChild.cloneNode(true);
  el.dataset.id = hit.id;
  el.querySelector(".open").href = hit.photo;
  const img = el.querySelector(".thumb");
  img.src = hit.thumbnail;
  img.alt = hit.name;
  el.querySelector(".score").textContent = score.toFixed(digits);
  el.querySelector(".name").textContent = hit.name;
  el.querySelector(".name").title = hit.path;
  if (hit.width) el.querySelector(".dims").textContent = `${hit.width} × ${hit.height}`;
  const labels = el.querySelector(".labels");
  for (const label of hit.labels || []) {
    const item = document.createElement("li");
    item.className = "label";
    item.textContent = label.label;
    item.title = label.score.toFixed(3);
    labels.appendChild(item);
  }
  el.querySelector(".like").addEventListener("click", () => load(`api/like/${hit.id}`, `like ${hit.name}`));
  return el;
}

function show(results, what) {
  grid.className = "grid";
  grid.replaceChildren(...results.map((hit) => card(hit, hit.score)));
  status.textContent = `${results.length} photos ${what}`;
  document.body.dataset.state = "done";
}

// Each group of near-identical photos on one row, side by side; the score is the similarity to the first.
function showGroups(body) {
  grid.className = "groups";
  grid.replaceChildren();
  for (const group of body.groups) {
    const section = document.createElement("section");
    section.className = "group";
    const heading = document.createElement("h2");
    heading.textContent = `${group.length} photos`;
    const row = document.createElement("div");
    row.className = "group-photos";
    row.replaceChildren(...group.map((photo) => card(photo, photo.similarity, 4)));
    section.replaceChildren(heading, row);
    grid.appendChild(section);
  }
  const photos = body.groups.reduce((n, group) => n + group.length, 0);
  status.textContent = `${body.groups.length} groups of near-duplicates (${photos} photos) at ${body.threshold}`;
  document.body.dataset.state = "done";
}

async function load(url, what, draw = (body) => show(body.results, what)) {
  document.body.dataset.state = "loading";
  status.textContent = "searching…";
  try {
    const response = await fetch(url);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    draw(body);
  } catch (err) {
    grid.replaceChildren();
    status.textContent = `error: ${err.message}`;
    document.body.dataset.state = "error";
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const q = input.value.trim();
  if (!q) return;
  history.replaceState(null, "", `?q=${encodeURIComponent(q)}`);
  load(`api/search?q=${encodeURIComponent(q)}`, `for “${q}”`);
});

duplicatesForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const t = encodeURIComponent(threshold.value);
  history.replaceState(null, "", `?view=duplicates&threshold=${t}`);
  load(`api/duplicates?threshold=${t}`, "duplicates", showGroups);
});

const params = new URLSearchParams(location.search);
if (params.get("view") === "duplicates") {
  threshold.value = params.get("threshold") || threshold.value;
  duplicatesForm.requestSubmit();
} else if (params.get("q")) {
  input.value = params.get("q");
  form.requestSubmit();
}
