// The monitor (administrators): the host's load, memory and acceleration, every
// session with its owner and screen, and stop one or all.
import {
    api, confirmDialog, el, fmtMiB, renderAccount, serverNow, showError, signedIn, timeLeft,
    LIVE_STATES,
} from '/common.js';

const $ = (id) => document.getElementById(id);
const status = (msg) => { $('status').textContent = msg; };
const REFRESH_MS = 3000;
const THUMB_MS = 5000;
const rows = new Map(); // session id → {tr, cells, session}
let sessions = [];
let accelOpen = false; // the host cards are redrawn; keep "Why" as the user left it

/* ---- the host ---------------------------------------------------------------- */

function meter(fraction, label, high) {
    const pct = Math.max(0, Math.min(100, Math.round(fraction * 100)));
    return el('div', {
        class: 'meter' + (high ? ' high' : ''), role: 'meter', 'aria-label': label,
        'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': pct,
    }, el('span', { style: `width: ${pct}%` }));
}

function stat(title, big, ...rest) {
    return el('article', { class: 'card stat' }, el('h3', {}, title),
        el('p', { class: 'big' }, big), ...rest);
}

const keyLabel = (k) => k.replace(/_/g, ' ');

// One JSON value as short text: lists joined, objects as "key value · ...".
function fmtValue(v) {
    if (v === null || v === undefined || v === '') return '—';
    if (Array.isArray(v)) return v.length ? v.map(fmtValue).join(', ') : '—';
    if (typeof v === 'object') return Object.entries(v).map(([k, x]) => `${keyLabel(k)} ${fmtValue(x)}`).join(' · ');
    return String(v);
}

function kv(obj) {
    return el('dl', { class: 'kv' }, Object.entries(obj).flatMap(([k, v]) => [
        el('dt', {}, keyLabel(k)),
        el('dd', {}, fmtValue(v)),
    ]));
}

// The host's devices, kind by kind, each unit free, in use (and by which session)
// or unusable (and why): what /api/v1/host reports from the store's claims.
const DEVICE_KINDS = [
    ['gpus', 'GPUs for passthrough'], ['vfs', 'SR-IOV virtual functions'],
    ['mdev_types', 'Mediated device types'], ['render_nodes', 'Render nodes (virgl)'],
    ['usb', 'USB devices'],
];

function unitStatus(u) {
    if (!u.usable) return el('span', { class: 'muted' }, `unusable: ${u.why || ''}`);
    const held = u.held_by ? `: ${u.held_by}` : '';
    if (u.used !== undefined) // a mediated device type: instances made, and still possible
        return el('span', { class: `state state-${u.capacity ? 'stopped' : 'running'}` },
            `${u.used} in use, ${u.capacity} more possible${held}`);
    if (u.users !== undefined) // a render node: shared by every virgl session on it
        return el('span', { class: 'state state-stopped' },
            u.users ? `shared by ${u.users} session${u.users === 1 ? '' : 's'}${held}` : 'shared, unused');
    if (u.in_use) return el('span', { class: 'state state-running' }, `in use${u.held_by ? ` by ${u.held_by}` : ''}`);
    return el('span', { class: 'state state-stopped' }, 'free');
}

function devices(h) {
    const sections = DEVICE_KINDS.filter(([key]) => Array.isArray(h[key]) && h[key].length)
        .map(([key, title]) => el('div', {},
            el('h3', {}, `${title}: ${h[key].filter((u) => u.usable && !u.in_use).length} of ${h[key].length} free`),
            el('div', { class: 'table-wrap' }, el('table', { class: 'sessions' },
                el('thead', {}, el('tr', {}, ['Device', 'Id', 'Status'].map((k) => el('th', { scope: 'col' }, k)))),
                el('tbody', {}, h[key].map((u) => el('tr', {},
                    el('td', { 'data-label': 'Device' }, u.label),
                    el('td', { 'data-label': 'Id' }, el('code', {}, u.id)),
                    el('td', { 'data-label': 'Status' }, unitStatus(u)))))))));
    const pools = (h.hugepages || []).filter((p) => p.total > 0);
    if (pools.length)
        sections.push(el('div', {}, el('h3', {}, 'Hugepages'), el('p', {}, pools.map((p) =>
            `${p.size_kb >= 1048576 ? '1 GiB' : '2 MiB'}: ${p.free} of ${p.total} free`).join(' · '))));
    return sections.length ? sections : [el('p', { class: 'muted' },
        'This host offers no GPU, VF, mediated device, render node or USB device to guests ' +
        '(qdesk host check tells why).')];
}

