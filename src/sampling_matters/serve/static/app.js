// The search page: send a query to the JSON API, draw the query and its neighbours.
// Plain JavaScript, no build step; text goes in with textContent only.
"use strict";

const $ = (id) => document.getElementById(id);
let queryUrl = null;  // the object URL of an uploaded query image, released on the next one

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function busy(on) {
  $("random").disabled = on;
  document.body.classList.toggle("busy", on);
}

function chosenK() {
  const k = Number.parseInt($("k").value, 10);
  return Number.isFinite(k) ? k : 10;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.detail || `${response.status} ${response.statusText}`);
  }
  return body;
}

function showQuery(src, caption) {
  $("query-image").src = src;
  $("query-caption").textContent = caption;
  $("query").hidden = false;
}

function tile(neighbour, rank, queryLabel) {
  const item = document.createElement("li");
  item.className = "tile";
  item.dataset.id = neighbour.id;
  item.dataset.label = neighbour.label;
  if (queryLabel !== null && neighbour.label === queryLabel) item.classList.add("same");
  const image = document.createElement("img");
  image.src = neighbour.image_url;
  image.alt = `item ${neighbour.id}, label ${neighbour.label}`;
  const lines = [
    ["rank", `#${rank} · item ${neighbour.id}`],
    ["label", `label ${neighbour.label}`],
    ["distance", `d = ${neighbour.distance.toPrecision(3)}`],
  ];
  item.append(image);
  for (const [name, text] of lines) {
    const line = document.createElement("div");
    line.className = name;
    line.textContent = text;
    item.append(line);
  }
  item.title = "search with this item";
  item.addEventListener("click", () => searchItem(neighbour.id));
  return item;
}

function showNeighbours(neighbours, queryLabel) {
  const grid = $("grid");
  grid.replaceChildren(...neighbours.map((n, i) => tile(n, i + 1, queryLabel)));
  const same = neighbours.filter((n) => n.label === queryLabel).length;
  $("results-title").textContent = queryLabel === null
    ? `${neighbours.length} neighbours`
    : `${neighbours.length} neighbours, ${same} of the query's class`;
  $("results").hidden = false;
  document.body.dataset.state = "done";
}

async function run(task) {
  showError("");
  busy(true);
  document.body.dataset.state = "searching";
  try {
    await task();
  } catch (error) {
    showError(error.message);
    document.body.dataset.state = "error";
  } finally {
    busy(false);
  }
}

function searchFile(file) {
  return run(async () => {
    if (queryUrl) URL.revokeObjectURL(queryUrl);
    queryUrl = URL.createObjectURL(file);
    showQuery(queryUrl, `uploaded: ${file.name} (its class is unknown)`);
    const form = new FormData();
    form.append("image", file);
    form.append("k", String(chosenK()));
    const found = await api("api/search", { method: "POST", body: form });
    showNeighbours(found.neighbours, null);
  });
}

function searchItem(id) {
  return run(async () => {
    const item = await api(`api/items/${encodeURIComponent(id)}`);
    showQuery(item.image_url, `item ${item.id}, label ${item.label}`);
    const found = await api("api/search", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ id: item.id, k: chosenK() }),
    });
    showNeighbours(found.neighbours, item.label);
  });
}

function randomItem() {
  return run(async () => {
    const item = await api("api/items/random");
    await searchItem(item.id);
  });
}

function shortSpec(spec) {
  // folder:/a/long/path/glyphs -> folder:…/glyphs
  return spec.replace(/^(\w+):.*\/([^/]+)\/?$/, "$1:…/$2");
}

async function showHealth() {
  try {
    const health = await api("healthz");
    const model = health.model || {};
    $("health").textContent =
      `${health.size} items, ${health.dim}-d embeddings of ${model.name || "a model"}` +
      (model.data ? ` trained on ${shortSpec(model.data)}` : "") + `; k up to ${health.max_k}`;
    $("k").max = String(health.max_k);
    if (chosenK() > health.max_k) $("k").value = String(health.max_k);
  } catch (error) {
    showError(`the server does not answer: ${error.message}`);
  }
}

function wireDrop() {
  const drop = $("drop");
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) searchFile(file);
  });
  $("file").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) searchFile(file);
    event.target.value = "";  // choosing the same file again searches again
  });
}

document.addEventListener("DOMContentLoaded", () => {
  wireDrop();
  $("random").addEventListener("click", randomItem);
  showHealth();
});
