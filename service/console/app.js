// factpatch ops console: plain ES module, no build step. Every call goes to the API with the key
// kept in this tab's sessionStorage; the page polls /v1/model and redraws when the head moves.
const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;
const state = { key: sessionStorage.getItem("factpatch-key") || "", head: null, pending: false, busy: false,
                askedForKey: false };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(`${response.status} ${data.code || ""}: ${data.detail || response.statusText}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function notice(text, kind = "error") {
  const box = $("notice");
  box.textContent = text;
  box.className = `notice ${kind === "info" ? "info" : ""}`;
  box.hidden = !text;
}

function time(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }

// ---- revisions ------------------------------------------------------------------------------
function revisionItem(rev, head) {
  const edits = rev.edit_ids.length ? `${rev.edit_ids.length} edit(s)` : "";
  const removed = rev.removed_ids.length ? `reverted ${rev.removed_ids.length}` : "";
  const base = rev.kind === "rollback" ? `→ state of #${rev.base_revision}` : "";
  const button = rev.revision < head
    ? el("button", { class: "small", "data-revision": rev.revision, onclick: () => askRollback(rev.revision) },
      `Roll back to #${rev.revision}`)
    : "";
  return el("li", { class: rev.revision === head ? "head" : "", "data-revision": rev.revision },
    el("div", { class: "row" },
      el("span", { class: "rev" }, `#${rev.revision}`), el("span", { class: "kind" }, rev.kind),
      el("span", { class: "actor" }, rev.actor || (rev.kind === "base" ? "base model" : "—")),
      el("span", { class: "muted" }, [base, edits, removed].filter(Boolean).join(" · ")), button),
    el("div", { class: "muted" }, `${time(rev.created_at)} · ${rev.checksum.slice(0, 12)}`));
}

async function drawTimeline(head) {
  const page = await api("GET", "/v1/revisions?limit=50");
  $("timeline").replaceChildren(...page.items.map((rev) => revisionItem(rev, head)));
}

function askRollback(revision) {
  $("confirm-text").textContent =
    `Roll back to revision ${revision}? The model becomes exactly what it was then; later edits are undone.`;
  $("confirm").dataset.revision = revision;
  $("confirm").hidden = false;
}

async function rollback() {
  const revision = Number($("confirm").dataset.revision);
  $("confirm").hidden = true;
  try {
    const doc = await api("POST", "/v1/rollbacks", { to_revision: revision });
    notice(`rollback ${doc.id} queued (by ${doc.actor})`, "info");
  } catch (error) {
    notice(error.status === 403 ? `rolling back needs an operator key (${error.message})` : error.message);
  }
  refresh(true);
}

// ---- edits ----------------------------------------------------------------------------------
function reportTable(report) {
  const rows = [el("tr", {}, el("th", {}, "probe"), el("th", {}, "before"), el("th", {}, "after"))];
  rows.push(el("tr", {}, el("td", {}, "target logprob"), el("td", {}, report.target_logprob_before.toFixed(3)),
    el("td", {}, report.target_logprob_after.toFixed(3))));
  for (const r of report.rephrases || []) {
    rows.push(el("tr", {}, el("td", {}, r.prompt), el("td", {}, r.logprob_before.toFixed(3)),
      el("td", {}, r.logprob_after.toFixed(3))));
  }
  for (const p of report.locality || []) {
    rows.push(el("tr", { class: p.changed ? "changed" : "" }, el("td", {}, p.prompt), el("td", {}, p.before),
      el("td", {}, `${p.after}${p.changed ? " (changed)" : ""}`)));
  }
  return el("table", { class: "report" }, ...rows);
}

function editItem(edit) {
  const request = edit.request || {};
  const details = [];
  if (edit.report) details.push(reportTable(edit.report));
  if (edit.error) details.push(el("div", { class: "muted" }, `${edit.error.code}: ${edit.error.detail}`));
  return el("li", { "data-edit": edit.id, "data-status": edit.status },
    el("div", { class: "row" },
      el("span", { class: `status ${edit.status}` }, edit.status),
      el("span", { class: "rev" }, edit.revision === null ? "" : `#${edit.revision}`),
      el("span", { class: "actor" }, edit.actor || "—"), el("span", { class: "muted" }, time(edit.created_at))),
    el("div", { class: "fact" }, `${request.prompt} → ${request.target}`), ...details);
}

async function drawEdits() {
  const page = await api("GET", "/v1/edits?limit=30");
  state.pending = page.items.some((e) => e.status === "queued" || e.status === "applying");
  $("edits").replaceChildren(...page.items.map(editItem));
}

async function submitEdit(event) {
  event.preventDefault();
  const body = { prompt: $("edit-prompt").value, target: $("edit-target").value };
  if ($("edit-subject").value.trim()) body.subject = $("edit-subject").value.trim();
  if ($("edit-locality").value.trim()) body.locality = [$("edit-locality").value.trim()];
  try {
    const doc = await api("POST", "/v1/edits", body);
    notice(`edit ${doc.id} accepted (by ${doc.actor}); it applies in the background`, "info");
    $("edit-form").reset();
  } catch (error) {
    notice(error.message);
  }
  refresh(true);
}

// ---- questions ------------------------------------------------------------------------------
async function ask(event) {
  event.preventDefault();
  const prompt = $("ask-prompt").value;
  $("answer-now").textContent = "…";
  $("answer-base").textContent = "…";
  const query = (base) => api("POST", "/v1/generate", { prompt, max_new_tokens: 8, base });
  const [now, base] = await Promise.allSettled([query(false), query(true)]);
  show(now, "answer-now", (doc) => { $("now-label").textContent = `Now (revision ${doc.revision})`; });
  show(base, "answer-base", () => {});
}

function show(outcome, id, label) {
  if (outcome.status === "fulfilled") {
    $(id).textContent = outcome.value.text;
    $(id).dataset.revision = outcome.value.revision;
    label(outcome.value);
  } else {
    $(id).textContent = outcome.reason.message;
  }
}

// ---- the loop -------------------------------------------------------------------------------
async function refresh(force = false) {
  if (state.busy) return;
  state.busy = true;
  try {
    const model = await api("GET", "/v1/model");
    const moved = model.revision !== state.head;
    $("model").textContent = `${model.base_model} · editor ${model.editor} · revision ${model.revision} · ` +
      `${model.checksum.slice(0, 12)} · ${model.workers.length} worker(s)`;
    $("model").dataset.revision = model.revision;
    if (moved || force || state.pending) {
      state.head = model.revision;
      await Promise.all([drawTimeline(model.revision), drawEdits()]);
    }
    if (state.askedForKey) { notice(""); state.askedForKey = false; }
  } catch (error) {
    state.askedForKey = error.status === 401;
    notice(error.status === 401 ? "enter an API key (reader or above) to see the model" : error.message);
  } finally {
    state.busy = false;
  }
}

function useKey(event) {
  event.preventDefault();
  state.key = $("key").value.trim();
  sessionStorage.setItem("factpatch-key", state.key);
  $("key").value = "";
  notice("");
  refresh(true);
}

$("key-form").addEventListener("submit", useKey);
$("edit-form").addEventListener("submit", submitEdit);
$("ask-form").addEventListener("submit", ask);
$("confirm-yes").addEventListener("click", rollback);
$("confirm-no").addEventListener("click", () => { $("confirm").hidden = true; });
refresh(true);
setInterval(refresh, POLL_MS);
