// The swarmer daemon's web UI: renders /api/v1 (torrents, details, session totals) and sends the
// user's actions back to it.
//
// Live data comes only from the event stream GET /api/v1/events (`event: torrents` carries the
// whole torrent list, `event: session` the totals); there is no polling loop. The browser's
// EventSource reconnects a dropped stream by itself; when it gives up (the daemon restarted, or
// answered 401) this file reconnects with a capped backoff, or asks for the access token first.
// Every mutating request carries `X-Requested-By: swarmer`, which the daemon's CSRF check needs.
// Names and paths come from torrents, so they are untrusted: everything is written with
// textContent, never as HTML.

const API = '/api/v1';
const PRIORITIES = ['skip', 'low', 'normal', 'high'];
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 15000;

const $ = (id) => document.getElementById(id);

const ui = {
  /** id -> the latest Torrent object seen. */
  torrents: new Map(),
  /** id -> its <tr>. */
  rows: new Map(),
  /** The id whose detail panel is open, or null. */
  selected: null,
  /** True while a detail request is in flight; `detailStale` asks for one more after it. */
  detailLoading: false,
  detailStale: false,
  /** The id the remove dialog is about. */
  removing: null,
  events: null,
  retryMs: RETRY_FIRST_MS,
  retryTimer: null,
  needLogin: false,
};

class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** Calls the API; resolves to the parsed JSON (null for 204) or rejects with an ApiError. */
async function api(method, path, body) {
  const init = { method, headers: {}, credentials: 'same-origin' };
  if (method !== 'GET' && method !== 'HEAD') init.headers['X-Requested-By'] = 'swarmer';
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(API + path, init);
  } catch (e) {
    throw new ApiError(0, 'cannot reach the daemon');
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (res.status === 401 && path !== '/login') showLogin();
  if (!res.ok) {
    const message = (data && typeof data.error === 'string' && data.error) || `${res.status} ${res.statusText}`;
    throw new ApiError(res.status, message, data);
  }
  return data;
}

// ---------------------------------------------------------------- formatting

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

