// The viewer: /s/TOKEN shows the desktop behind TOKEN through noVNC. The token is
// the only credential; /s/TOKEN/info says what it opens, /ws/TOKEN carries RFB.
import { RFB } from '/vendor/novnc.js';
import { api, el, timeLeft, serverNow } from '/common.js';

const $ = (id) => document.getElementById(id);
const token = location.pathname.split('/')[2] || '';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let info = null;          // the last /info answer
let rfb = null;           // the live connection, if any
let connectedOnce = false;
let drops = 0;            // connections lost (or refused) since the last success
let finished = false;     // a final message is up; nothing more to do
let wake = null;          // resolves the current wait early ("Reconnect now")

/* ---- the overlay and the bar --------------------------------------------------- */

function overlay(title, text = '', { spin = false, actions = [] } = {}) {
    $('ov-title').textContent = title;
    $('ov-text').textContent = text;
    $('ov-spin').hidden = !spin;
    $('ov-actions').replaceChildren(...actions);
    $('overlay').hidden = false;
}

function hideOverlay() {
    $('overlay').hidden = true;
}

function conn(text, kind) {
    $('conn').firstElementChild.textContent = text;
    $('conn').className = `conn ${kind}`;
}

// Narrow screens get the short labels (data-short) of the bar's controls.
function labels() {
    const narrow = matchMedia('(max-width: 520px)').matches;
    document.querySelectorAll('.vbar [data-short]').forEach((n) => {
        if (!n.dataset.long) n.dataset.long = n.textContent;
        n.textContent = narrow ? n.dataset.short : n.dataset.long;
    });
}

const portalLink = () => el('a', { class: 'btn', href: '/' }, 'Go to the qdesk portal');

// Shows a message that ends the page's work: the link cannot show a desktop.
function finish(title, text, status = 'Ended') {
    finished = true;
    if (rfb) {
        const r = rfb;
        rfb = null;
        r.disconnect();
    }
    conn(status, 'off');
    $('left').textContent = '';
    for (const id of ['btn-cad', 'btn-keys', 'btn-full', 'fit', 'left']) $(id).hidden = true;
    overlay(title, text, { actions: [portalLink()] });
    document.title = `${title} — qdesk`;
}

function tick() {
    if (!info || finished) return;
    const left = info.expires_at - serverNow();
    // Narrow screens drop the seconds: "1 h 05 min", "58 min", "45 s".
    const text = !matchMedia('(max-width: 520px)').matches || left < 60 ? timeLeft(info.expires_at)
        : left >= 3600 ? `${Math.floor(left / 3600)} h ${String(Math.floor(left % 3600 / 60)).padStart(2, '0')} min`
            : `${Math.floor(left / 60)} min`;
    $('left').textContent = `${text} left`;
    $('left').classList.toggle('soon', left < 300);
}

/* ---- what the link opens ---------------------------------------------------------- */

// Returns /info, or null when the link is unknown (expired or never existed).
// Network trouble (the service restarting) is retried here, with a message.
async function fetchInfo() {
    for (let delay = 1000; ; delay = Math.min(delay * 2, 10000)) {
        try {
            info = await api('GET', `/s/${token}/info`);
            applyInfo();
            return info;
        } catch (e) {
            if (e.status === 404) return null;
            conn('Offline', 'wait');
            overlay('Cannot reach qdesk', `${e.status ? e.message : 'The service does not answer.'} Trying again…`,
                { spin: true });
            await sleep(delay);
        }
    }
}

function applyInfo() {
    $('title').textContent = info.machine;
    document.title = `${info.machine} — qdesk`;
    $('badge').hidden = !info.view_only;
    $('btn-cad').hidden = info.view_only;
    $('btn-keys').hidden = info.view_only || !matchMedia('(pointer: coarse)').matches;
    for (const opt of $('fit').options)
        if (opt.hasAttribute('data-control')) opt.hidden = opt.disabled = info.view_only;
    if (info.view_only && $('fit').value === 'remote') setFit('scale');
    tick();
}

// What to say when the link shows no desktop now (null: it may, go on).
function verdict(i) {
    // The service forgets the links of a session once it has stopped.
    if (!i && connectedOnce) return ['This desktop has ended', 'Its time ran out or someone stopped it.'];
    if (!i) {
        return ['This link has expired', 'It never existed, or its desktop has ended and the link went with it.',
            'Expired'];
    }
    if (i.state === 'stopped' || i.state === 'stopping')
        return ['This desktop has ended', 'Its time ran out or someone stopped it.'];
    if (i.state === 'failed') return ['This desktop failed', 'It stopped unexpectedly. Start a new one from the portal.', 'Failed'];
    if (i.oneshot && i.used)
        return ['This one-shot link has been used', 'It admitted one viewer, and its desktop ends when that viewer leaves.',
            'Link used'];
    return null;
}

/* ---- the connection --------------------------------------------------------------- */

function setFit(mode) {
    $('fit').value = mode;
    try { localStorage.setItem('qdesk.fit', mode); } catch { /* private mode */ }
    if (!rfb) return;
    rfb.scaleViewport = mode === 'scale';
    rfb.resizeSession = mode === 'remote' && !info.view_only;
    rfb.clipViewport = false;
}

function connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    conn('Connecting…', 'wait');
    overlay('Connecting…', '', { spin: true });
    const r = new RFB($('screen'), `${scheme}//${location.host}/ws/${token}`, { shared: true });
    rfb = r;
    r.viewOnly = info.view_only;
    r.background = '#1e1e1e';
    setFit($('fit').value);
    r.addEventListener('connect', () => {
        connectedOnce = true;
        drops = 0;
        conn('Connected', 'on');
        hideOverlay();
        if (!info.view_only) r.focus();
    });
    r.addEventListener('disconnect', () => {
        if (rfb !== r) return; // we closed it on purpose
        rfb = null;
        drops++;
        conn('Disconnected', 'off');
        run();
    });
    r.addEventListener('desktopname', (ev) => {
        if (ev.detail.name) $('title').title = ev.detail.name;
    });
    r.addEventListener('securityfailure', (ev) => {
        finish('The desktop refused the connection', ev.detail.reason || `Security failure ${ev.detail.status}.`);
    });
}

// Waits ms, or less when the user asks to reconnect now.
function pause(ms) {
    return new Promise((resolve) => {
        const t = setTimeout(resolve, ms);
        wake = () => { clearTimeout(t); resolve(); };
    });
}

// Decides what the link shows now: wait for the desktop to start, connect,
// reconnect after a drop, or say why there is nothing to show.
async function run() {
    if (finished) return;
    let waitedForStart = false;
    for (;;) {
        const i = await fetchInfo();
        const no = verdict(i);
        if (no) {
            // A one-shot link reports "used" once anyone, us included, connected.
            finish(...no);
            return;
        }
        if (i.state === 'running') break;
        conn('Starting…', 'wait');
        overlay('The desktop is starting…', `${i.machine} is ${i.state}; it appears here when it is ready.`, { spin: true });
        await sleep(700);
        waitedForStart = true;
    }
    if (drops > 0 && !waitedForStart) {
        // 1, 2, 4, 8, 15, 15 ... seconds between attempts
        const delay = Math.min(1000 * 2 ** (drops - 1), 15000);
        const now = el('button', { class: 'btn', type: 'button' }, 'Reconnect now');
        now.addEventListener('click', () => wake && wake());
        conn('Reconnecting…', 'wait');
        overlay(connectedOnce ? 'Connection lost' : 'Cannot connect to the desktop',
            `Trying again in ${Math.round(delay / 1000)} s…`, { spin: true, actions: [now] });
        await pause(delay);
        const again = verdict(await fetchInfo());
        if (again) {
            finish(...again);
            return;
        }
        if (info.state !== 'running') return run();
    }
    connect();
}

/* ---- the controls ----------------------------------------------------------------- */

function setupControls() {
    labels();
    matchMedia('(max-width: 520px)').addEventListener('change', labels);
    const saved = (() => { try { return localStorage.getItem('qdesk.fit'); } catch { return null; } })();
    $('fit').value = ['scale', 'remote', 'actual'].includes(saved) ? saved : 'scale';
    $('fit').addEventListener('change', () => {
        setFit($('fit').value);
        if (rfb && !info.view_only) rfb.focus();
    });

    $('btn-cad').addEventListener('click', () => {
        if (!rfb) return;
        rfb.sendCtrlAltDel();
        rfb.focus();
    });

    if (document.fullscreenEnabled) {
        const full = $('btn-full');
        full.hidden = false;
        full.addEventListener('click', () => {
            if (document.fullscreenElement) document.exitFullscreen();
            else document.documentElement.requestFullscreen().catch(() => {});
        });
        document.addEventListener('fullscreenchange', () => {
            const on = !!document.fullscreenElement;
            full.dataset.long = on ? 'Exit full screen' : 'Full screen';
            full.dataset.short = on ? 'Exit' : 'Full';
            full.setAttribute('aria-label', full.dataset.long);
            labels();
            if (rfb && !info.view_only) rfb.focus();
        });
    }

    // Phones: a hidden text field brings up the on-screen keyboard; what is typed
    // into it goes to the desktop as key presses. A sentinel character lets a
    // backspace on an "empty" field be seen.
    const kbd = $('kbd');
    const SENTINEL = '_';
    const keysym = (ch) => {
        const c = ch.codePointAt(0);
        return c < 0x100 ? c : 0x01000000 + c;
    };
    $('btn-keys').addEventListener('click', () => {
        kbd.value = SENTINEL;
        kbd.focus();
    });
    kbd.addEventListener('input', () => {
        if (!rfb) return;
        const v = kbd.value;
        if (v.length < SENTINEL.length) rfb.sendKey(0xff08, 'Backspace');
        for (const ch of v.slice(SENTINEL.length)) {
            if (ch === '\n') rfb.sendKey(0xff0d, 'Enter');
            else rfb.sendKey(keysym(ch), null);
        }
        kbd.value = SENTINEL;
    });
    kbd.addEventListener('keydown', (ev) => {
        const special = { Enter: 0xff0d, Tab: 0xff09, Escape: 0xff1b, ArrowLeft: 0xff51,
            ArrowUp: 0xff52, ArrowRight: 0xff53, ArrowDown: 0xff54 }[ev.key];
        if (special && rfb) {
            ev.preventDefault();
            rfb.sendKey(special, ev.code);
        }
    });
}

async function main() {
    setupControls();
    if (!/^[A-Za-z0-9_-]{20,}$/.test(token)) {
        finish('This is not a desktop link', 'Desktop links look like /s/ followed by a long code.');
        return;
    }
    setInterval(tick, 1000);
    // Pick up extensions and the end of the session while connected.
    setInterval(async () => {
        if (finished || !rfb) return;
        try {
            info = await api('GET', `/s/${token}/info`);
            applyInfo();
        } catch { /* the disconnect path handles it */ }
    }, 15000);
    run();
}

main();
