// vidsr serve: the page. Plain JavaScript, no framework, no CDN.
// The queue comes from one server-sent event stream; every change is a POST with X-Vidsr: 1.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const $$ = (sel, el = document) => Array.from(el.querySelectorAll(sel));
const POST = { method: "POST", headers: { "X-Vidsr": "1" } };
const FIELDS = ["model", "outscale", "codec", "crf", "start", "duration"];
let lookJob = null;
const openLogs = new Set();

function fmtTime(s) {
  if (s == null || !isFinite(s)) return "";
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : m ? `${m}m${String(r).padStart(2, "0")}s` : `${r}s`;
}

function showErrors(errors) {
  $$(".error").forEach((e) => { e.textContent = ""; });
  $$(".options input, .options select").forEach((i) => i.classList.remove("bad"));
  for (const [field, msg] of Object.entries(errors || {})) {
    const span = $(`.error[data-for="${field}"]`) || $('.error[data-for="file"]');
    span.textContent = msg;
    const input = $(`#f-${field}`);
    if (input) input.classList.add("bad");
  }
}

function jobOptions() {
  const opts = { preset: $("#f-preset").value };
  for (const f of FIELDS) {
    const v = $(`#f-${f}`).value.trim();
    if (v) opts[f] = v;
  }
  return opts;
}

async function postJSON(url, body) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "X-Vidsr": "1", "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = {};
  try { data = await r.json(); } catch (e) { /* not JSON */ }
  return { ok: r.ok, status: r.status, data };
}

// -- adding jobs ---------------------------------------------------------------------------------