function fmtBytes(n) {
  if (typeof n !== 'number' || !isFinite(n) || n < 0) return '–';
  let i = 0;
  while (n >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)} ${UNITS[i]}`;
}

function fmtRate(n) {
  return n > 0 ? `${fmtBytes(n)}/s` : '–';
}

function fmtEta(t) {
  if (t.state !== 'downloading') return '';
  const s = t.eta_seconds;
  if (s === null || s === undefined) return '∞';
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

/** Progress as a percentage that reads 100% only when every wanted byte is there. */
function fmtPercent(t) {
  const done = t.wanted_bytes > 0 ? t.done_bytes >= t.wanted_bytes : t.progress >= 1;
  if (done && t.state !== 'fetching_metadata') return '100%';
  const p = Math.min(Math.max(Number(t.progress) || 0, 0), 1);
  return `${(Math.floor(p * 1000) / 10).toFixed(1)}%`;
}

function fmtSize(t) {
  if (!t.total_bytes) return '–';
  if (t.wanted_bytes < t.total_bytes) return `${fmtBytes(t.wanted_bytes)} of ${fmtBytes(t.total_bytes)}`;
  return fmtBytes(t.total_bytes);
}

const stateLabel = (s) => String(s).replace(/_/g, ' ');

// ---------------------------------------------------------------- messages

function showError(message) {
  const el = $('error');
  el.textContent = message;
  el.hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

function setConnection(text) {
  $('connection').textContent = text;
}

function errorText(e) {
  return e instanceof ApiError ? e.message : String(e);
}

// ---------------------------------------------------------------- torrent table

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function createRow(t) {
  const row = el('tr', { 'data-testid': 'torrent-row', 'data-id': String(t.id) });
  const name = el('td', { class: 'name' });
  name.append(
    el('button', { type: 'button', class: 'link', 'data-action': 'select', 'data-testid': 'torrent-name' }),
    el('div', { class: 'row-error', 'data-testid': 'torrent-error' }),
  );
  const progress = el('td', { class: 'progress' });
  progress.append(el('progress', { max: '1', value: '0' }), el('span', { 'data-testid': 'torrent-percent' }));
  const actions = el('td', { class: 'actions' });
  actions.append(
    el('button', { type: 'button', 'data-action': 'pause', 'data-testid': 'pause' }, 'Pause'),
    el('button', { type: 'button', 'data-action': 'resume', 'data-testid': 'resume' }, 'Resume'),
    el('button', { type: 'button', 'data-action': 'remove', 'data-testid': 'remove', class: 'danger' }, 'Remove'),
  );
  row.append(
    name,
    el('td', { 'data-testid': 'torrent-state' }),
    progress,
    el('td', { class: 'num', 'data-testid': 'torrent-size' }),
    el('td', { class: 'num', 'data-testid': 'torrent-down' }),
    el('td', { class: 'num', 'data-testid': 'torrent-up' }),
    el('td', { class: 'num', 'data-testid': 'torrent-peers' }),
    el('td', { class: 'num', 'data-testid': 'torrent-eta' }),
    actions,
  );
  return row;
}

const cell = (row, testid) => row.querySelector(`[data-testid="${testid}"]`);

function updateRow(row, t) {
  const name = t.name || t.info_hash;
  row.dataset.state = t.state;
  row.dataset.infoHash = t.info_hash;
  row.classList.toggle('selected', ui.selected === t.id);
  const nameButton = cell(row, 'torrent-name');
  nameButton.textContent = name;
  nameButton.title = name;
  nameButton.setAttribute('aria-label', `Details of ${name}`);
  cell(row, 'torrent-error').textContent = t.error || '';
  const state = cell(row, 'torrent-state');
  state.textContent = stateLabel(t.state);
  state.className = `state state-${t.state}`;
  const bar = row.querySelector('progress');
  bar.value = Math.min(Math.max(Number(t.progress) || 0, 0), 1);
  bar.setAttribute('aria-label', `Progress of ${name}`);
  cell(row, 'torrent-percent').textContent = fmtPercent(t);
  cell(row, 'torrent-size').textContent = fmtSize(t);
  cell(row, 'torrent-down').textContent = fmtRate(t.download_rate);
  cell(row, 'torrent-up').textContent = fmtRate(t.upload_rate);
  cell(row, 'torrent-peers').textContent = String(t.peers ?? 0);
  cell(row, 'torrent-eta').textContent = fmtEta(t);
  const paused = t.state === 'paused';
  cell(row, 'pause').disabled = paused || t.state === 'failed';
  cell(row, 'resume').disabled = !(paused || t.state === 'failed');
  for (const action of ['pause', 'resume', 'remove']) {
    cell(row, action).setAttribute('aria-label', `${action[0].toUpperCase()}${action.slice(1)} ${name}`);
  }
}

/** Places `row` at `index` among the table's rows (kept in order of id, i.e. of adding). */
function place(row, index) {
  const body = $('torrent-rows');
  const at = body.children[index] || null;
  if (at !== row) body.insertBefore(row, at);
}

/** Inserts or updates one torrent, e.g. from the answer to an action. */
function upsert(t) {
  if (!t || typeof t.id !== 'number') return;
  ui.torrents.set(t.id, t);
  let row = ui.rows.get(t.id);
  if (!row) {
    row = createRow(t);
    ui.rows.set(t.id, row);
  }
  updateRow(row, t);
  const ids = [...ui.torrents.keys()].sort((a, b) => a - b);
  place(row, ids.indexOf(t.id));
  $('empty').hidden = true;
}

function forget(id) {
  ui.torrents.delete(id);
  const row = ui.rows.get(id);
  if (row) row.remove();
  ui.rows.delete(id);
  if (ui.selected === id) closeDetail();
  $('empty').hidden = ui.torrents.size > 0;
}

/** Replaces the table with the full list from an `event: torrents`. */
function renderTorrents(list) {
  const fresh = new Map(list.filter((t) => t && typeof t.id === 'number').map((t) => [t.id, t]));
  for (const id of [...ui.torrents.keys()]) if (!fresh.has(id)) forget(id);
  const ids = [...fresh.keys()].sort((a, b) => a - b);
  ids.forEach((id, index) => {
    const t = fresh.get(id);
    const before = ui.torrents.get(id);
    ui.torrents.set(id, t);
    let row = ui.rows.get(id);
    if (!row) {
      row = createRow(t);
      ui.rows.set(id, row);
    }
    updateRow(row, t);
    place(row, index);
    if (id === ui.selected && JSON.stringify(before) !== JSON.stringify(t)) loadDetail();
  });
  $('empty').hidden = ids.length > 0;
}

function renderSession(s) {
  if (!s) return;
  $('session-down').textContent = fmtRate(s.download_rate);
  $('session-up').textContent = fmtRate(s.upload_rate);
  $('session-counts').textContent = `${s.torrents} torrents · ${s.active} active · ${s.paused} paused`;
  $('session-port').textContent = s.listen_port ? `peer port ${s.listen_port}` : '';
  $('session-version').textContent = s.version ? `swarmer ${s.version}` : '';
  document.title = s.download_rate > 0 || s.upload_rate > 0
    ? `↓ ${fmtRate(s.download_rate)} ↑ ${fmtRate(s.upload_rate)} – swarmer`
    : 'swarmer';
}

// ---------------------------------------------------------------- actions

async function onTableClick(event) {
  const button = event.target.closest('button[data-action]');
  const row = button && button.closest('tr[data-id]');
  if (!row) return;
  const id = Number(row.dataset.id);
  const action = button.dataset.action;
  if (action === 'select') {
    select(id);
    return;
  }
  if (action === 'remove') {
    openRemove(id);
    return;
  }
  clearError();
  button.disabled = true;
  try {
    upsert(await api('POST', `/torrents/${id}/${action}`));
  } catch (e) {
    showError(`Cannot ${action} the torrent: ${errorText(e)}`);
    const t = ui.torrents.get(id);
    if (t) updateRow(row, t);
  }
}

function openRemove(id) {
  const t = ui.torrents.get(id);
  if (!t) return;
  ui.removing = id;
  $('remove-name').textContent = t.name || t.info_hash;
  $('remove-delete-data').checked = false;
  $('remove-dialog').showModal();
  $('remove-cancel').focus();
}

async function onRemoveClosed() {
  const dialog = $('remove-dialog');
  const id = ui.removing;
  ui.removing = null;
  if (dialog.returnValue !== 'remove' || id === null) return;
  const deleteData = $('remove-delete-data').checked;
  clearError();
  try {
    await api('DELETE', `/torrents/${id}?delete_data=${deleteData}`);
    forget(id);
  } catch (e) {
    showError(`Cannot remove the torrent: ${errorText(e)}`);
  }
}

async function addMagnet(event) {
  event.preventDefault();
  clearError();
  const input = $('magnet-input');
  const magnet = input.value.trim();
  if (!magnet) return;
  const button = $('magnet-submit');
  button.disabled = true;
  try {
    upsert(await api('POST', '/torrents', { magnet, paused: $('add-paused').checked }));
    input.value = '';
  } catch (e) {
    showError(`Cannot add the magnet link: ${errorText(e)}`);
  } finally {
    button.disabled = false;
  }
}

async function addFile(event) {
  event.preventDefault();
  clearError();
  const input = $('file-input');
  const file = input.files && input.files[0];
  if (!file) return;
  const form = new FormData();
  form.append('torrent', file, file.name);
  form.append('paused', $('add-paused').checked ? 'true' : 'false');
  const button = $('file-submit');
  button.disabled = true;
  try {
    upsert(await api('POST', '/torrents', form));
    input.value = '';
  } catch (e) {
    showError(`Cannot add ${file.name}: ${errorText(e)}`);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- detail panel

function select(id) {
  ui.selected = id;
  for (const [rowId, row] of ui.rows) row.classList.toggle('selected', rowId === id);
  $('file-rows').replaceChildren();
  $('detail').dataset.id = String(id);
  $('detail').hidden = false;
  loadDetail();
}

function closeDetail() {
  ui.selected = null;
  for (const row of ui.rows.values()) row.classList.remove('selected');
  $('detail').hidden = true;
  delete $('detail').dataset.id;
  $('file-rows').replaceChildren();
}

/** Fetches the selected torrent's detail; at most one request at a time, the last one wins. */
async function loadDetail() {
  if (ui.selected === null) return;
  if (ui.detailLoading) {
    ui.detailStale = true;
    return;
  }
  const id = ui.selected;
  ui.detailLoading = true;
  try {
    const detail = await api('GET', `/torrents/${id}`);
    if (ui.selected === id) renderDetail(detail);
  } catch (e) {
    if (e.status === 404) {
      if (ui.selected === id) closeDetail();
    } else {
      showError(`Cannot load the torrent's details: ${errorText(e)}`);
    }
  } finally {
    ui.detailLoading = false;
    if (ui.detailStale) {
      ui.detailStale = false;
      loadDetail();
    }
  }
}

