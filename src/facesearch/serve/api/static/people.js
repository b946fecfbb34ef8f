/* FaceSearch People view: GET /people (one face per person + face count), click for GET /people/{id}/photos,
 * rename inline with PATCH /people/{id}. Server data is only inserted with textContent. */
"use strict";

(() => {
  const KEY_STORAGE = "facesearch.apiKey"; // the key the search page keeps (sessionStorage)
  const $ = (id) => document.getElementById(id);
  const grid = $("people-grid");
  const note = $("people-note");
  const photosPanel = $("person-photos");
  const photosTitle = $("person-photos-title");
  const photosGrid = $("person-photos-grid");

  const headers = (extra = {}) => {
    const key = sessionStorage.getItem(KEY_STORAGE) || "";
    return key ? { "X-API-Key": key, ...extra } : extra;
  };

  async function api(url, options = {}) {
    const response = await fetch(url, { ...options, headers: headers(options.headers || {}) });
    if (!response.ok) {
      let body = {};
      try { body = await response.json(); } catch (err) { /* not JSON */ }
      const error = new Error(body.detail || response.statusText || "request failed");
      error.status = response.status;
      throw error;
    }
    return response;
  }

  function el(tag, className = "", text = null) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== null) node.textContent = text;
    return node;
  }

  async function thumb(img, face, side) {
    const query = new URLSearchParams({ max_side: String(side) });
    if (face.face_index !== undefined && side <= 192) query.set("face_index", String(face.face_index));
    try {
      const blob = await (await api(`/faces/${encodeURIComponent(face.image_sha256)}/thumbnail?${query}`)).blob();
      img.src = URL.createObjectURL(blob);
    } catch (err) {
      img.classList.add("failed");
    }
  }

  async function load() {
    try {
      const doc = await (await api("/people")).json();
      grid.replaceChildren(...doc.people.map(card));
      if (!doc.people.length) note.textContent = "No people yet: run `facesearch people cluster` after indexing.";
    } catch (err) {
      note.textContent = err.status === 401 ? "People need the API key (enter it above, then Refresh)." : `People unavailable: ${err.message}`;
    }
  }

  function card(person) {
    const item = el("li", "person");
    item.dataset.testid = "person";
    item.dataset.personId = String(person.id);
    const button = el("button", "thumb-button");
    button.type = "button";
    button.title = `All photos of ${person.display_name}`;
    const img = document.createElement("img");
    img.alt = person.display_name;
    img.dataset.testid = "person-thumb";
    button.append(img);
    if (person.cover) thumb(img, person.cover, 128);
    button.addEventListener("click", () => showPhotos(person));
    const name = document.createElement("input");
    name.className = "person-name";
    name.dataset.testid = "person-name";
    name.value = person.display_name;
    name.setAttribute("aria-label", `Name of ${person.display_name}`);
    name.addEventListener("keydown", (event) => { if (event.key === "Enter") name.blur(); });
    name.addEventListener("change", () => rename(person, name));
    const count = el("span", "person-count", `${person.faces} face${person.faces === 1 ? "" : "s"}`);
    count.dataset.testid = "person-count";
    item.append(button, name, count);
    return item;
  }

  async function rename(person, input) {
    try {
      const doc = await (await api(`/people/${person.id}`, {
        method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name: input.value.trim() }),
      })).json();
      person.display_name = doc.display_name;
      input.value = doc.display_name;
      input.classList.add("saved");
      input.dataset.saved = "true";
    } catch (err) {
      input.classList.add("failed");
      input.title = err.message;
    }
  }

  async function showPhotos(person) {
    const doc = await (await api(`/people/${person.id}/photos`)).json();
    photosTitle.textContent = `${doc.person.display_name}: ${doc.photos.length} photo${doc.photos.length === 1 ? "" : "s"}`;
    photosGrid.replaceChildren(...doc.photos.map((photo) => {
      const item = el("li", "person-photo");
      item.dataset.testid = "person-photo";
      const img = document.createElement("img");
      img.alt = photo.image_path.split(/[\\/]/).pop();
      img.title = photo.image_path;
      thumb(img, { image_sha256: photo.image_sha256 }, 256);
      item.append(img);
      return item;
    }));
    photosPanel.hidden = false;
  }

  $("people-refresh").addEventListener("click", load);
  document.getElementById("key-form").addEventListener("submit", () => setTimeout(load, 0));
  load();
})();
