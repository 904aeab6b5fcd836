// The swarmer daemon's web UI: renders /api/v1 (torrents, their details, settings, session
// totals) and sends the user's actions back to it. No framework and no build step: the page is
// small enough that plain DOM code stays readable, and the daemon embeds these files as they are.
//
// Live data comes only from the event stream GET /api/v1/events (`event: torrents` carries the
// whole torrent list, `event: session` the totals); there is no polling loop. A change of the
// selected torrent reloads the open details tab (files, peers, trackers or pieces). The browser's
// EventSource reconnects a dropped stream by itself; when it gives up (the daemon restarted, or
// answered 401) this file reconnects with a capped backoff, or asks for the access token first.
// Every mutating request carries `X-Requested-By: swarmer`, which the daemon's CSRF check needs.
// Names and paths come from torrents and peers, so they are untrusted: everything is written with
// textContent, never as HTML.
//
// Sorting, filtering and searching happen here, on the list the stream sends; the choice is kept
// in the URL's hash so a reload keeps it.

const API = '/api/v1';
const PRIORITIES = ['skip', 'low', 'normal', 'high'];
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 15000;
/** File names a browser can usually play: these get a stream link. */
const MEDIA = /\.(mp4|m4v|mkv|webm|mov|avi|ogv|mp3|m4a|aac|flac|ogg|oga|opus|wav)$/i;
/** Most cells the piece map draws; more pieces share a cell (a cell is "have" only if all are). */
const MAX_CELLS = 4096;

const $ = (id) => document.getElementById(id);

