// The portal: sign in, pick a machine and its size, start it, and look after
// "My desktops" (connect, extend, stop, share).
import {
    api, confirmDialog, copyText, el, fmtBytes, fmtMiB, localPath, renderAccount, serverNow,
    showError, signedIn, timeLeft, LIVE_STATES,
} from '/common.js';

const LIFETIMES = [['30 min', 1800], ['1 h', 3600], ['4 h', 14400], ['1 day', 86400],
    ['1 week', 604800]];
const MEMORY_STEPS = [256, 512, 1024, 2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576,
    32768, 49152, 65536, 98304, 131072, 196608, 262144];
const GPU_LABELS = {
    none: 'No GPU',
    virgl: 'virgl (shared 3D)',
    vf: 'SR-IOV virtual function',
    passthrough: 'Whole GPU (passthrough)',
    mdev: 'Mediated vGPU (mdev)',
};
const MEDIA_LABELS = { disk: 'Disk image', cdrom: 'Live ISO', kernel: 'Kernel boot' };
const RECENT_FAILURE_S = 3600; // failed desktops stay in the main list this long

const $ = (id) => document.getElementById(id);
const status = (msg) => { $('status').textContent = msg; };
let host = null;
const cards = new Map(); // session id → {node, parts, session}

/* ---- machines ---------------------------------------------------------------- */

function machineFacts(m) {
    const facts = [MEDIA_LABELS[m.media] || m.media, m.arch, m.firmware === 'uefi' ? 'UEFI' : 'BIOS'];
    if (m.virtual_size && m.media !== 'kernel') facts.push(fmtBytes(m.virtual_size));
    return facts.join(' · ');
}

// options: [label, value, disabled?]
function select(id, options, chosen) {
    return el('select', { id, name: id },
        options.map(([label, value, disabled]) => el('option', {
            value, selected: String(value) === String(chosen) ? true : null,
            disabled: disabled ? true : null,
        }, label)));
}

// A GPU kind with what the host has free of it now (GET /api/v1/host gpu_kinds).
function gpuOption(kind) {
    const label = GPU_LABELS[kind] || kind;
    const k = host && host.gpu_kinds ? host.gpu_kinds[kind] : null;
    if (!k || k.shared) return [label, kind];
    if (!k.offered) return [`${label} (none free)`, kind, true];
    return [`${label} (${k.free} of ${k.total} free)`, kind];
}

// One field: label, control, and the slot for the API's message about it.
function field(id, label, control, hint) {
    control.setAttribute('aria-describedby', (hint ? `${id}-hint ` : '') + `${id}-error`);
    return el('div', { class: 'field' },
        el('label', { for: id }, label), control,
        hint ? el('p', { class: 'hint', id: id + '-hint' }, hint) : null,
        el('p', { class: 'error', id: id + '-error', role: 'alert', hidden: true }));
}

function fmtDuration(s) {
    if (s % 86400 === 0) return `${s / 86400} day${s === 86400 ? '' : 's'}`;
    if (s % 3600 === 0) return `${s / 3600} h`;
    return `${Math.round(s / 60)} min`;
}

// The lifetimes the host allows ([sessions] min/max_lifetime_s), its default first
// chosen.
function lifetimeChoices() {
    const b = host && host.bounds ? host.bounds.lifetime_s : { min: 60, max: 604800, default: 14400 };
    const options = LIFETIMES.filter(([, s]) => s >= b.min && s <= b.max);
    if (!options.some(([, s]) => s === b.default)) options.push([fmtDuration(b.default), b.default]);
    if (!options.some(([, s]) => s === b.max)) options.push([fmtDuration(b.max), b.max]);
    return { options: options.sort((x, y) => x[1] - y[1]), chosen: b.default };
}

// What is left of the user's share of the host ([limits] user_*_fraction), if known.
function yoursLeft() {
    return host && host.bounds && host.bounds.yours_left ? host.bounds.yours_left : null;
}