function renderHost(h) {
    const load1 = h.load[0];
    const perCore = h.cores ? load1 / h.cores : 0;
    const used = h.memory_mb - h.mem_available_mb;
    const states = Object.entries(h.sessions).filter(([, n]) => n > 0);
    const liveCount = LIVE_STATES.reduce((n, s) => n + (h.sessions[s] || 0), 0);
    $('host').replaceChildren(
        load1 >= 0 ? stat('Load', load1.toFixed(2),
            meter(perCore, 'Load per core', perCore > Math.min(1, h.limits ? h.limits.max_load_per_core : 1)),
            el('p', { class: 'muted' }, `${perCore.toFixed(2)} per core · ${h.cores} cores`),
            el('p', { class: 'muted' }, `5 min ${h.load[1].toFixed(2)} · 15 min ${h.load[2].toFixed(2)}`))
            : stat('Load', '?', el('p', { class: 'muted' }, `unknown · ${h.cores} cores`)),
        stat('Memory', `${fmtMiB(used)} used`,
            meter(used / h.memory_mb, 'Memory used', h.mem_available_mb < h.memory_mb * 0.1),
            el('p', { class: 'muted' }, `${fmtMiB(h.mem_available_mb)} available of ${fmtMiB(h.memory_mb)}`)),
        stat('Acceleration', h.accel.mode.toUpperCase(),
            el('p', { class: 'muted' }, h.accel.mode === 'kvm' ? 'Guests run with KVM.'
                : 'Guests run under emulation (slower).'),
            h.accel.why ? el('details', { class: 'why', open: accelOpen ? true : null,
                ontoggle: (ev) => { accelOpen = ev.target.open; } },
            el('summary', {}, 'Why'), el('p', { class: 'muted' }, h.accel.why)) : null),
        stat('Sessions', `${liveCount} live`,
            el('p', {}, states.length ? states.map(([s, n]) =>
                el('span', { class: `state state-${s}`, style: 'margin-right: 0.35rem' }, `${s} ${n}`)) : 'none yet'),
            el('p', { class: 'muted' }, `${h.viewers} viewer${h.viewers === 1 ? '' : 's'} connected`)),
        h.limits ? el('article', { class: 'card stat' }, el('h3', {}, 'Limits'), kv(h.limits)) : null);
    $('gpus-section').hidden = false;
    $('gpus').replaceChildren(...devices(h));
}

/* ---- sessions ---------------------------------------------------------------- */

function newRow(s) {
    const cells = {
        thumb: el('td', { 'data-label': 'Screen', class: 'col-thumb' }, el('div', { class: 'thumb-empty' })),
        owner: el('td', { 'data-label': 'Owner' }),
        machine: el('td', { 'data-label': 'Machine' }),
        state: el('td', { 'data-label': 'State' }),
        size: el('td', { 'data-label': 'CPUs / memory' }),
        left: el('td', { 'data-label': 'Time left', class: 'left' }),
        viewers: el('td', { 'data-label': 'Viewers' }),
        actions: el('td', { 'data-label': '' }),
    };
    const stop = el('button', { class: 'btn small danger', type: 'button' }, 'Stop');
    stop.addEventListener('click', () => stopOne(s.id));
    cells.actions.append(stop);
    const tr = el('tr', { 'data-id': s.id }, Object.values(cells));
    return { tr, cells, stop, session: s };
}

function updateRow(row, s) {
    const c = row.cells;
    row.session = s;
    c.owner.textContent = s.owner;
    c.machine.replaceChildren(s.machine, s.gpu && s.gpu !== 'none' ? el('span', { class: 'tag' }, s.gpu) : '',
        s.oneshot ? el('span', { class: 'tag' }, 'one-shot') : '');
    const state = el('span', { class: `state state-${s.state}` }, s.state);
    c.state.replaceChildren(state, s.error ? el('div', { class: 'muted', style: 'font-size: 0.85rem' }, s.error) : '');
    c.size.textContent = `${s.cpus} · ${fmtMiB(s.memory_mb)}`;
    c.viewers.textContent = String(s.viewers);
    row.stop.hidden = !LIVE_STATES.includes(s.state) || s.state === 'stopping';
    row.stop.setAttribute('aria-label', `Stop ${s.owner}'s ${s.machine}`);
    tickRow(row);
}

function tickRow(row) {
    const s = row.session;
    const live = LIVE_STATES.includes(s.state);
    row.cells.left.textContent = live ? timeLeft(s.expires_at) : 'ended';
    row.cells.left.classList.toggle('soon', live && s.expires_at - serverNow() < 300);
}

function renderSessions(list) {
    const showEnded = $('show-ended').checked;
    const shown = list.filter((s) => showEnded || LIVE_STATES.includes(s.state))
        .sort((a, b) => (LIVE_STATES.includes(b.state) - LIVE_STATES.includes(a.state)) ||
            a.created_at - b.created_at);
    const body = $('rows');
    const keep = new Set(shown.map((s) => s.id));
    for (const [id, row] of rows) {
        if (!keep.has(id)) {
            row.tr.remove();
            rows.delete(id);
        }
    }
    shown.forEach((s, i) => {
        let row = rows.get(s.id);
        if (!row) {
            row = newRow(s);
            rows.set(s.id, row);
        }
        updateRow(row, s);
        if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
    });
    $('no-sessions').hidden = shown.length > 0;
    $('stop-all').disabled = !list.some((s) => LIVE_STATES.includes(s.state) && s.state !== 'stopping');
    applyThumbColumn();
}