const ui = {
  /** id -> the latest Torrent object seen. */
  torrents: new Map(),
  /** id -> its <tr>. */
  rows: new Map(),
  /** The id whose detail panel is open, or null. */
  selected: null,
  /** The open details tab. */
  tab: 'overview',
  /** True while a detail request is in flight; `detailStale` asks for one more after it. */
  detailLoading: false,
  detailStale: false,
  /** The last pieces answer, redrawn when the panel's width changes. */
  pieces: null,
  /** The element that had focus before the panel opened, given it back on close. */
  returnFocus: null,
  /** The id the remove dialog is about. */
  removing: null,
  /** How the list is shown: sort key and direction, state and category filters, search text. */
  view: { sort: 'id', desc: false, state: '', category: '', search: '' },
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

/** A fraction 0..1 as a percentage that reads 100% only when it is exactly whole. */
function fmtFraction(p) {
  const f = Math.min(Math.max(Number(p) || 0, 0), 1);
  return f >= 1 ? '100%' : `${(Math.floor(f * 1000) / 10).toFixed(1)}%`;
}

/** Progress as a percentage that reads 100% only when every wanted byte is there. */
function fmtPercent(t) {
  const done = t.wanted_bytes > 0 ? t.done_bytes >= t.wanted_bytes : t.progress >= 1;
  if (done && t.state !== 'fetching_metadata') return '100%';
  return fmtFraction(Math.min(Number(t.progress) || 0, 0.999));
}

function fmtSize(t) {
  if (!t.total_bytes) return '–';
  if (t.wanted_bytes < t.total_bytes) return `${fmtBytes(t.wanted_bytes)} of ${fmtBytes(t.total_bytes)}`;
  return fmtBytes(t.total_bytes);
}

function fmtTime(seconds) {
  if (!seconds) return '–';
  return new Date(seconds * 1000).toLocaleString();
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
    el('div', { class: 'tags', 'data-testid': 'torrent-tags' }),
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
    el('td', { class: 'num', 'data-testid': 'torrent-size', 'data-label': 'Size' }),
    el('td', { class: 'num', 'data-testid': 'torrent-down', 'data-label': '↓' }),
    el('td', { class: 'num', 'data-testid': 'torrent-up', 'data-label': '↑' }),
    el('td', { class: 'num', 'data-testid': 'torrent-peers', 'data-label': 'Peers' }),
    el('td', { class: 'num', 'data-testid': 'torrent-eta', 'data-label': 'ETA' }),
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
  const tags = cell(row, 'torrent-tags');
  const labels = [t.category, ...(t.tags || [])].filter(Boolean);
  if (tags.dataset.labels !== labels.join('\n')) {
    tags.replaceChildren(...labels.map((l, i) => el('span', { class: i === 0 && t.category ? 'tag category' : 'tag' }, l)));
    tags.dataset.labels = labels.join('\n');
  }
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

/** The value a column sorts by. */
function sortValue(t, key) {
  switch (key) {
    case 'name': return (t.name || t.info_hash).toLocaleLowerCase();
    case 'eta_seconds': return t.state === 'downloading' ? (t.eta_seconds ?? Infinity) : Infinity;
    default: return t[key] ?? 0;
  }
}

/** Whether a torrent passes the state and category filters and the search. */
function shown(t) {
  const v = ui.view;
  if (v.state && t.state !== v.state) return false;
  if (v.category && (t.category || '') !== v.category) return false;
  if (v.search && !(t.name || t.info_hash).toLocaleLowerCase().includes(v.search.toLocaleLowerCase())) return false;
  return true;
}

/** Orders, hides and shows the rows after the list or the view changed. */
function applyView() {
  const { sort, desc } = ui.view;
  const list = [...ui.torrents.values()].sort((a, b) => {
    const x = sortValue(a, sort);
    const y = sortValue(b, sort);
    const c = x < y ? -1 : x > y ? 1 : a.id - b.id;
    return desc ? -c : c;
  });
  const body = $('torrent-rows');
  let visible = 0;
  list.forEach((t, index) => {
    const row = ui.rows.get(t.id);
    if (!row) return;
    const at = body.children[index] || null;
    if (at !== row) body.insertBefore(row, at);
    row.hidden = !shown(t);
    if (!row.hidden) visible += 1;
  });
  for (const th of document.querySelectorAll('#torrents th[data-sort]')) {
    if (th.dataset.sort === sort) th.setAttribute('aria-sort', desc ? 'descending' : 'ascending');
    else th.removeAttribute('aria-sort');
  }
  $('sort-select').value = [...$('sort-select').options].some((o) => o.value === sort) ? sort : 'id';
  $('empty').hidden = ui.torrents.size > 0;
  $('filtered').hidden = ui.torrents.size === 0 || visible > 0;
  renderCategories();
}

/** Fills the category filter and the add dialog's suggestions from the torrents' categories. */
function renderCategories() {
  const names = [...new Set([...ui.torrents.values()].map((t) => t.category).filter(Boolean))].sort();
  const key = names.join('\n');
  const filter = $('category-filter');
  if (filter.dataset.names === key) return;
  filter.dataset.names = key;
  filter.replaceChildren(el('option', { value: '' }, 'All categories'), ...names.map((n) => el('option', { value: n }, n)));
  if (ui.view.category && !names.includes(ui.view.category)) filter.append(el('option', { value: ui.view.category }, ui.view.category));
  filter.value = ui.view.category;
  $('category-list').replaceChildren(...names.map((n) => el('option', { value: n })));
}

/** Keeps the view in the URL's hash, so a reload shows the same list. */
function saveView() {
  const v = ui.view;
  const params = new URLSearchParams();
  if (v.sort !== 'id') params.set('sort', v.sort);
  if (v.desc) params.set('desc', '1');
  if (v.state) params.set('state', v.state);
  if (v.category) params.set('category', v.category);
  if (v.search) params.set('q', v.search);
  const hash = params.toString();
  history.replaceState(null, '', hash ? `#${hash}` : location.pathname);
}

function loadView() {
  const params = new URLSearchParams(location.hash.slice(1));
  ui.view = {
    sort: params.get('sort') || 'id',
    desc: params.get('desc') === '1',
    state: params.get('state') || '',
    category: params.get('category') || '',
    search: params.get('q') || '',
  };
  $('search').value = ui.view.search;
  $('state-filter').value = ui.view.state;
}

function setView(change) {
  Object.assign(ui.view, change);
  saveView();
  applyView();
}

function onSortClick(event) {
  const th = event.target.closest('th[data-sort]');
  if (!th) return;
  // Ascending, descending, then back to the order of adding.
  const key = th.dataset.sort;
  if (ui.view.sort !== key) setView({ sort: key, desc: false });
  else if (!ui.view.desc) setView({ desc: true });
  else setView({ sort: 'id', desc: false });
}

/** Inserts or updates one torrent, e.g. from the answer to an action. */
function upsert(t) {
  if (!t || typeof t.id !== 'number') return;
  ui.torrents.set(t.id, t);
  let row = ui.rows.get(t.id);
  if (!row) {
    row = createRow(t);
    ui.rows.set(t.id, row);
    $('torrent-rows').append(row);
  }
  updateRow(row, t);
  applyView();
}

function forget(id) {
  ui.torrents.delete(id);
  const row = ui.rows.get(id);
  if (row) row.remove();
  ui.rows.delete(id);
  if (ui.selected === id) closeDetail();
  applyView();
}

/** Replaces the table with the full list from an `event: torrents`. */
function renderTorrents(list) {
  const fresh = new Map(list.filter((t) => t && typeof t.id === 'number').map((t) => [t.id, t]));
  for (const id of [...ui.torrents.keys()]) if (!fresh.has(id)) forget(id);
  for (const [id, t] of fresh) {
    const before = ui.torrents.get(id);
    ui.torrents.set(id, t);
    let row = ui.rows.get(id);
    if (!row) {
      row = createRow(t);
      ui.rows.set(id, row);
      $('torrent-rows').append(row);
    }
    updateRow(row, t);
    if (id === ui.selected && JSON.stringify(before) !== JSON.stringify(t)) loadDetail();
  }
  applyView();
}

function renderSession(s) {
  if (!s) return;
  ui.session = s;
  $('session-down').textContent = fmtRate(s.download_rate);
  $('session-up').textContent = fmtRate(s.upload_rate);
  $('session-counts').textContent =
    `${s.torrents} ${s.torrents === 1 ? 'torrent' : 'torrents'} · ${s.active} active · ${s.paused} paused`;
  $('session-port').textContent = s.listen_port ? `peer port ${s.listen_port}` : '';
  $('session-version').textContent = s.version ? `swarmer ${s.version}` : '';
  document.title = s.download_rate > 0 || s.upload_rate > 0
    ? `↓ ${fmtRate(s.download_rate)} ↑ ${fmtRate(s.upload_rate)} – swarmer`
    : 'swarmer';
}

// ---------------------------------------------------------------- row actions

async function onTableClick(event) {
  const button = event.target.closest('button[data-action]');
  const row = button && button.closest('tr[data-id]');
  if (!row) return;
  const id = Number(row.dataset.id);
  const action = button.dataset.action;
  if (action === 'select') {
    select(id, button);
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

// ---------------------------------------------------------------- details panel

const TABS = ['overview', 'files', 'peers', 'trackers', 'pieces'];

function select(id, opener) {
  if (ui.selected !== id) {
    for (const body of ['file-rows', 'peer-rows', 'tracker-rows']) $(body).replaceChildren();
    delete $('file-rows').dataset.shape;
    delete $('detail-category').dataset.edited;
    ui.pieces = null;
  }
  ui.selected = id;
  ui.returnFocus = opener || document.activeElement;
  for (const [rowId, row] of ui.rows) row.classList.toggle('selected', rowId === id);
  $('detail').dataset.id = String(id);
  $('detail').hidden = false;
  const t = ui.torrents.get(id);
  if (t) $('detail-name').textContent = t.name || t.info_hash;
  loadDetail();
  $('detail-close').focus();
}

function closeDetail() {
  const wasOpen = ui.selected !== null;
  ui.selected = null;
  for (const row of ui.rows.values()) row.classList.remove('selected');
  $('detail').hidden = true;
  delete $('detail').dataset.id;
  for (const body of ['file-rows', 'peer-rows', 'tracker-rows']) $(body).replaceChildren();
  delete $('file-rows').dataset.shape;
  ui.pieces = null;
  const back = ui.returnFocus;
  ui.returnFocus = null;
  if (wasOpen && back && back.isConnected) back.focus();
}

function showTab(tab, focus) {
  if (!TABS.includes(tab)) return;
  ui.tab = tab;
  for (const name of TABS) {
    const button = $(`tab-${name}`);
    const on = name === tab;
    button.setAttribute('aria-selected', String(on));
    button.tabIndex = on ? 0 : -1;
    $(`pane-${name}`).hidden = !on;
  }
  if (focus) $(`tab-${tab}`).focus();
  $('detail').dataset.tab = tab;
  loadDetail();
}

/** Tabs as the ARIA pattern has them: arrows, Home and End move between them. */
function onTabKey(event) {
  const at = TABS.indexOf(ui.tab);
  const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: TABS.length - 1 }[event.key];
  if (to === undefined) return;
  event.preventDefault();
  showTab(TABS[(to + TABS.length) % TABS.length], true);
}

/** Fetches what the open tab shows; at most one request at a time, the last one wins. */
async function loadDetail() {
  if (ui.selected === null) return;
  if (ui.detailLoading) {
    ui.detailStale = true;
    return;
  }
  const id = ui.selected;
  const tab = ui.tab;
  ui.detailLoading = true;
  try {
    if (tab === 'peers') {
      const peers = await api('GET', `/torrents/${id}/peers`);
      if (ui.selected === id) renderPeers(peers);
    } else if (tab === 'trackers') {
      const trackers = await api('GET', `/torrents/${id}/trackers`);
      if (ui.selected === id) renderTrackers(trackers);
    } else if (tab === 'pieces') {
      const pieces = await api('GET', `/torrents/${id}/pieces`);
      if (ui.selected === id) renderPieces(pieces);
    }
    // The overview and files come with the detail, which also names the panel.
    const detail = await api('GET', `/torrents/${id}`);
    if (ui.selected === id) renderDetail(detail);
    $('detail').dataset.loaded = tab;
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
  const category = $('detail-category');
  // Leave the field alone while the user edits it, and keep an edit not yet saved.
  if (category !== document.activeElement && !category.dataset.edited) category.value = d.category || '';
  $('detail-tags').textContent = (d.tags || []).join(', ') || 'none';
  $('detail-transfer').textContent = `${fmtBytes(d.downloaded_bytes)} down, ${fmtBytes(d.uploaded_bytes)} up`;
  $('detail-added').textContent = fmtTime(d.added_at);
  $('detail-error').textContent = d.error || 'none';
  $('detail-magnet').textContent = d.magnet || '';
  const files = (d.files || []).slice().sort((a, b) => a.index - b.index);
  const body = $('file-rows');
  const shape = files.map((f) => `${f.index}:${f.path}`).join('\n');
  if (body.dataset.shape !== shape) {
    body.replaceChildren(...files.map((f) => fileRow(d.id, f)));
    body.dataset.shape = shape;
  }
  for (const f of files) {
    const row = body.querySelector(`tr[data-index="${f.index}"]`);
    const done = f.length > 0 ? (f.done_bytes || 0) / f.length : 1;
    row.querySelector('progress').value = done;
    row.querySelector('[data-testid=file-percent]').textContent = fmtFraction(done);
    const select = row.querySelector('select');
    select.dataset.priority = f.priority;
    // Leave a select the user is working with alone; the answer to its change updates it.
    if (select !== document.activeElement && !select.disabled) select.value = f.priority;
  }
}

function fileRow(id, f) {
  const row = el('tr', { 'data-testid': 'file-row', 'data-index': String(f.index) });
  const select = el('select', {
    'data-testid': 'file-priority',
    'data-index': String(f.index),
    'aria-label': `Priority of ${f.path}`,
  });
  for (const p of PRIORITIES) select.append(el('option', { value: p }, p));
  select.value = f.priority;
  const priority = el('td', { 'data-label': 'Priority' });
  priority.append(select);
  const done = el('td', { class: 'progress', 'data-label': 'Done' });
  done.append(el('progress', { max: '1', value: '0', 'aria-label': `Progress of ${f.path}` }), el('span', { 'data-testid': 'file-percent' }));
  const stream = el('td');
  if (MEDIA.test(f.path)) {
    const link = el('a', {
      href: `${API}/torrents/${id}/files/${f.index}/stream`,
      target: '_blank',
      rel: 'noopener',
      'data-testid': 'file-stream',
      'aria-label': `Play ${f.path}`,
    }, '▶ Play');
    stream.append(link);
  }
  row.append(el('td', { class: 'name', title: f.path }, f.path), el('td', { class: 'num', 'data-label': 'Size' }, fmtBytes(f.length)), done, priority, stream);
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

/** Puts the selected torrent in the category typed (created if new; empty: none). */
async function setCategory(event) {
  event.preventDefault();
  if (ui.selected === null) return;
  const id = ui.selected;
  const field = $('detail-category');
  const category = field.value.trim();
  clearError();
  try {
    upsert(await api('PUT', `/torrents/${id}/category`, { category: category || null }));
    if (field.value.trim() === category) delete field.dataset.edited;
  } catch (e) {
    showError(`Cannot set the category: ${errorText(e)}`);
  }
  loadDetail();
}

function renderPeers(peers) {
  const list = Array.isArray(peers) ? peers : [];
  $('peer-rows').replaceChildren(...list.map((p) => {
    const row = el('tr', { 'data-testid': 'peer-row' });
    row.append(
      el('td', { class: 'mono' }, p.address),
      el('td', { 'data-label': 'Client' }, p.client || '?'),
      el('td', { class: 'flags', 'data-label': 'Flags', title: p.encrypted ? 'encrypted' : 'plaintext' }, p.flags || '–'),
      el('td', { class: 'num', 'data-label': '↓' }, fmtRate(p.download_rate)),
      el('td', { class: 'num', 'data-label': '↑' }, fmtRate(p.upload_rate)),
      el('td', { class: 'num', 'data-label': 'Has' }, fmtFraction(p.progress)),
    );
    return row;
  }));
  $('peers-empty').hidden = list.length > 0;
}

function renderTrackers(trackers) {
  const list = Array.isArray(trackers) ? trackers : [];
  const count = (n) => (typeof n === 'number' ? String(n) : '–');
  $('tracker-rows').replaceChildren(...list.map((t) => {
    const row = el('tr', { 'data-testid': 'tracker-row' });
    const status = el('td', { 'data-label': 'Status' });
    status.append(el('span', { class: `status-${t.status}` }, stateLabel(t.status)));
    if (t.error) status.append(el('div', { class: 'row-error' }, t.error));
    const scraped = el('td', { 'data-label': 'Scraped' }, fmtTime(t.last_scrape));
    if (t.scrape_error) scraped.append(el('div', { class: 'row-error' }, t.scrape_error));
    row.append(
      el('td', { class: 'mono' }, t.url),
      el('td', { class: 'num', 'data-label': 'Tier' }, String(t.tier)),
      status,
      el('td', { class: 'num', 'data-label': 'Seeders' }, count(t.seeders)),
      el('td', { class: 'num', 'data-label': 'Leechers' }, count(t.leechers)),
      el('td', { class: 'num', 'data-label': 'Completed' }, count(t.completed)),
      scraped,
    );
    return row;
  }));
  $('trackers-empty').hidden = list.length > 0;
}

function renderPieces(p) {
  ui.pieces = p;
  const count = p.piece_count || 0;
  $('pieces-summary').textContent = count
    ? `${p.pieces_have} of ${count} pieces verified (${fmtFraction(p.pieces_have / count)})`
    : 'The pieces are not known yet (the metadata is being fetched).';
  drawPieces();
}

/** Draws the piece map: one cell per piece, or per run of pieces when there are many. */
function drawPieces() {
  const p = ui.pieces;
  const canvas = $('piece-map');
  if (!p || $('pane-pieces').hidden) return;
  const bits = Uint8Array.from(atob(p.bitfield || ''), (c) => c.charCodeAt(0));
  const count = p.piece_count || 0;
  const has = (i) => (bits[i >> 3] >> (7 - (i & 7))) & 1;
  const cells = Math.min(count, MAX_CELLS);
  const width = Math.max(canvas.clientWidth, 100);
  const ratio = window.devicePixelRatio || 1;
  // Cells as square as the width allows, at least 3 px, in as many rows as they need.
  const side = Math.max(3, Math.min(16, Math.floor(Math.sqrt((width * 160) / Math.max(cells, 1)))));
  const perRow = Math.max(1, Math.floor(width / side));
  const rows = Math.max(1, Math.ceil(cells / perRow));
  canvas.style.height = `${rows * side}px`;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(rows * side * ratio);
  const ctx = canvas.getContext('2d');
  ctx.scale(ratio, ratio);
  const style = getComputedStyle(document.documentElement);
  const colours = [style.getPropertyValue('--missing').trim(), style.getPropertyValue('--accent').trim()];
  for (let c = 0; c < cells; c += 1) {
    const from = Math.floor((c * count) / cells);
    const to = Math.floor(((c + 1) * count) / cells);
    let all = 1;
    for (let i = from; i < to && all; i += 1) all = has(i);
    ctx.fillStyle = colours[all];
    ctx.fillRect((c % perRow) * side, Math.floor(c / perRow) * side, side - 1, side - 1);
  }
  canvas.setAttribute('aria-label', `Piece map: ${p.pieces_have} of ${count} pieces verified`);
}

// ---------------------------------------------------------------- add dialog

function openAdd(file) {
  $('add-error').hidden = true;
  if (file) {
    const dt = new DataTransfer();
    dt.items.add(file);
    $('file-input').files = dt.files;
  }
  if (!$('add-dialog').open) $('add-dialog').showModal();
  (file ? $('add-submit') : $('magnet-input')).focus();
}

function closeAdd() {
  $('add-dialog').close();
  $('add-open').focus();
}

function addError(message) {
  $('add-error').textContent = message;
  $('add-error').hidden = false;
}

/** Adds what the dialog holds: a file if one is chosen, else the magnet link or URL. */
async function submitAdd(event) {
  event.preventDefault();
  $('add-error').hidden = true;
  const text = $('magnet-input').value.trim();
  const input = $('file-input');
  const file = input.files && input.files[0];
  const dir = $('add-dir').value.trim();
  const category = $('add-category').value.trim();
  const paused = $('add-paused').checked;
  let body;
  let what;
  if (file) {
    body = new FormData();
    body.append('torrent', file, file.name);
    body.append('paused', paused ? 'true' : 'false');
    if (dir) body.append('download_dir', dir);
    if (category) body.append('category', category);
    what = file.name;
  } else if (text) {
    body = /^https?:\/\//i.test(text) ? { url: text } : { magnet: text };
    body.paused = paused;
    if (dir) body.download_dir = dir;
    if (category) body.category = category;
    what = body.url ? 'the URL' : 'the magnet link';
  } else {
    addError('Give a magnet link, a URL or a .torrent file.');
    return;
  }
  const button = $('add-submit');
  button.disabled = true;
  try {
    upsert(await api('POST', '/torrents', body));
    $('magnet-input').value = '';
    input.value = '';
    closeAdd();
  } catch (e) {
    addError(`Cannot add ${what}: ${errorText(e)}`);
  } finally {
    button.disabled = false;
  }
}

/** .torrent files dropped anywhere on the page, or on the dialog's drop zone. */
function isFileDrag(event) {
  return event.dataTransfer && [...event.dataTransfer.types].includes('Files');
}

function onDragOver(event) {
  if (!isFileDrag(event)) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = 'copy';
  document.body.classList.add('dragging');
  $('drop-zone').classList.toggle('over', $('drop-zone').contains(event.target));
}

function onDragEnd() {
  document.body.classList.remove('dragging');
  $('drop-zone').classList.remove('over');
}

function onDrop(event) {
  if (!isFileDrag(event)) return;
  event.preventDefault();
  onDragEnd();
  const files = [...event.dataTransfer.files].filter((f) => /\.torrent$/i.test(f.name) || f.type === 'application/x-bittorrent');
  if (files.length === 0) {
    showError('Only .torrent files can be dropped here.');
    return;
  }
  openAdd(files[0]);
}

// ---------------------------------------------------------------- settings dialog

/** KiB/s in the form, bytes/s in the API; empty is none. */
const kib = (bytes) => (typeof bytes === 'number' ? String(Math.round(bytes / 1024)) : '');
const count = (n) => (typeof n === 'number' ? String(n) : '');

async function openSettings() {
  $('settings-error').hidden = true;
  try {
    const [s, session] = await Promise.all([api('GET', '/settings'), api('GET', '/session')]);
    $('set-down').value = kib(s.max_download_rate);
    $('set-up').value = kib(s.max_upload_rate);
    $('set-downloads').value = count(s.max_active_downloads);
    $('set-seeds').value = count(s.max_active_seeds);
    $('set-encryption').value = s.encryption || 'prefer';
    $('set-dir').value = s.download_dir || '';
    $('set-port').value = String(session.listen_port ?? '');
    $('set-transport').value = session.transport || '';
  } catch (e) {
    showError(`Cannot load the settings: ${errorText(e)}`);
    return;
  }
  $('settings-dialog').showModal();
  $('set-down').focus();
}

/** A number field: null when empty, else a whole number, or an Error. */
function wholeNumber(id, scale) {
  const text = $(id).value.trim();
  if (text === '') return null;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${$(id).labels[0].textContent} must be a whole number`);
  return n * scale;
}

async function saveSettings(event) {
  event.preventDefault();
  $('settings-error').hidden = true;
  let patch;
  try {
    patch = {
      max_download_rate: wholeNumber('set-down', 1024),
      max_upload_rate: wholeNumber('set-up', 1024),
      max_active_downloads: wholeNumber('set-downloads', 1),
      max_active_seeds: wholeNumber('set-seeds', 1),
      encryption: $('set-encryption').value,
    };
    const dir = $('set-dir').value.trim();
    if (dir) patch.download_dir = dir;
  } catch (e) {
    $('settings-error').textContent = e.message;
    $('settings-error').hidden = false;
    return;
  }
  const button = $('settings-save');
  button.disabled = true;
  try {
    await api('PUT', '/settings', patch);
    $('settings-dialog').close();
    $('settings-open').focus();
  } catch (e) {
    $('settings-error').textContent = `Cannot save the settings: ${errorText(e)}`;
    $('settings-error').hidden = false;
  } finally {
    button.disabled = false;
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

/** Escape closes the details panel (dialogs close themselves on Escape). */
function onKey(event) {
  if (event.key !== 'Escape' || event.defaultPrevented) return;
  if (document.querySelector('dialog[open]')) return;
  if (ui.selected !== null) {
    event.preventDefault();
    closeDetail();
  }
}

function init() {
  loadView();
  $('add-open').addEventListener('click', () => openAdd());
  $('add-form').addEventListener('submit', submitAdd);
  $('add-cancel').addEventListener('click', closeAdd);
  $('settings-open').addEventListener('click', openSettings);
  $('settings-form').addEventListener('submit', saveSettings);
  $('settings-cancel').addEventListener('click', () => $('settings-dialog').close());
  $('search').addEventListener('input', (e) => setView({ search: e.target.value.trim() }));
  $('state-filter').addEventListener('change', (e) => setView({ state: e.target.value }));
  $('category-filter').addEventListener('change', (e) => setView({ category: e.target.value }));
  $('sort-select').addEventListener('change', (e) => setView({ sort: e.target.value, desc: ['progress', 'total_bytes', 'download_rate', 'upload_rate'].includes(e.target.value) }));
  document.querySelector('#torrents thead').addEventListener('click', onSortClick);
  $('login').addEventListener('submit', login);
  $('torrent-rows').addEventListener('click', onTableClick);
  $('file-rows').addEventListener('change', onPriorityChange);
  $('detail-close').addEventListener('click', closeDetail);
  $('category-form').addEventListener('submit', setCategory);
  $('detail-category').addEventListener('input', (e) => { e.target.dataset.edited = '1'; });
  document.querySelector('.tabs').addEventListener('click', (e) => {
    const tab = e.target.closest('[data-tab]');
    if (tab) showTab(tab.dataset.tab);
  });
  document.querySelector('.tabs').addEventListener('keydown', onTabKey);
  $('remove-dialog').addEventListener('close', onRemoveClosed);
  document.addEventListener('keydown', onKey);
  document.addEventListener('dragover', onDragOver);
  document.addEventListener('dragleave', (e) => { if (!e.relatedTarget) onDragEnd(); });
  document.addEventListener('drop', onDrop);
  window.addEventListener('resize', drawPieces);
  applyView();
  start();
}

init();