function machineCard(m, i) {
    const p = `m${i}`;
    const left = yoursLeft();
    const cores = host ? host.bounds.cpus.max : (m.cpus || 1);
    const cpuMax = left ? Math.max(1, Math.min(cores, Math.floor(left.cpus + 1e-9))) : cores;
    const cpuOptions = [];
    if (!m.cpus) cpuOptions.push(['Default', '']);
    for (let n = 1; n <= Math.max(cpuMax, m.cpus || 1); n++)
        cpuOptions.push([`${n} CPU${n > 1 ? 's' : ''}`, n]);

    const maxMem = host ? Math.min(host.bounds.memory_mb.max,
        left ? Math.max(host.bounds.memory_mb.min, left.memory_mb) : Infinity) : 262144;
    const minMem = host ? host.bounds.memory_mb.min : 0;
    const memSteps = MEMORY_STEPS.filter((mb) => mb <= maxMem && mb >= minMem);
    if (m.memory_mb && !memSteps.includes(m.memory_mb)) memSteps.push(m.memory_mb);
    memSteps.sort((a, b) => a - b);
    const memOptions = (m.memory_mb ? [] : [['Default', '']])
        .concat(memSteps.map((mb) => [fmtMiB(mb), mb]));
    const shareHint = left ? `Your share of this host has ${Math.max(0, Math.floor(left.cpus + 1e-9))} ` +
        `CPU${Math.floor(left.cpus + 1e-9) === 1 ? '' : 's'} and ${fmtMiB(Math.max(0, Math.floor(left.memory_mb)))} left.` : null;
    const lifetimes = lifetimeChoices();

    const gpus = m.gpus && m.gpus.length ? m.gpus : ['none'];
    const controls = {
        cpus: select(`${p}-cpus`, cpuOptions, m.cpus || ''),
        memory_mb: select(`${p}-memory_mb`, memOptions, m.memory_mb || ''),
        gpu: select(`${p}-gpu`, gpus.map(gpuOption),
            gpus.includes('none') ? 'none' : gpus[0]),
        disk_gb: el('input', {
            id: `${p}-disk_gb`, type: 'number', min: 1, step: 1, inputmode: 'numeric',
            placeholder: 'default',
        }),
        oneshot: el('input', { id: `${p}-oneshot`, type: 'checkbox', 'aria-describedby': `${p}-oneshot-hint` }),
    };
    const lifetime = el('fieldset', {
        class: 'field segmented', id: `${p}-lifetime_s`, 'aria-describedby': `${p}-lifetime_s-error`,
    },
        el('legend', {}, 'Lifetime'),
        el('div', { class: 'segments' }, lifetimes.options.map(([label, s]) => el('label', {},
            el('input', {
                type: 'radio', name: `${p}-lifetime`, value: s,
                checked: s === lifetimes.chosen ? true : null,
            }), el('span', {}, label)))),
        el('p', { class: 'error', id: `${p}-lifetime_s-error`, role: 'alert', hidden: true }));

    const summary = el('span', { class: 'choice' });
    const options = el('details', { class: 'options' },
        el('summary', {}, 'Options ', summary),
        el('div', { class: 'fields' },
            field(`${p}-cpus`, 'CPUs', controls.cpus, shareHint),
            field(`${p}-memory_mb`, 'Memory', controls.memory_mb),
            lifetime,
            gpus.length > 1 ? field(`${p}-gpu`, 'GPU', controls.gpu) : null,
            m.media === 'cdrom' ? field(`${p}-disk_gb`, 'Data disk (GB)', controls.disk_gb,
                'A blank disk beside the live system.') : null,
            el('div', { class: 'field check' }, controls.oneshot,
                el('label', { for: `${p}-oneshot` }, 'One-shot link'),
                el('p', { class: 'hint', id: `${p}-oneshot-hint` },
                    'Admits one viewer; the desktop ends when they leave.'))));

    const cardError = el('p', { class: 'error', role: 'alert', hidden: true });
    const button = el('button', { class: 'btn primary', type: 'submit' }, 'Start desktop');
    const hint = el('p', { class: 'hint open-hint' }, 'Opens in this tab when it is ready.');
    const progress = el('ol', { class: 'progress', hidden: true, 'aria-label': 'Progress' },
        ['creating', 'starting', 'running'].map((s) => el('li', { 'data-step': s }, s)));
    const progressNote = el('p', { class: 'progress-note', role: 'status' });

    function choices() {
        const life = lifetime.querySelector('input:checked');
        const parts = [controls.cpus.value ? controls.cpus.selectedOptions[0].text : 'default CPUs',
            controls.memory_mb.value ? controls.memory_mb.selectedOptions[0].text : 'default memory',
            lifetimes.options.find(([, s]) => String(s) === life.value)[0]];
        if (controls.gpu.value !== 'none') parts.push(GPU_LABELS[controls.gpu.value] || controls.gpu.value);
        if (controls.oneshot.checked) parts.push('one-shot');
        summary.textContent = parts.join(' · ');
        hint.textContent = controls.oneshot.checked
            ? 'A one-shot link is not opened for you: connect or share it below.'
            : 'Opens in this tab when it is ready.';
    }

    const form = el('form', { class: 'machine-form', 'aria-label': `Start ${m.name}` },
        options, cardError, el('div', { class: 'row' }, button, hint), progress, progressNote);
    form.addEventListener('change', choices);
    form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        start(m, { form, controls, lifetime, options, cardError, button, progress, progressNote, p });
    });

    const card = el('li', { class: 'card machine' + (m.refused ? ' refused' : ''), id: `machine-${m.name}` },
        el('h3', {}, m.name),
        el('p', { class: 'desc' }, m.description || 'No description.'),
        el('p', { class: 'facts' }, machineFacts(m)),
        m.refused ? el('p', { class: 'error' }, `Not available: ${m.refused}`) : form);
    choices();
    return card;
}