function renderDetail(d) {
  if (!d || d.id !== ui.selected) return;
  $('detail-name').textContent = d.name || d.info_hash;
  $('detail-hash').textContent = d.info_hash;
  $('detail-pieces').textContent = d.piece_count
    ? `${d.pieces_have} of ${d.piece_count} × ${fmtBytes(d.piece_length)}`
    : '–';
  $('detail-dir').textContent = d.download_dir;
  $('detail-transfer').textContent = `${fmtBytes(d.downloaded_bytes)} down, ${fmtBytes(d.uploaded_bytes)} up`;
  $('detail-trackers').textContent = (d.trackers || []).join(', ') || 'none';
  $('detail-error').textContent = d.error || 'none';
  const files = (d.files || []).slice().sort((a, b) => a.index - b.index);
  const body = $('file-rows');
  const shape = files.map((f) => `${f.index}:${f.path}`).join('\n');
  if (body.dataset.shape !== shape) {
    body.replaceChildren(...files.map(fileRow));
    body.dataset.shape = shape;
  }
  for (const f of files) {
    const select = body.querySelector(`select[data-index="${f.index}"]`);
    select.dataset.priority = f.priority;
    // Leave a select the user is working with alone; the answer to its change updates it.
    if (select !== document.activeElement && !select.disabled) select.value = f.priority;
  }
}

