// The web page's script: plain JavaScript, no build step, no library, no request but to this server.
// Rule: text from documents, answers and errors is set with textContent or text nodes, never as
// HTML, so a document holding <script> shows as text. The API key lives in sessionStorage only.
"use strict";

const KEY_STORE = "rag.apiKey";
const COLLECTION_STORE = "rag.collection";
const HISTORY_MESSAGES = 6; // earlier turns sent with a follow-up (the server rewrites it)
const CLOSEST = 3; // passages offered with a refusal
const POLL_MS = 400;
const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------- small DOM helpers

/** An element with text content (never HTML) and attributes. */
function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

/** A <dl> of label/value pairs; values are text. */
function fillMeta(dl, pairs) {
  clear(dl);
  for (const [label, value] of pairs) {
    if (value === undefined || value === null || value === "") continue;
    dl.append(el("dt", label), el("dd", value));
  }
}

function fmt(value, digits = 3) {
  return typeof value === "number" ? value.toFixed(digits) : "–";
}

// ---------------------------------------------------------------- API access

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

function collection() {
  return ($("collection").value || "default").trim();
}

/** Where the collection's routes are: /v1 for the default one. */
function base() {
  const name = collection();
  return name === "default" ? "/v1" : "/v1/collections/" + encodeURIComponent(name);
}

function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  const key = apiKey();
  if (key) headers.Authorization = "Bearer " + key;
  return headers;
}

/** The error message of a failed response, with a hint for the key problems. */
async function errorOf(response) {
  let message = response.status + " " + response.statusText;
  try {
    const body = await response.json();
    if (body && body.error) message = typeof body.error === "string" ? body.error : body.error.message;
  } catch (_) {
    /* not JSON: keep the status line */
  }
  if (response.status === 401) message += " (type a valid API key above)";
  return new ApiError(response.status, message);
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = authHeaders(opts.headers);
  const response = await fetch(path, opts);
  if (!response.ok) throw await errorOf(response);
  return response;
}

async function apiJson(path, options) {
  return (await api(path, options)).json();
}

function postJson(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** Server-sent events of a fetch response: yields {event, data} with data parsed as JSON. */
async function* serverEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer = (buffer + value).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const parsed = parseEvent(block);
      if (parsed) yield parsed;
    }
  }
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // keep-alive comments
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { event, data: JSON.parse(data.join("\n")) } : null;
}

// ---------------------------------------------------------------- views and the key

const VIEWS = ["ask", "documents", "evaluations"];

function showView(name) {
  const view = VIEWS.includes(name) ? name : "ask";
  for (const v of VIEWS) $("view-" + v).hidden = v !== view;
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "documents") openDocuments();
  if (view === "evaluations") loadRuns();
}

function keyStatus() {
  $("key-status").textContent = apiKey() ? "A key is set for this tab." : "No key set.";
  $("api-key").value = "";
  $("api-key").placeholder = apiKey() ? "•••••• (set)" : "";
}

function setupKey() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) sessionStorage.setItem(KEY_STORE, key);
    keyStatus();
    refreshCurrentView();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    keyStatus();
    refreshCurrentView();
  });
  const saved = sessionStorage.getItem(COLLECTION_STORE);
  if (saved) $("collection").value = saved;
  $("collection").addEventListener("change", () => {
    sessionStorage.setItem(COLLECTION_STORE, collection());
    newConversation();
    refreshCurrentView();
  });
  keyStatus();
}

function refreshCurrentView() {
  showView(location.hash.slice(1));
}

// ---------------------------------------------------------------- Ask

const chat = { history: [], busy: false, turns: 0 };

function newConversation() {
  chat.history = [];
  clear($("conversation"));
  closeSource();
  $("ask-status").textContent = "New conversation.";
  $("question").focus();
}

/** A sentence of the answer as nodes: text, and each [n] a link that opens its passage. */
function sentenceNode(text, citations) {
  const span = el("span", null, { class: "sentence" });
  const plain = text.replace(/\s*\[\d+\]/g, "");
  for (const part of text.split(/(\[\d+\])/)) {
    const marker = /^\[(\d+)\]$/.exec(part);
    const citation = marker && citations.get(Number(marker[1]));
    if (!citation) {
      span.append(document.createTextNode(part));
      continue;
    }
    const link = el("a", part, {
      href: "#source-panel",
      class: "cite",
      "aria-label": "Source " + marker[1] + ": " + citation.source,
    });
    link.addEventListener("click", (event) => {
      event.preventDefault();
      openSource(citation, plain, link);
    });
    span.append(link);
  }
  return span;
}

