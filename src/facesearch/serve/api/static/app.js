/* FaceSearch search page: pick or drop a photo, POST /search, box the faces, list the matches.
 * Plain browser JavaScript, no build step, nothing loaded from outside this server.
 * Server data is only ever inserted with textContent (never innerHTML). */
"use strict";

(() => {
  const COLOURS = ["#ff3b6b", "#19c2ff", "#e0b400", "#2fbf6c", "#b26bff", "#ff8a00"];
  const KEY_STORAGE = "facesearch.apiKey";
  const THUMB_SIDE = 192;
  const MAX_DISTANCE_SHOWN = 1.2; // distances between unit vectors lie in [0, 2]; most matches are well below this

  const $ = (id) => document.getElementById(id);
  const els = {
    status: $("status"), keyPanel: $("key-panel"), keyForm: $("key-form"), keyInput: $("api-key"), keyForget: $("key-forget"),
    drop: $("drop-zone"), file: $("file-input"), k: $("k"), error: $("error"), progress: $("progress"),
    preview: $("preview"), image: $("query-image"), boxes: $("boxes"), summary: $("summary"), results: $("results"),
    viewer: $("viewer"), viewerImage: $("viewer-image"), viewerCaption: $("viewer-caption"),
  };
  let objectUrls = [];
  let searchSeq = 0;
  let awaitingKey = null; // the photo refused for want of an API key: searched again once one is entered

  // -- API key (sessionStorage: this tab only) -------------------------------------------------
  const apiKey = () => sessionStorage.getItem(KEY_STORAGE) || "";
  const authHeaders = () => (apiKey() ? { "X-API-Key": apiKey() } : {});

  els.keyInput.value = apiKey();
  els.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = els.keyInput.value.trim();
    key ? sessionStorage.setItem(KEY_STORAGE, key) : sessionStorage.removeItem(KEY_STORAGE);
    els.keyPanel.open = false;
    hideError();
    refreshStatus();
    if (awaitingKey && key) {
      const file = awaitingKey;
      awaitingKey = null;
      search(file);
    }
  });
  els.keyForget.addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORAGE);
    els.keyInput.value = "";
  });

  // -- errors -------------------------------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, code, detail) {
      super(detail);
      this.status = status;
      this.code = code;
    }
  }

  async function apiFetch(url, options = {}) {
    let response;
    try {
      const { okStatuses = [], ...init } = options;
      response = await fetch(url, { ...init, headers: { ...authHeaders(), ...(init.headers || {}) } });
      if (okStatuses.includes(response.status)) return response;
    } catch (err) {
      throw new ApiError(0, "network", "Cannot reach the FaceSearch server. Is it still running?");
    }
    if (!response.ok) {
      let body = {};
      try { body = await response.json(); } catch (err) { /* not JSON: keep the status line */ }
      throw new ApiError(response.status, body.error || "http_error", body.detail || response.statusText || "request failed");
    }
    return response;
  }

  function explain(err) {
    if (!(err instanceof ApiError)) return `Something went wrong in the page: ${err.message}`;
    switch (err.status) {
      case 0: return err.message;
      case 401: return "This server needs an API key. Enter it under “API key” above and the search runs again.";
      case 404: return err.code === "not_indexed" ? `Nothing is indexed yet, so there is nothing to search. ${err.message}` : err.message;
      case 413: return `That photo is too large for this server: ${err.message}`;
      case 422:
        if (err.code === "no_face") return "No face was found in this photo. Try one where a face is clearly visible.";
        if (["not_an_image", "unsupported_format", "corrupt", "truncated", "empty_file"].includes(err.code)) {
          return `This file cannot be used as a photo (${err.code.replace(/_/g, " ")}): ${err.message}`;
        }
        return `The request was not accepted: ${err.message}`;
      case 503: return `The face store is unavailable right now: ${err.message}`;
      default: return `The server failed (${err.status}): ${err.message}`;
    }
  }

  function showError(err) {
    els.error.textContent = explain(err);
    els.error.hidden = false;
    if (err instanceof ApiError && err.status === 401) {
      els.keyPanel.open = true;
      els.keyInput.focus();
    }
  }

  function hideError() {
    els.error.hidden = true;
    els.error.textContent = "";
  }

  // -- status line ----------------------------------------------------------------------------------
  async function refreshStatus() {
    try {
      const health = await (await apiFetch("/health", { okStatuses: [503] })).json();  // 503: degraded, same document
      els.status.className = `status ${health.status}`;
      if (!health.store_reachable) {
        els.status.textContent = "Face store unreachable: searches will fail until it is back.";
      } else if (!health.collection) {
        els.status.textContent = "Store reachable, but nothing is indexed yet.";
      } else {
        els.status.textContent = `${health.faces} faces in ${health.collection} · ${health.encoder}`;
      }
    } catch (err) {
      els.status.className = "status degraded";
      els.status.textContent = explain(err);
    }
  }

  // -- choosing a photo -------------------------------------------------------------------------------
  els.file.addEventListener("change", () => {
    const file = els.file.files && els.file.files[0];
    els.file.value = ""; // choosing the same file again must fire "change" again
    if (file) search(file);
  });
  els.drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      els.file.click();
    }
  });
  for (const type of ["dragenter", "dragover"]) {
    els.drop.addEventListener(type, (event) => {
      event.preventDefault();
      els.drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    els.drop.addEventListener(type, () => els.drop.classList.remove("dragging"));
  }
  els.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) search(file);
  });

  function trackUrl(url) {
    objectUrls.push(url);
    return url;
  }

  function releaseUrls() {
    objectUrls.forEach((url) => URL.revokeObjectURL(url));
    objectUrls = [];
  }

  // -- search -----------------------------------------------------------------------------------------
  async function search(file) {
    const seq = ++searchSeq;
    hideError();
    releaseUrls();
    els.results.replaceChildren();
    els.boxes.replaceChildren();
    els.summary.textContent = file.name;
    els.preview.hidden = false;
    const imageReady = showPreview(file);
    els.progress.hidden = false;

    const form = new FormData();
    form.append("image", file, file.name);
    form.append("k", String(clampK()));
    try {
      const doc = await (await apiFetch("/search", { method: "POST", body: form })).json();
      if (seq !== searchSeq) return; // a newer search started meanwhile
      await imageReady;
      render(doc);
    } catch (err) {
      if (seq !== searchSeq) return;
      if (err instanceof ApiError && err.status === 401) awaitingKey = file;
      showError(err);
    } finally {
      if (seq === searchSeq) els.progress.hidden = true;
    }
  }

  function clampK() {
    const k = Math.round(Number(els.k.value) || 10);
    const clamped = Math.min(100, Math.max(1, k));
    els.k.value = String(clamped);
    return clamped;
  }

  function showPreview(file) {
    return new Promise((resolve) => {
      els.image.onload = () => {
        $("stage").style.setProperty("--ar", String(els.image.naturalWidth / els.image.naturalHeight));
        resolve(true);
      };
      els.image.onerror = () => { // not displayable here (e.g. TIFF, or not an image): the server still decides
        els.preview.hidden = true;
        resolve(false);
      };
      els.image.src = trackUrl(URL.createObjectURL(file));
    });
  }

  function render(doc) {
    const faces = doc.faces || [];
    els.summary.textContent = `${doc.query}: ${faces.length} face${faces.length === 1 ? "" : "s"} found`;
    faces.forEach((face, i) => {
      const colour = COLOURS[i % COLOURS.length];
      els.boxes.append(faceBox(face, i, colour));
      els.results.append(faceResult(face, i, colour));
    });
  }

  // -- boxes over the query photo ---------------------------------------------------------------------
  function faceBox(face, i, colour) {
    const [x1, y1, x2, y2] = face.bbox;
    const w = els.image.naturalWidth || 1;
    const h = els.image.naturalHeight || 1;
    const box = document.createElement("div");
    box.className = "face-box";
    box.dataset.testid = "face-box";
    box.dataset.faceIndex = String(i);
    box.title = `Face ${i + 1}`;
    // Percentages of the natural size: the boxes follow the image however it is scaled.
    box.style.setProperty("--c", colour);
    box.style.left = `${(100 * Math.max(0, x1)) / w}%`;
    box.style.top = `${(100 * Math.max(0, y1)) / h}%`;
    box.style.width = `${(100 * (Math.min(w, x2) - Math.max(0, x1))) / w}%`;
    box.style.height = `${(100 * (Math.min(h, y2) - Math.max(0, y1))) / h}%`;
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = String(i + 1);
    box.append(label);
    if (y1 / h < 0.06) box.classList.add("label-inside"); // no room above the face: keep the label on the photo
    box.addEventListener("click", () => focusFace(i, true));
    box.addEventListener("mouseenter", () => focusFace(i, false));
    box.addEventListener("mouseleave", () => focusFace(-1, false));
    return box;
  }

  function focusFace(index, scroll) {
    document.querySelectorAll(".face-box, .face-result").forEach((el) => {
      el.classList.toggle("active", Number(el.dataset.faceIndex) === index);
    });
    const target = document.getElementById(`face-${index}`);
    if (scroll && target) target.scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // -- one gallery per face ---------------------------------------------------------------------------
  function faceResult(face, i, colour) {
    const article = document.createElement("article");
    article.className = "face-result";
    article.id = `face-${i}`;
    article.dataset.testid = "face-result";
    article.dataset.faceIndex = String(i);
    article.style.setProperty("--c", colour);
    article.addEventListener("mouseenter", () => focusFace(i, false));
    article.addEventListener("mouseleave", () => focusFace(-1, false));

    const head = el("header", "face-head");
    const badge = el("span", "badge", String(i + 1));
    const title = el("div");
    title.append(el("h2", "", `Face ${i + 1}`), el("div", "meta", `${face.hits.length} matches · detection ${(face.det_prob * 100).toFixed(1)}%`));
    head.append(badge, queryCrop(face.bbox), title);
    article.append(head);

    if (!face.hits.length) {
      article.append(el("p", "no-hits", "No stored faces to compare with."));
      return article;
    }
    // Same person (within the encoder's calibrated threshold) first; the nearest strangers folded below.
    const same = face.hits.filter((hit) => hit.same_person !== false);
    const others = face.hits.filter((hit) => hit.same_person === false);
    const gallery = el("ol", "gallery");
    gallery.dataset.testid = "gallery";
    same.forEach((hit, rank) => gallery.append(match(hit, rank)));
    if (!same.length) article.append(el("p", "no-hits", "Nobody here is the same person as this face."));
    else article.append(gallery);
    if (others.length) {
      const fold = el("details", "not-same");
      fold.dataset.testid = "not-same-person";
      fold.append(el("summary", "", `Not the same person (nearest faces): ${others.length}`));
      const rest = el("ol", "gallery");
      others.forEach((hit, rank) => {
        const item = match(hit, same.length + rank);
        item.querySelector("img").loading = "eager"; // lazy images in a closed <details> would never finish loading
        rest.append(item);
      });
      fold.append(rest);
      article.append(fold);
    }
    return article;
  }

  function queryCrop(bbox) {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 104;
    canvas.dataset.testid = "query-face";
    if (!els.image.naturalWidth) return canvas;
    const [x1, y1, x2, y2] = bbox;
    const side = Math.max(x2 - x1, y2 - y1) * 1.3;
    const cx = (x1 + x2) / 2;
    const cy = (y1 + y2) / 2;
    canvas.getContext("2d").drawImage(els.image, cx - side / 2, cy - side / 2, side, side, 0, 0, canvas.width, canvas.height);
    return canvas;
  }

  function match(hit, rank) {
    const item = el("li", "match");
    item.dataset.testid = "match";
    item.dataset.samePerson = String(hit.same_person !== false);
    item.append(el("span", "rank", `#${rank + 1}`));

    const button = el("button", "thumb-button");
    button.type = "button";
    button.title = "Show the whole photo";
    const img = document.createElement("img");
    img.alt = `Face ${hit.face_index + 1} of ${basename(hit.image_path)}`;
    img.dataset.testid = "match-thumb";
    img.loading = "lazy";
    button.append(img);
    button.addEventListener("click", () => openViewer(hit));
    loadImage(img, thumbUrl(hit.image_sha256, { face_index: hit.face_index, max_side: THUMB_SIDE }));

    const body = el("div", "match-body");
    const identity = el("div", hit.identity ? "match-identity" : "match-identity unknown", hit.identity || "unknown");
    identity.dataset.testid = "match-identity";
    const distance = el("div", "match-distance");
    distance.title = "L2 distance between the face embeddings: smaller is more alike";
    const meter = el("span", "meter");
    const fill = el("span");
    fill.style.width = `${Math.max(4, 100 * (1 - Math.min(hit.distance, MAX_DISTANCE_SHOWN) / MAX_DISTANCE_SHOWN))}%`;
    meter.append(fill);
    const value = el("span", "value", hit.distance.toFixed(3));
    value.dataset.testid = "match-distance";
    distance.append(el("span", "", "distance"), value, meter);
    const file = el("div", "match-file", basename(hit.image_path));
    file.dataset.testid = "match-file";
    file.title = hit.image_path;
    body.append(identity, distance, file);
    item.append(button, body);
    return item;
  }

  function thumbUrl(sha, params) {
    const query = new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)]));
    return `/faces/${encodeURIComponent(sha)}/thumbnail?${query}`;
  }

  // Thumbnails go through fetch() so the API key header can be sent; <img src> cannot send headers.
  async function loadImage(img, url) {
    const seq = searchSeq;
    try {
      const blob = await (await apiFetch(url)).blob();
      if (seq !== searchSeq) return;
      img.src = trackUrl(URL.createObjectURL(blob));
    } catch (err) {
      img.classList.add("failed");
      img.title = err instanceof ApiError ? err.message : String(err);
    }
  }

  function openViewer(hit) {
    els.viewerImage.removeAttribute("src");
    els.viewerImage.alt = basename(hit.image_path);
    els.viewerCaption.textContent = `${hit.image_path} · ${hit.identity || "unknown"} · distance ${hit.distance.toFixed(3)}`;
    loadImage(els.viewerImage, thumbUrl(hit.image_sha256, { max_side: 1024 }));
    if (typeof els.viewer.showModal === "function") els.viewer.showModal();
  }

  // -- helpers ------------------------------------------------------------------------------------------
  function el(tag, className = "", text = null) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== null) node.textContent = text;
    return node;
  }

  function basename(path) {
    return String(path).split(/[\\/]/).pop();
  }

  refreshStatus();
})();
