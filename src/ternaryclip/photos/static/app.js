// The photo search page: one fetch per query, results drawn from a <template>; no framework, no build.
"use strict";

const form = document.getElementById("search-form");
const input = document.getElementById("q");
const status = document.getElementById("status");
const grid = document.getElementById("results");
const template = document.getElementById("result-template");

function show(results, what) {
  grid.replaceChildren();
  for (const hit of results) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.id = hit.id;
    card.querySelector(".open").href = hit.photo;
    const img = card.querySelector(".thumb");
    img.src = hit.thumbnail;
    img.alt = hit.name;
    card.querySelector(".score").textContent = hit.score.toFixed(3);
    card.querySelector(".name").textContent = hit.name;
    const labels = card.querySelector(".labels");
    for (const label of hit.labels) {
      const item = document.createElement("li");
      item.className = "label";
      item.textContent = label.label;
      item.title = label.score.toFixed(3);
      labels.appendChild(item);
    }
    card.querySelector(".like").addEventListener("click", () => load(`api/like/${hit.id}`, `like ${hit.name}`));
    grid.appendChild(card);
  }
  status.textContent = `${results.length} photos ${what}`;
  document.body.dataset.state = "done";
}

async function load(url, what) {
  document.body.dataset.state = "loading";
  status.textContent = "searching…";
  try {
    const response = await fetch(url);
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    show(body.results, what);
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

const initial = new URLSearchParams(location.search).get("q");
if (initial) {
  input.value = initial;
  form.requestSubmit();
}