function addCitations(map, citations) {
  for (const c of citations || []) map.set(c.n, c);
}

function startTurn(question) {
  chat.turns += 1;
  const li = el("li", null, { class: "turn", id: "turn-" + chat.turns });
  li.append(el("p", question, { class: "question", "aria-label": "You asked" }));
  const answer = el("div", null, { class: "answer streaming", "aria-label": "Answer" });
  li.append(answer);
  $("conversation").append(li);
  return { li, answer, citations: new Map(), sentences: 0, text: "" };
}

async function ask(question) {
  const turn = startTurn(question);
  const body = { question, stream: true };
  if (chat.history.length) body.history = chat.history.slice(-HISTORY_MESSAGES);
  let final = null;
  const response = await postJson(base() + "/query", body);
  for await (const { event, data } of serverEvents(response)) {
    if (event === "sentence") {
      addCitations(turn.citations, data.citations);
      turn.answer.append(sentenceNode(data.text, turn.citations));
      turn.sentences += 1;
      turn.text += data.text;
      $("ask-status").textContent = "Answering… (" + turn.sentences + " checked sentences so far)";
    } else if (event === "answer") {
      final = data;
    } else if (event === "error") {
      throw new ApiError(data.status, data.error);
    }
  }
  if (!final) throw new ApiError(0, "the answer stream ended without an answer");
  await finishTurn(turn, final, question);
}

async function finishTurn(turn, final, question) {
  turn.answer.classList.remove("streaming");
  chat.history.push({ role: "user", content: question });
  chat.history.push({ role: "assistant", content: final.answer });
  if (final.refused) {
    await showRefusal(turn, final, question);
    $("ask-status").textContent = "The documents do not contain the answer.";
    return;
  }
  if (!turn.sentences || turn.text !== final.answer) {
    // No sentences streamed (or they differ): show the final answer, sentence by sentence.
    clear(turn.answer);
    turn.citations = new Map();
    addCitations(turn.citations, final.citations);
    for (const sentence of final.answer.match(/[^.!?]*[.!?]+(?:\s*\[\d+\])*\s*|[^.!?]+$/g) || []) {
      turn.answer.append(sentenceNode(sentence, turn.citations));
    }
  }
  const note = final.cached ? " (from the answer cache)" : "";
  $("ask-status").textContent = "Answered with " + final.citations.length + " citation(s)" + note + ".";
}

async function showRefusal(turn, final, question) {
  clear(turn.answer);
  const box = el("div", null, { class: "refusal", role: "note" });
  box.append(el("p", final.answer, { class: "refusal-message" }));
  turn.answer.append(box);
  try {
    const query = final.standalone_question || question;
    const found = await (await postJson(base() + "/search", { query, top_k: CLOSEST })).json();
    if (!found.results.length) return;
    box.append(el("p", "The closest passages found:"));
    const list = el("ol", null, { class: "closest" });
    for (const hit of found.results) list.append(passageItem(hit));
    box.append(list);
  } catch (err) {
    box.append(el("p", "Could not fetch the closest passages: " + err.message, { class: "error" }));
  }
}

function passageItem(hit) {
  const li = el("li");
  const where = hit.source + (hit.page ? ", page " + hit.page : "");
  li.append(el("strong", where), el("span", " score " + fmt(hit.score), { class: "score" }));
  const text = hit.text.length > 500 ? hit.text.slice(0, 500) + "…" : hit.text;
  li.append(el("div", text, { class: "excerpt" }));
  return li;
}

// ---------------------------------------------------------------- the source panel

function words(text) {
  return new Set((text.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || []));
}

/** The chunk's sentences, covering all of its text, and the index of the one that shares the
 * most words with the answer's sentence: the passage that supports it. */
function supportingSentence(chunk, sentence) {
  const pieces = chunk.match(/[^.!?\n]*(?:[.!?]+|\n+|$)\s*/g).filter((p) => p.length);
  const wanted = words(sentence);
  let best = -1;
  let bestScore = 0;
  pieces.forEach((piece, i) => {
    const have = words(piece);
    let shared = 0;
    for (const w of have) if (wanted.has(w)) shared += 1;
    const score = have.size ? shared / Math.sqrt(have.size) : 0;
    if (score > bestScore) [best, bestScore] = [i, score];
  });
  return { pieces, best };
}