async function uploadFile(file) {
  const opts = jobOptions();
  const check = await postJSON("/api/check", { ...opts, name: file.name });
  if (!check.ok) { showErrors(check.data.errors || { file: check.data.detail }); return; }
  showErrors({});
  const row = document.createElement("div");
  row.className = "upload";
  row.innerHTML = '<span class="n"></span> <progress max="100" value="0"></progress> <span class="msg"></span>';
  $(".n", row).textContent = file.name;
  $("#uploads").appendChild(row);
  const params = new URLSearchParams({ name: file.name, ...opts });
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/api/upload?${params}`);
  xhr.setRequestHeader("X-Vidsr", "1");
  xhr.setRequestHeader("Content-Type", "application/octet-stream");
  xhr.upload.onprogress = (e) => { if (e.lengthComputable) $("progress", row).value = (100 * e.loaded) / e.total; };
  xhr.onload = () => {
    let data = {};
    try { data = JSON.parse(xhr.responseText); } catch (e) { /* plain text */ }
    if (xhr.status === 200) { row.remove(); return; }
    if (data.errors) showErrors(data.errors);
    $(".msg", row).textContent = data.detail || (data.errors ? "see the fields" : xhr.statusText);
    row.classList.add("failed");
  };
  xhr.onerror = () => { $(".msg", row).textContent = "the upload was interrupted"; row.classList.add("failed"); };
  xhr.send(file);
}

function setupDrop() {
  const drop = $("#drop");
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
  drop.addEventListener("drop", (e) => { for (const f of e.dataTransfer.files) uploadFile(f); });
  $("#file-input").addEventListener("change", (e) => { for (const f of e.target.files) uploadFile(f); e.target.value = ""; });
}

let browsePath = "";
async function browse(path) {
  const root = $("#root-select").value;
  const r = await fetch(`/api/files?${new URLSearchParams({ root, path })}`);
  if (!r.ok) return;
  const data = await r.json();
  browsePath = path;
  $("#browse-path").textContent = "/" + path;
  const list = $("#browse-list");
  list.innerHTML = "";
  if (path) {
    const up = document.createElement("li");
    up.className = "dir";
    up.textContent = "..";
    up.onclick = () => browse(path.split("/").slice(0, -1).join("/"));
    list.appendChild(up);
  }
  for (const e of data.entries) {
    const li = document.createElement("li");
    li.className = e.dir ? "dir" : "file";
    li.textContent = e.name + (e.dir ? "/" : "");
    const rel = path ? `${path}/${e.name}` : e.name;
    li.onclick = async () => {
      if (e.dir) { browse(rel); return; }
      const res = await postJSON("/api/add", { root: Number(root), path: rel, ...jobOptions() });
      showErrors(res.ok ? {} : res.data.errors || { file: res.data.detail });
    };
    list.appendChild(li);
  }
}

// -- the queue -----------------------------------------------------------------------------------

function renderJobs(jobs) {
  const body = $("#jobs tbody");
  $("#empty").hidden = jobs.length > 0;
  const seen = new Set();
  for (const job of jobs) {
    seen.add(job.id);
    let tr = body.querySelector(`tr[data-id="${job.id}"]`);
    if (!tr) {
      tr = $("#job-row").content.firstElementChild.cloneNode(true);
      tr.dataset.id = job.id;
      $$("button", tr).forEach((b) => b.addEventListener("click", () => act(job.id, b.dataset.act, tr)));
      body.appendChild(tr);
    }
    tr.dataset.state = job.state;
    $(".n", tr).textContent = job.name;
    const opts = [job.preset, ...Object.entries(job.overrides || {}).map(([k, v]) => `${k}=${v}`)].filter(Boolean);
    $(".summary", tr).textContent = job.summary || (opts.length ? opts.join(", ") : "");
    $(".reason", tr).textContent = job.state === "failed" || job.state === "skipped" ? job.error || "" : "";
    const badge = $(".badge", tr);
    badge.textContent = job.state;
    badge.className = `badge ${job.state}`;
    const p = job.progress;
    let pct = 0, nums = "";
    if (p) {
      pct = p.total ? Math.min(100, (100 * p.done) / p.total) : 0;
      nums = `${p.done}${p.total ? "/" + p.total : ""} frames`;
      if (p.fps) nums += ` · ${p.fps.toFixed(2)} fps`;
      if (p.eta != null) nums += ` · ETA ${fmtTime(p.eta)}`;
    } else if (job.state === "done") {
      pct = 100;
      nums = job.frames != null ? `${job.frames} frames · ${(job.fps || 0).toFixed(2)} fps` : "";
    }
    $(".fill", tr).style.width = `${pct}%`;
    $(".nums", tr).textContent = nums;
    const dl = $('[data-act="download"]', tr);
    dl.hidden = job.state !== "done" || !job.output;
    dl.href = `/api/jobs/${job.id}/output`;
    dl.setAttribute("download", job.output || "");
    $('[data-act="cancel"]', tr).hidden = !["queued", "running"].includes(job.state);
    $('[data-act="retry"]', tr).hidden = !["failed", "skipped", "done"].includes(job.state);
    $('[data-act="remove"]', tr).hidden = job.state === "running";
    if (openLogs.has(job.id)) loadLog(job.id, tr);
  }
  $$("tr[data-id]", body).forEach((tr) => { if (!seen.has(tr.dataset.id)) tr.remove(); });
}

async function loadLog(id, tr) {
  const r = await fetch(`/api/jobs/${id}/log`);
  let pre = $("pre.log", tr);
  if (!pre) { pre = document.createElement("pre"); pre.className = "log"; $(".name", tr).appendChild(pre); }
  pre.textContent = r.ok ? await r.text() : "";
}

async function act(id, what, tr) {
  if (what === "look") { openLook(id, $(".n", tr).textContent); return; }
  if (what === "log") {
    if (openLogs.has(id)) { openLogs.delete(id); const pre = $("pre.log", tr); if (pre) pre.remove(); }
    else { openLogs.add(id); loadLog(id, tr); }
    return;
  }
  const r = await fetch(`/api/jobs/${id}/${what}`, POST);
  if (!r.ok) {
    let msg = r.statusText;
    try { msg = (await r.json()).detail || msg; } catch (e) { /* plain */ }
    $(".reason", tr).textContent = msg;
  }
}

function connect() {
  const live = $("#live");
  const es = new EventSource("/api/events");
  es.onopen = () => { live.textContent = "live"; live.className = "live on"; };
  es.onmessage = (e) => renderJobs(JSON.parse(e.data).jobs);
  es.onerror = () => { live.textContent = "reconnecting"; live.className = "live off"; };
}

// -- look first: a before/after slider at 1:1 ----------------------------------------------------

function openLook(id, name) {
  lookJob = id;
  $("#look").hidden = false;
  $("#look-name").textContent = name;
  $("#slider").hidden = true;
  $("#look-range").hidden = true;
  $("#look-info").textContent = "";
  showLook();
  $("#look").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

async function showLook() {
  if (!lookJob) return;
  $('.error[data-for="at"]').textContent = "";
  $("#look-info").textContent = "working…";
  const at = $("#look-at").value.trim();
  const r = await fetch(`/api/jobs/${lookJob}/compare?${new URLSearchParams({ at })}`);
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    $("#look-info").textContent = "";
    $('.error[data-for="at"]').textContent = (data.errors && data.errors.at) || data.detail || r.statusText;
    return;
  }
  const before = $("#look-before"), after = $("#look-after");
  await Promise.all([
    new Promise((ok) => { after.onload = ok; after.src = data.after; }),
    new Promise((ok) => { before.onload = ok; before.src = data.before; }),
  ]);
  const side = after.naturalWidth;
  $("#slider").style.width = `${side}px`;
  $("#slider").style.height = `${after.naturalHeight}px`;
  before.style.width = `${side}px`;
  $("#look-model").textContent = `after: ${data.model}`;
  $("#slider").hidden = false;
  $("#look-range").hidden = false;
  $("#look-range").style.width = `${side}px`;
  const when = data.time != null ? ` at ${data.time.toFixed(2)} s` : "";
  $("#look-info").textContent = `crop of ${data.crop.size} px at x=${data.crop.x} y=${data.crop.y}${when}, ${data.scale}x, 1:1`;
  setSplit($("#look-range").value);
}

function setSplit(v) {
  $(".before-clip").style.width = `${v}%`;
  $(".divider").style.left = `${v}%`;
}

async function listModelFiles() {
  const r = await fetch("/api/models");
  if (!r.ok) return;
  const data = await r.json();
  const ul = $("#model-files");
  for (const f of data.files) {
    const li = document.createElement("li");
    li.textContent = `model file under a root: ${f.path}`;
    ul.appendChild(li);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupDrop();
  connect();
  $("#look-go").addEventListener("click", showLook);
  $("#look-range").addEventListener("input", (e) => setSplit(e.target.value));
  if ($("#root-select")) {
    $("#root-select").addEventListener("change", () => browse(""));
    browse("");
  }
  listModelFiles();
});