function applyThumbColumn() {
    const on = $('thumbs').checked;
    document.querySelectorAll('.col-thumb, thead th:first-child').forEach((c) => { c.hidden = !on; });
}

async function stopOne(id) {
    const row = rows.get(id);
    const s = row.session;
    if (!await confirmDialog(`Stop ${s.owner}'s desktop ${s.machine}?`, 'Stop',
        'It shuts down now; its user loses what was not saved.')) return;
    showError($('action-error'), '');
    row.stop.disabled = true;
    try {
        updateRow(row, await api('DELETE', `/api/v1/sessions/${id}`));
        status(`${s.machine} of ${s.owner} is stopping`);
    } catch (e) {
        showError($('action-error'), `${s.machine} of ${s.owner}: ${e.message}`);
    } finally {
        row.stop.disabled = false;
    }
}

async function stopAll() {
    const live = sessions.filter((s) => LIVE_STATES.includes(s.state) && s.state !== 'stopping');
    const owners = new Set(live.map((s) => s.owner));
    if (!await confirmDialog(`Stop all ${live.length} session${live.length === 1 ? '' : 's'}?`, 'Stop all',
        `Every desktop of ${owners.size} user${owners.size === 1 ? '' : 's'} shuts down now.`)) return;
    showError($('action-error'), '');
    try {
        const r = await api('DELETE', '/api/v1/sessions');
        status(`Stopping ${r.stopping} session${r.stopping === 1 ? '' : 's'}`);
        refresh();
    } catch (e) {
        showError($('action-error'), e.message);
    }
}

/* ---- screenshots ------------------------------------------------------------- */

// Loads one screenshot; resolves to the loaded <img> or null.
function loadShot(id) {
    return new Promise((resolve) => {
        const img = new Image();
        img.className = 'thumb';
        img.alt = 'Screen of the session';
        img.onload = () => resolve(img);
        img.onerror = () => resolve(null);
        img.src = `/api/v1/sessions/${id}/screenshot?t=${Date.now()}`;
    });
}

// Refreshes the thumbnails of running sessions one after another (each is a
// QEMU screendump), then waits and goes again.
async function thumbLoop() {
    for (;;) {
        if ($('thumbs').checked && !document.hidden) {
            for (const [id, row] of [...rows]) {
                if (row.session.state !== 'running') continue;
                const img = await loadShot(id);
                if (img && rows.get(id) === row) {
                    img.alt = `Screen of ${row.session.owner}'s ${row.session.machine}`;
                    row.cells.thumb.replaceChildren(img);
                }
            }
        }
        await new Promise((r) => setTimeout(r, THUMB_MS));
    }
}

/* ---- the page ---------------------------------------------------------------- */

async function refresh() {
    try {
        const [h, list] = await Promise.all([api('GET', '/api/v1/host'), api('GET', '/api/v1/sessions')]);
        sessions = list;
        renderHost(h);
        renderSessions(list);
        $('updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
        if (e.status === 401 || e.status === 403) location.reload();
        $('updated').textContent = `Not updated: ${e.message}`;
    }
}

async function main() {
    let me;
    try {
        me = await signedIn($('gate'));
    } catch (e) {
        $('gate').replaceChildren(el('p', { class: 'error card' }, e.message));
        return;
    }
    renderAccount(me, '/monitor');
    if (!me.admin) {
        $('gate').replaceChildren(el('div', { class: 'card login', role: 'status' },
            el('h2', {}, 'The monitor is for administrators'),
            el('p', {}, `You are signed in as ${me.user}, who is not an administrator. `,
                'Your own desktops are on the portal.'),
            el('p', {}, el('a', { class: 'btn primary', href: '/' }, 'Go to my desktops'))));
        return;
    }
    $('gate').replaceChildren();
    $('monitor').hidden = false;
    try { $('thumbs').checked = localStorage.getItem('qdesk.thumbs') !== 'off'; } catch { $('thumbs').checked = true; }
    $('thumbs').addEventListener('change', () => {
        try { localStorage.setItem('qdesk.thumbs', $('thumbs').checked ? 'on' : 'off'); } catch { /* */ }
        applyThumbColumn();
    });
    $('show-ended').addEventListener('change', () => renderSessions(sessions));
    $('stop-all').addEventListener('click', stopAll);
    await refresh();
    setInterval(refresh, REFRESH_MS);
    setInterval(() => rows.forEach(tickRow), 1000);
    thumbLoop();
}

main();