let sourceOpener = null;

function openSource(citation, sentence, opener) {
  sourceOpener = opener;
  $("source-title").textContent = "Source [" + citation.n + "]";
  fillMeta($("source-meta"), [
    ["Document", citation.source],
    ["Document id", citation.document_id],
    ["Page", citation.page],
    ["Position", "characters " + citation.start + "–" + citation.end + " of the extracted text"],
    ["Chunk", citation.chunk_id],
  ]);
  const passage = $("source-text");
  clear(passage);
  const { pieces, best } = supportingSentence(citation.text, sentence);
  pieces.forEach((piece, i) => {
    passage.append(i === best ? el("mark", piece) : document.createTextNode(piece));
  });
  fillMeta($("source-scores"), [
    ["Score", fmt(citation.score)],
    ["Cosine", fmt(citation.dense_score)],
    ["Keyword (BM25)", fmt(citation.keyword_score)],
    ["Rerank", citation.rerank_score === null ? null : fmt(citation.rerank_score)],
  ]);
  showPdfButton(citation);
  $("source-panel").hidden = false;
  document.querySelector(".ask-layout").classList.add("with-source");
  $("source-panel").focus();
}

/** Uploaded PDFs only (GET .../files/<id>): fetched with the key, opened at the cited page. */
function showPdfButton(citation) {
  const button = $("source-pdf");
  const id = citation.document_id;
  button.hidden = !(citation.page && id.startsWith("uploads/") && id.toLowerCase().endsWith(".pdf"));
  button.onclick = async () => {
    try {
      const blob = await (await api(base() + "/files/" + encodeURI(id))).blob();
      window.open(URL.createObjectURL(blob) + "#page=" + citation.page, "_blank", "noopener");
    } catch (err) {
      $("ask-status").textContent = "Could not open the PDF: " + err.message;
    }
  };
}

function closeSource() {
  $("source-panel").hidden = true;
  document.querySelector(".ask-layout").classList.remove("with-source");
  if (sourceOpener && document.body.contains(sourceOpener)) sourceOpener.focus();
  sourceOpener = null;
}

function setupAsk() {
  $("ask-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = $("question").value.trim();
    if (!question || chat.busy) return;
    chat.busy = true;
    $("ask-button").disabled = true;
    $("ask-status").textContent = "Waiting for the answer…";
    try {
      await ask(question);
      $("question").value = "";
    } catch (err) {
      const last = $("conversation").lastElementChild;
      const answer = last && last.querySelector(".answer");
      if (answer) {
        answer.classList.remove("streaming");
        answer.append(el("p", "Error: " + err.message, { class: "error" }));
      }
      $("ask-status").textContent = "Error: " + err.message;
    } finally {
      chat.busy = false;
      $("ask-button").disabled = false;
    }
  });
  $("question").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("ask-form").requestSubmit();
  });
  $("new-conversation").addEventListener("click", newConversation);
  $("show-scores").addEventListener("change", (event) => {
    document.body.classList.toggle("show-scores", event.target.checked);
  });
  $("source-close").addEventListener("click", closeSource);
  $("source-panel").addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSource();
  });
}

// ---------------------------------------------------------------- Documents

function openDocuments() {
  const unlocked = Boolean(apiKey());
  $("docs-locked").hidden = unlocked;
  $("docs-body").hidden = !unlocked;
  if (unlocked) refreshDocuments();
}

async function refreshDocuments() {
  $("docs-status").textContent = "Loading…";
  try {
    await Promise.all([loadIndex(), loadDocuments(), loadJobs()]);
    $("docs-status").textContent = "";
  } catch (err) {
    $("docs-status").textContent = "Error: " + err.message;
  }
}

async function loadIndex() {
  let info;
  try {
    info = await apiJson(base() + "/index");
  } catch (err) {
    if (err.status !== 404) throw err;
    fillMeta($("index-info"), [["Index", "none committed yet: upload files to create it"]]);
    return;
  }
  fillMeta($("index-info"), [
    ["Version", info.version],
    ["Documents", info.documents],
    ["Chunks", info.chunks],
    ["Segments", (info.segments || []).length],
    ["Tombstones", info.tombstones],
    ["Embedding model", info.embedding_model],
    ["Updated", info.updated_at],
    ["Compatible", info.compatible ? "yes" : "no: " + info.problem],
  ]);
}

