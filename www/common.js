// What the portal, the viewer and the monitor share: the API client, the login
// form, the page header, a confirmation dialog and a few formatting helpers.

/* ---- the API ------------------------------------------------------------------ */

// An API refusal: status, the API's code and message, and the request field the
// message is about ("cpus: ..." names cpus), when it names one.
export class ApiError extends Error {
    constructor(status, code, message, retryAfter = null) {
        super(message);
        this.status = status;
        this.code = code;
        this.retryAfter = retryAfter;
        const m = /^([a-z_]+): /.exec(message);
        this.field = m ? m[1] : null;
    }
}

let csrf = '';
let clockSkewMs = 0; // server clock minus ours, from the Date header

export function setCsrf(token) {
    csrf = token || '';
}

// The server's time in unix seconds (expiry times are the server's).
export function serverNow() {
    return (Date.now() + clockSkewMs) / 1000;
}

// Calls the API; resolves to the parsed JSON (or text), rejects with ApiError.
export async function api(method, path, body) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrf || 'qdesk';
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let resp;
    try {
        resp = await fetch(path, {
            method,
            headers,
            body: body === undefined ? undefined : JSON.stringify(body),
            credentials: 'same-origin',
            cache: 'no-store',
        });
    } catch {
        throw new ApiError(0, 'offline', 'cannot reach the qdesk service; is it running?');
    }
    const date = Date.parse(resp.headers.get('Date') || '');
    if (!Number.isNaN(date)) clockSkewMs = date - Date.now();
    const type = resp.headers.get('Content-Type') || '';
    const data = type.startsWith('application/json') ? await resp.json().catch(() => null)
        : await resp.text();
    if (!resp.ok) {
        const e = data && data.error;
        throw new ApiError(resp.status, e ? e.code : 'http_' + resp.status,
            e ? e.message : `${method} ${path} failed with HTTP ${resp.status}`,
            resp.headers.get('Retry-After'));
    }
    return data;
}

// GET /api/v1/me, remembering its CSRF token for later changes.
export async function whoAmI() {
    const me = await api('GET', '/api/v1/me');
    setCsrf(me.csrf);
    return me;
}

/* ---- DOM helpers ---------------------------------------------------------------- */

// el('button', {class: 'x', onclick: f}, 'text', child...) → an element.
export function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
        else if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = v;
        else node.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
        if (c !== null && c !== undefined && c !== false)
            node.append(c instanceof Node ? c : String(c));
    }
    return node;
}

// Shows a message (or nothing) in an inline error slot.
export function showError(slot, message) {
    slot.textContent = message || '';
    slot.hidden = !message;
}

// Asks a yes/no question in a modal dialog; resolves to true for yes.
export function confirmDialog(question, yes, detail = '') {
    return new Promise((resolve) => {
        const dialog = el('dialog', { class: 'confirm', 'aria-labelledby': 'confirm-q' },
            el('form', { method: 'dialog' },
                el('p', { id: 'confirm-q', class: 'confirm-q', text: question }),
                detail ? el('p', { class: 'muted', text: detail }) : null,
                el('div', { class: 'row end' },
                    el('button', { value: 'no', class: 'btn', autofocus: true }, 'Cancel'),
                    el('button', { value: 'yes', class: 'btn danger' }, yes))));
        dialog.addEventListener('close', () => {
            resolve(dialog.returnValue === 'yes');
            dialog.remove();
        });
        document.body.append(dialog);
        dialog.showModal();
    });
}

// Copies text to the clipboard (with a fallback for plain-HTTP pages, where the
// Clipboard API is missing); resolves to true on success.
export async function copyText(text, input) {
    try {
        await navigator.clipboard.writeText(text);
        return true;
    } catch {
        if (!input) return false;
        input.select();
        return document.execCommand('copy');
    }
}

/* ---- formatting ------------------------------------------------------------------ */

// 3725 → "1 h 02 min"; 95 → "1 min 35 s"; a day or more → "2 d 3 h".
export function fmtDuration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600);
    const m = Math.floor(s % 3600 / 60), sec = s % 60;
    if (d) return `${d} d ${h} h`;
    if (h) return `${h} h ${String(m).padStart(2, '0')} min`;
    if (m) return `${m} min ${String(sec).padStart(2, '0')} s`;
    return `${sec} s`;
}