function fileRow(f) {
  const row = el('tr', { 'data-testid': 'file-row', 'data-index': String(f.index) });
  const select = el('select', {
    'data-testid': 'file-priority',
    'data-index': String(f.index),
    'aria-label': `Priority of ${f.path}`,
  });
  for (const p of PRIORITIES) select.append(el('option', { value: p }, p));
  select.value = f.priority;
  const priority = el('td');
  priority.append(select);
  row.append(el('td', { class: 'name', title: f.path }, f.path), el('td', { class: 'num' }, fmtBytes(f.length)), priority);
  return row;
}

async function onPriorityChange(event) {
  const changed = event.target.closest('select[data-index]');
  if (!changed || ui.selected === null) return;
  const id = ui.selected;
  const selects = [...$('file-rows').querySelectorAll('select[data-index]')];
  const priorities = selects.map((s) => s.value);
  clearError();
  for (const s of selects) s.disabled = true;
  try {
    const detail = await api('PUT', `/torrents/${id}/files`, { priorities });
    for (const s of selects) s.disabled = false;
    renderDetail(detail);
    upsert(detail);
  } catch (e) {
    for (const s of selects) s.disabled = false;
    showError(`Cannot set the file priorities: ${errorText(e)}`);
    loadDetail();
  }
}

// ---------------------------------------------------------------- event stream and login

function connect() {
  clearTimeout(ui.retryTimer);
  if (ui.events) ui.events.close();
  const events = new EventSource(`${API}/events`);
  ui.events = events;
  events.addEventListener('open', () => {
    ui.retryMs = RETRY_FIRST_MS;
    setConnection('');
  });
  events.addEventListener('torrents', (e) => {
    const list = parseJson(e.data);
    if (Array.isArray(list)) renderTorrents(list);
  });
  events.addEventListener('session', (e) => renderSession(parseJson(e.data)));
  events.addEventListener('error', () => {
    if (events !== ui.events) return;
    if (events.readyState !== EventSource.CLOSED) {
      // The browser reconnects by itself.
      setConnection('Connection to the daemon lost; reconnecting…');
      return;
    }
    // The browser gave up (an HTTP error such as 401): find out why before trying again.
    events.close();
    ui.events = null;
    setConnection('Not connected to the daemon; retrying…');
    api('GET', '/session')
      .then(renderSession, () => {})
      .finally(() => {
        if (!ui.needLogin) {
          ui.retryTimer = setTimeout(connect, ui.retryMs);
          ui.retryMs = Math.min(ui.retryMs * 2, RETRY_MAX_MS);
        }
      });
  });
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch (e) {
    return null;
  }
}

function showLogin() {
  if (ui.needLogin) return;
  ui.needLogin = true;
  if (ui.events) ui.events.close();
  ui.events = null;
  clearTimeout(ui.retryTimer);
  setConnection('Log in to see the torrents.');
  $('login').hidden = false;
  $('token-input').focus();
}

async function login(event) {
  event.preventDefault();
  clearError();
  const token = $('token-input').value;
  try {
    await api('POST', '/login', { token });
  } catch (e) {
    showError(e.status === 401 || e.status === 403 ? 'Wrong token.' : `Cannot log in: ${errorText(e)}`);
    $('token-input').select();
    return;
  }
  $('token-input').value = '';
  $('login').hidden = true;
  ui.needLogin = false;
  setConnection('');
  start();
  loadDetail();
}

function start() {
  connect();
  api('GET', '/session').then(renderSession, () => {});
}

function init() {
  $('add-magnet').addEventListener('submit', addMagnet);
  $('add-file').addEventListener('submit', addFile);
  $('login').addEventListener('submit', login);
  $('torrent-rows').addEventListener('click', onTableClick);
  $('file-rows').addEventListener('change', onPriorityChange);
  $('detail-close').addEventListener('click', closeDetail);
  $('remove-dialog').addEventListener('close', onRemoveClosed);
  start();
}

init();