async function loadDocuments() {
  const list = await apiJson(base() + "/documents?limit=1000");
  const body = $("docs-table").tBodies[0];
  clear(body);
  $("docs-caption").textContent =
    list.total + " documents in collection " + collection() + " (index version " + list.index_version + ")";
  for (const doc of list.documents) body.append(documentRow(doc));
}

function documentRow(doc) {
  const tr = el("tr");
  const meta = Object.keys(doc.metadata || {}).length ? JSON.stringify(doc.metadata) : "";
  tr.append(el("td", doc.source), el("td", doc.id), el("td", doc.chunks, { class: "num" }));
  tr.append(el("td", doc.indexed_at), el("td", meta));
  const cell = el("td");
  const button = el("button", "Delete", { type: "button", class: "danger", "aria-label": "Delete " + doc.source });
  button.addEventListener("click", () => deleteClicked(button, doc));
  cell.append(button);
  tr.append(cell);
  return tr;
}

/** Two clicks delete: the first asks for confirmation in the button itself (no dialog). */
async function deleteClicked(button, doc) {
  if (button.dataset.armed !== "yes") {
    button.dataset.armed = "yes";
    button.textContent = "Confirm delete";
    button.setAttribute("aria-label", "Confirm delete " + doc.source);
    return;
  }
  button.disabled = true;
  try {
    const out = await apiJson(base() + "/documents/" + encodeURI(doc.id), { method: "DELETE" });
    $("docs-status").textContent = "Deleted " + out.deleted + " (index version " + out.index_version + ").";
    await Promise.all([loadIndex(), loadDocuments()]);
  } catch (err) {
    $("docs-status").textContent = "Delete failed: " + err.message;
    button.disabled = false;
  }
}

async function loadJobs() {
  const jobs = await apiJson(base() + "/jobs");
  const list = $("jobs");
  clear(list);
  for (const job of jobs.slice(0, 10)) {
    const li = el("li");
    li.append(el("strong", job.status), document.createTextNode(" " + job.created_at + " · "));
    li.append(document.createTextNode((job.files || []).map((f) => f.name).join(", ")));
    for (const e of job.errors || []) li.append(el("div", e.path + ": " + e.error, { class: "file-error" }));
    if (job.error) li.append(el("div", job.error, { class: "file-error" }));
    list.append(li);
  }
}

/** Upload one file as its own job (XMLHttpRequest: fetch reports no upload progress). */
function uploadFile(file, row) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", base() + "/documents");
    const key = apiKey();
    if (key) xhr.setRequestHeader("Authorization", "Bearer " + key);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) row.progress.value = event.loaded / event.total;
    });
    xhr.addEventListener("load", () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch (_) {
        /* keep empty */
      }
      if (xhr.status === 202) resolve(body);
      else reject(new ApiError(xhr.status, (body && body.error) || "upload failed (" + xhr.status + ")"));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload was interrupted")));
    const form = new FormData();
    form.append("files", file, file.name);
    xhr.send(form);
  });
}

function uploadRow(file) {
  const li = el("li", null, { class: "upload" });
  const label = el("span", file.name, { class: "file-name" });
  const progress = el("progress", null, { max: "1", value: "0", "aria-label": "Upload of " + file.name });
  const state = el("span", " uploading…", { class: "job-state" });
  const detail = el("div", null, { class: "job-detail" });
  li.append(label, document.createTextNode(" "), progress, state, detail);
  $("uploads").append(li);
  return { li, progress, state, detail };
}

function showJob(row, job) {
  const stages = Object.entries(job.progress || {})
    .map(([stage, p]) => stage + " " + p.done + "/" + p.total)
    .join(", ");
  row.state.textContent = " " + job.status + (job.stage ? " (" + job.stage + ")" : "");
  clear(row.detail);
  if (stages) row.detail.append(el("div", "Stages: " + stages));
  if (job.summary) {
    const s = job.summary;
    row.detail.append(el("div", "added " + s.added + ", updated " + s.updated + ", unchanged " +
      s.unchanged + ", failed " + s.failed + "; " + s.chunks + " chunks" +
      (s.index_version === null ? "" : "; index version " + s.index_version)));
  }
  for (const e of job.errors || []) row.detail.append(el("div", e.path + ": " + e.error, { class: "file-error" }));
  if (job.error) row.detail.append(el("div", job.error, { class: "file-error" }));
}