// Time left until a server timestamp, or "expired".
export function timeLeft(expiresAt) {
    const left = expiresAt - serverNow();
    return left > 0 ? fmtDuration(left) : 'expired';
}

// 1536 → "1.5 GiB"; 512 → "512 MiB".
export function fmtMiB(mb) {
    if (mb >= 1024) return `${+(mb / 1024).toFixed(mb % 1024 ? 1 : 0)} GiB`;
    return `${mb} MiB`;
}

export function fmtBytes(n) {
    return n >= 1 << 30 ? `${+(n / (1 << 30)).toFixed(1)} GiB`
        : `${Math.max(1, Math.round(n / (1 << 20)))} MiB`;
}

export const LIVE_STATES = ['creating', 'starting', 'running', 'stopping'];

// A link's path on this origin: the API's links carry the host the request named,
// pages use the origin they were loaded from.
export function localPath(url) {
    try {
        return new URL(url, location.href).pathname;
    } catch {
        return url;
    }
}

/* ---- the page frame ------------------------------------------------------------- */

// Fills the header's account area: user name, a monitor link for admins, log out.
export function renderAccount(me, here) {
    const box = document.getElementById('account');
    if (!box) return;
    box.replaceChildren();
    const links = [['/', 'Desktops']];
    if (me.admin) links.push(['/monitor', 'Monitor']);
    const nav = el('nav', { 'aria-label': 'Pages' },
        links.map(([href, label]) => el('a', {
            href, 'aria-current': href === here ? 'page' : null,
        }, label)));
    box.append(nav);
    if (me.auth !== 'none' && me.user) {
        const out = el('button', { class: 'btn small', type: 'button' }, 'Log out');
        out.addEventListener('click', async () => {
            out.disabled = true;
            try {
                await api('POST', '/api/v1/logout');
            } finally {
                location.href = '/';
            }
        });
        box.append(el('span', { class: 'who' }, el('span', { class: 'sr-only' }, 'Signed in as '),
            me.user, me.admin ? el('span', { class: 'tag' }, 'admin') : null), out);
    }
}

// Shows the login form in container; resolves with /me's answer once signed in.
export function loginForm(container) {
    return new Promise((resolve) => {
        const err = el('p', { class: 'error', role: 'alert', id: 'login-error', hidden: true });
        const user = el('input', {
            id: 'login-user', name: 'user', autocomplete: 'username', required: true,
            autocapitalize: 'none', spellcheck: 'false', maxlength: 63,
        });
        const pass = el('input', {
            id: 'login-password', name: 'password', type: 'password', required: true,
            autocomplete: 'current-password', 'aria-describedby': 'login-error',
        });
        const submit = el('button', { class: 'btn primary', type: 'submit' }, 'Sign in');
        const form = el('form', { class: 'card login', 'aria-labelledby': 'login-title' },
            el('h2', { id: 'login-title' }, 'Sign in'),
            el('label', { for: 'login-user' }, 'User name'), user,
            el('label', { for: 'login-password' }, 'Password'), pass,
            err, submit);
        form.addEventListener('submit', async (ev) => {
            ev.preventDefault();
            submit.disabled = true;
            showError(err, '');
            try {
                const me = await api('POST', '/api/v1/login',
                    { user: user.value.trim(), password: pass.value });
                setCsrf(me.csrf);
                pass.value = '';
                resolve(me);
            } catch (e) {
                let msg = e.message;
                if (e.status === 429 && e.retryAfter) msg += ` (try again in ${e.retryAfter} s)`;
                showError(err, msg);
                pass.select();
            } finally {
                submit.disabled = false;
            }
        });
        container.replaceChildren(form);
        user.focus();
    });
}

// Makes sure someone is signed in (showing the login form in container when
// needed); resolves with /me.
export async function signedIn(container) {
    let me = await whoAmI();
    if (me.auth !== 'none' && !me.user) me = await loginForm(container);
    return me;
}