function clearErrors(ui) {
    ui.form.querySelectorAll('.error').forEach((e) => showError(e, ''));
    ui.form.querySelectorAll('[aria-invalid]').forEach((e) => e.removeAttribute('aria-invalid'));
}

// Admission refusals name a limit, not a field: the control that can fix them.
const LIMIT_FIELDS = {
    user_cpu_fraction: 'cpus',
    user_memory_fraction: 'memory_mb',
    min_mem_available_mb: 'memory_mb',
};

// Puts an API error next to the control it names, else under the card's options.
function placeError(ui, e) {
    const name = e.field || LIMIT_FIELDS[e.code] || (e.status === 409 && ui.controls.gpu.value !== 'none' ? 'gpu' : null);
    const slot = name && document.getElementById(`${ui.p}-${name}-error`);
    if (slot) {
        ui.options.open = true;
        showError(slot, e.message);
        const control = document.getElementById(`${ui.p}-${name}`);
        if (control) {
            control.setAttribute('aria-invalid', 'true');
            control.focus();
        }
    } else {
        showError(ui.cardError, e.message);
    }
}

function showProgress(ui, state) {
    ui.progress.hidden = false;
    const order = ['creating', 'starting', 'running'];
    const at = order.indexOf(state);
    ui.progress.querySelectorAll('li').forEach((li, i) => {
        li.className = i < at ? 'done' : i === at ? 'current' : '';
        if (i === at) li.setAttribute('aria-current', 'step');
        else li.removeAttribute('aria-current');
    });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function start(m, ui) {
    clearErrors(ui);
    const c = ui.controls;
    const body = { machine: m.name };
    if (c.cpus.value) body.cpus = Number(c.cpus.value);
    if (c.memory_mb.value) body.memory_mb = Number(c.memory_mb.value);
    body.lifetime_s = Number(ui.lifetime.querySelector('input:checked').value);
    if (c.gpu.value && c.gpu.value !== 'none') body.gpu = c.gpu.value;
    if (m.media === 'cdrom' && c.disk_gb.value) body.disk_gb = Number(c.disk_gb.value);
    if (c.oneshot.checked) body.oneshot = true;

    ui.button.disabled = true;
    ui.progressNote.textContent = `Creating ${m.name}…`;
    showProgress(ui, 'creating');
    let s;
    try {
        s = await api('POST', '/api/v1/sessions', body);
        upsertSession(s);
        while (s.state === 'creating' || s.state === 'starting') {
            showProgress(ui, s.state);
            ui.progressNote.textContent = s.state === 'creating' ? `Creating ${m.name}…`
                : `Starting ${m.name}…`;
            await sleep(300);
            s = await api('GET', `/api/v1/sessions/${s.id}`);
            upsertSession(s);
        }
    } catch (e) {
        ui.progress.hidden = true;
        ui.progressNote.textContent = '';
        ui.button.disabled = false;
        placeError(ui, e);
        return;
    }
    ui.button.disabled = false;
    if (s.state !== 'running') {
        ui.progress.hidden = true;
        ui.progressNote.textContent = '';
        showError(ui.cardError, `The desktop ${s.state === 'failed' ? 'failed' : 'stopped'}` +
            (s.error ? `: ${s.error}` : '.'));
        return;
    }
    showProgress(ui, 'running');
    if (s.oneshot) {
        ui.progressNote.textContent = 'Ready. Connect or share its one-shot link under My desktops.';
        const card = cards.get(s.id);
        if (card) card.node.scrollIntoView({ block: 'nearest' });
        return;
    }
    ui.progressNote.textContent = 'Ready. Opening the desktop…';
    location.assign(localPath(s.url));
}

async function loadMachines() {
    const list = $('machines');
    let machines;
    try {
        [host, machines] = await Promise.all([api('GET', '/api/v1/host').catch(() => null),
            api('GET', '/api/v1/machines')]);
    } catch (e) {
        list.replaceChildren(el('li', { class: 'error' }, e.message));
        return;
    }
    if (host) {
        const parts = [`${host.cores} cores`, `${fmtMiB(host.mem_available_mb)} memory free`];
        $('host-summary').textContent = `This host: ${parts.join(' · ')}.` +
            (host.accel.mode === 'tcg' ? ' Guests run under emulation (TCG), so they start and run slower.' : '');
        if (host.accel.why) $('host-summary').title = host.accel.why;
    }
    list.replaceChildren(...machines.map(machineCard));
    if (!machines.length)
        list.append(el('li', { class: 'muted' }, 'The catalogue is empty: an administrator adds images to the machines directory.'));
}

/* ---- my desktops ------------------------------------------------------------- */

function shareBlock(label, url, what) {
    const input = el('input', { readonly: true, value: url, 'aria-label': `${label} link`, class: 'link' });
    const copy = el('button', { class: 'btn small', type: 'button' }, 'Copy');
    copy.addEventListener('click', async () => {
        const ok = await copyText(url, input);
        copy.textContent = ok ? 'Copied' : 'Copy failed';
        status(ok ? `${label} link copied` : 'Could not copy; select the link and copy it');
        setTimeout(() => { copy.textContent = 'Copy'; }, 2000);
    });
    const qr = el('img', {
        class: 'qr', width: 176, height: 176, alt: `QR code of the ${label.toLowerCase()} link`,
        'data-src': localPath(url) + '/qr.svg',
    });
    return el('div', { class: 'share-link' },
        el('h4', {}, `${label} link`), el('p', { class: 'hint' }, what),
        el('div', { class: 'copy' }, input, copy), qr);
}

function sessionCard(s) {
    const parts = {
        state: el('span', { class: 'state' }),
        facts: el('span', {}),
        left: el('span', { class: 'left' }),
        viewers: el('span', {}),
        tags: el('span', { class: 'tags' }),
        error: el('p', { class: 'error', role: 'alert', hidden: true }),
        connect: el('a', { class: 'btn primary', href: '#' }, 'Connect'),
        extend: el('button', { class: 'btn', type: 'button' }, '+1 h'),
        stop: el('button', { class: 'btn danger', type: 'button' }, 'Stop'),
        share: el('details', { class: 'share' }, el('summary', {}, 'Share')),
        shareBody: el('div', { class: 'share-grid' }),
    };
    parts.share.append(parts.shareBody);
    parts.share.addEventListener('toggle', () => {
        if (!parts.share.open) return;
        parts.share.querySelectorAll('img[data-src]').forEach((img) => {
            img.src = img.dataset.src;
            img.removeAttribute('data-src');
        });
    });
    parts.extend.addEventListener('click', () => act(s.id, 'extend'));
    parts.stop.addEventListener('click', () => act(s.id, 'stop'));
    const node = el('li', { class: 'card session', 'data-id': s.id },
        el('div', { class: 'session-head' }, el('h3', {}, s.machine), parts.state, parts.tags),
        el('p', { class: 'facts' }, parts.facts, ' · ', parts.left, parts.viewers),
        parts.error,
        el('div', { class: 'row actions' }, parts.connect, parts.extend, parts.stop),
        parts.share);
    return { node, parts, session: s, shared: null };
}

function updateCard(card, s) {
    const p = card.parts;
    card.session = s;
    const live = LIVE_STATES.includes(s.state);
    p.state.textContent = s.state;
    p.state.className = `state state-${s.state}`;
    const started = new Date(s.created_at * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    p.facts.textContent = `started ${started} · ${s.cpus} CPU${s.cpus > 1 ? 's' : ''} · ${fmtMiB(s.memory_mb)}`;
    p.viewers.textContent = live ? ` · ${s.viewers} viewer${s.viewers === 1 ? '' : 's'}` : '';
    const tags = [];
    if (s.gpu && s.gpu !== 'none') tags.push(`GPU ${s.gpu}`);
    if (s.oneshot) tags.push('one-shot');
    if (s.persistent) tags.push('persistent');
    p.tags.replaceChildren(...tags.map((t) => el('span', { class: 'tag' }, t)));
    tickCard(card);
    if (s.state === 'failed') showError(p.error, `Failed: ${s.error || 'no reason given'}`);
    else if (p.error.dataset.action !== 'yes') showError(p.error, s.state === 'stopped' && s.error ? `Stopped: ${s.error}` : '');
    p.connect.hidden = s.state !== 'running';
    if (s.url) {
        p.connect.href = localPath(s.url);
        p.connect.setAttribute('aria-label', `Connect to ${s.machine}`);
    }
    p.extend.hidden = !live || s.state === 'stopping';
    p.stop.hidden = !live || s.state === 'stopping';
    p.share.hidden = !live || !s.url;
    if (s.url && card.shared !== s.url) {
        card.shared = s.url;
        p.shareBody.replaceChildren(
            shareBlock('Control', s.url, 'Whoever opens it can use this desktop: keyboard and mouse.'),
            shareBlock('View-only', s.view_url, 'Whoever opens it can watch, not type or click.'));
        if (p.share.open) p.share.dispatchEvent(new Event('toggle'));
    }
}

function tickCard(card) {
    const s = card.session;
    const p = card.parts;
    if (LIVE_STATES.includes(s.state)) {
        const left = s.expires_at - serverNow();
        p.left.textContent = `${timeLeft(s.expires_at)} left`;
        p.left.classList.toggle('soon', left < 300);
    } else {
        const ago = s.ended_at ? serverNow() - s.ended_at : 0;
        p.left.textContent = s.ended_at ? `ended ${ago < 60 ? 'just now' : timeLeftAgo(ago)}` : 'ended';
        p.left.classList.remove('soon');
    }
}

function timeLeftAgo(seconds) {
    const m = Math.round(seconds / 60);
    return m < 60 ? `${m} min ago` : m < 1440 ? `${Math.round(m / 60)} h ago` : `${Math.round(m / 1440)} d ago`;
}

function isCurrent(s) {
    return LIVE_STATES.includes(s.state) ||
        (s.state === 'failed' && serverNow() - (s.ended_at || 0) < RECENT_FAILURE_S);
}

function upsertSession(s) {
    let card = cards.get(s.id);
    if (!card) {
        card = sessionCard(s);
        cards.set(s.id, card);
    }
    updateCard(card, s);
    const list = isCurrent(s) ? $('sessions') : $('ended-list');
    if (card.node.parentNode !== list) list.prepend(card.node);
    layoutSessions();
}

function layoutSessions() {
    const current = $('sessions').children.length;
    const ended = $('ended-list').children.length;
    $('sessions-section').hidden = current === 0 && ended === 0;
    $('sessions-empty').hidden = current !== 0;
    $('ended').hidden = ended === 0;
    $('ended-count').textContent = ended;
}

async function refreshSessions() {
    let list;
    try {
        list = await api('GET', '/api/v1/sessions');
    } catch (e) {
        if (e.status === 401) location.reload();
        return;
    }
    list.sort((a, b) => a.created_at - b.created_at);
    const seen = new Set();
    for (const s of list) {
        seen.add(s.id);
        upsertSession(s);
    }
    for (const [id, card] of cards) {
        if (!seen.has(id)) {
            card.node.remove();
            cards.delete(id);
        }
    }
    layoutSessions();
}

async function act(id, what) {
    const card = cards.get(id);
    const s = card.session;
    const p = card.parts;
    if (what === 'stop' && !await confirmDialog(`Stop the desktop ${s.machine}?`, 'Stop',
        'It shuts down now; anything not saved inside it is lost.')) return;
    p.error.dataset.action = '';
    showError(p.error, '');
    const button = what === 'stop' ? p.stop : p.extend;
    button.disabled = true;
    try {
        const updated = what === 'stop' ? await api('DELETE', `/api/v1/sessions/${id}`)
            : await api('POST', `/api/v1/sessions/${id}/extend`, { seconds: 3600 });
        upsertSession(updated);
        status(what === 'stop' ? `${s.machine} is stopping` : `${s.machine} now has ${timeLeft(updated.expires_at)} left`);
    } catch (e) {
        p.error.dataset.action = 'yes';
        showError(p.error, e.message);
    } finally {
        button.disabled = false;
    }
}

/* ---- the page ---------------------------------------------------------------- */

async function main() {
    let me;
    try {
        me = await signedIn($('gate'));
    } catch (e) {
        $('gate').replaceChildren(el('p', { class: 'error card' }, e.message));
        return;
    }
    $('gate').replaceChildren();
    renderAccount(me, '/');
    $('machines-section').hidden = false;
    await Promise.all([loadMachines(), refreshSessions()]);
    setInterval(refreshSessions, 5000);
    setInterval(() => cards.forEach(tickCard), 1000);
}

// Coming back from the viewer through the history: show fresh state, not the
// "Opening…" of the card that opened it.
window.addEventListener('pageshow', (ev) => {
    if (!ev.persisted) return;
    document.querySelectorAll('.progress').forEach((p) => { p.hidden = true; });
    document.querySelectorAll('.progress-note').forEach((p) => { p.textContent = ''; });
    refreshSessions();
});

main();