async function watchJob(row, jobId) {
  for (;;) {
    const job = await apiJson(base() + "/jobs/" + encodeURIComponent(jobId));
    showJob(row, job);
    if (job.status === "succeeded" || job.status === "failed") return job;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function uploadAll(files) {
  for (const file of files) {
    const row = uploadRow(file);
    try {
      const accepted = await uploadFile(file, row);
      row.progress.value = 1;
      row.li.dataset.job = accepted.job_id;
      const job = await watchJob(row, accepted.job_id);
      row.li.dataset.status = job.status;
    } catch (err) {
      row.state.textContent = " failed";
      row.li.dataset.status = "failed";
      row.detail.append(el("div", err.message, { class: "file-error" }));
    }
  }
  await refreshDocuments();
}

function setupDocuments() {
  $("upload-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const files = Array.from($("upload-files").files);
    if (!files.length) return;
    $("upload-files").value = "";
    uploadAll(files);
  });
  $("docs-refresh").addEventListener("click", refreshDocuments);
}

// ---------------------------------------------------------------- Evaluations

let runs = [];

async function loadRuns() {
  const status = $("evals-status");
  status.textContent = "Loading…";
  const body = $("runs-table").tBodies[0];
  clear(body);
  try {
    const out = await apiJson("/v1/eval/runs");
    runs = out.runs;
    status.textContent = out.enabled ? runs.length + " evaluation runs." : out.message;
  } catch (err) {
    runs = [];
    status.textContent = "Error: " + err.message;
  }
  for (const run of runs) body.append(runRow(run));
  fillRunChoices();
}

function runRow(run) {
  const tr = el("tr");
  tr.append(el("td", run.name), el("td", run.created), el("td", run.samples, { class: "num" }));
  tr.append(el("td", run.refused, { class: "num" }));
  const cell = el("td");
  if (run.has_report) {
    const button = el("button", "Open report", { type: "button", "aria-label": "Open the report of " + run.name });
    button.addEventListener("click", () => openReport(run.name));
    cell.append(button);
  } else {
    cell.textContent = "no report.html";
  }
  tr.append(cell);
  return tr;
}

/** The report, fetched with the key, shown in a sandboxed frame (no scripts, no same origin). */
async function openReport(name) {
  try {
    const html = await (await api("/v1/eval/runs/" + encodeURIComponent(name) + "/report")).text();
    const frame = $("report-frame");
    frame.srcdoc = html;
    frame.hidden = false;
    $("report-title").hidden = false;
    $("report-title").textContent = "Report: " + name;
    frame.scrollIntoView();
  } catch (err) {
    $("evals-status").textContent = "Error: " + err.message;
  }
}

function fillRunChoices() {
  for (const [id, pick] of [["run-a", 1], ["run-b", 0]]) {
    const select = $(id);
    clear(select);
    runs.forEach((run) => select.append(el("option", run.name + " (" + run.created + ")", { value: run.name })));
    if (runs.length > pick) select.value = runs[pick].name;
  }
}

function compareRuns(a, b) {
  const names = [...new Set([...Object.keys(a.metrics), ...Object.keys(b.metrics)])];
  const body = $("compare-table").tBodies[0];
  clear(body);
  $("compare-a").textContent = "A: " + a.name;
  $("compare-b").textContent = "B: " + b.name;
  for (const metric of names) {
    const x = a.metrics[metric];
    const y = b.metrics[metric];
    if (typeof x !== "number" && typeof y !== "number") continue;
    const delta = typeof x === "number" && typeof y === "number" ? (y - x >= 0 ? "+" : "") + fmt(y - x) : "–";
    const tr = el("tr");
    tr.append(el("th", metric, { scope: "row" }), el("td", fmt(x), { class: "num" }));
    tr.append(el("td", fmt(y), { class: "num" }), el("td", delta, { class: "num" }));
    body.append(tr);
  }
  $("compare-table").hidden = false;
}

function setupEvaluations() {
  $("compare-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const a = runs.find((r) => r.name === $("run-a").value);
    const b = runs.find((r) => r.name === $("run-b").value);
    if (a && b) compareRuns(a, b);
  });
}

// ---------------------------------------------------------------- start

document.addEventListener("DOMContentLoaded", () => {
  setupKey();
  setupAsk();
  setupDocuments();
  setupEvaluations();
  window.addEventListener("hashchange", refreshCurrentView);
  refreshCurrentView();
});
