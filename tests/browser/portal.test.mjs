#!/usr/bin/env node
// The portal, the viewer and the monitor in Debian's headless Chromium against a
// real `qdesk serve` booting the demo guest: sign in through the form, start a
// desktop, see it drawn in the viewer's canvas, type into it and find the keys on
// the guest's serial console, share a view-only link that shows the desktop but
// sends nothing, watch it from the monitor, stop it. Speaks TAP; screenshots go to
// tests/artifacts/browser/.
import { chromium } from 'playwright-core';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = process.env.QDESK_ROOT ||
    path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const QDESK = path.join(ROOT, 'build', 'qdesk');
const MACHINES = path.join(ROOT, 'machines');
const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts', 'browser');
const MACHINE = 'demo-kernel';
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync'];
const USER = { name: 'bob', password: 'bob-password-1' };
const ADMIN = { name: 'carol', password: 'carol-password-1' };
// Linux input keycodes of the letters, as the demo guest prints them.
const KEYCODE = Object.fromEntries([...'qwertyuiop'].map((c, i) => [c, 16 + i])
    .concat([...'asdfghjkl'].map((c, i) => [c, 30 + i]), [...'zxcvbnm'].map((c, i) => [c, 44 + i])));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* ---- TAP ------------------------------------------------------------------------ */

const checks = [];
function check(name, fn, needs = []) {
    checks.push({ name, fn, needs });
}

function diag(text) {
    for (const line of String(text).replace(/\x1b\[[0-9;]*m/g, '').split('\n')) console.log(`# ${line}`);
}

// Polls fn until it returns a truthy value; throws with what was last seen.
async function eventually(fn, timeoutMs, what, intervalMs = 250) {
    const deadline = Date.now() + timeoutMs;
    let last;
    while (Date.now() < deadline) {
        try {
            last = await fn();
            if (last) return last;
        } catch (e) {
            last = e;
        }
        await sleep(intervalMs);
    }
    throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}` +
        ` (last: ${last instanceof Error ? last.message : JSON.stringify(last)})`);
}

function assert(cond, message) {
    if (!cond) throw new Error(message);
}

/* ---- the service ---------------------------------------------------------------- */

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.on('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

class Service {
    async start() {
        // Short paths: unix socket names have a length limit.
        this.dir = fs.mkdtempSync('/tmp/qd-br-');
        fs.chmodSync(this.dir, 0o755); // QEMU runs as qdesk-qemu: it must reach its files
        // the nftables table keeping this service's guests off the host, removed with it
        this.table = `qdt_br_${process.pid}`;
        this.state = path.join(this.dir, 'state');
        fs.mkdirSync(this.state);
        this.port = await freePort();
        this.base = `http://127.0.0.1:${this.port}`;
        this.conf = path.join(this.dir, 'qdesk.conf');
        this.logPath = path.join(this.dir, 'serve.log');
        fs.writeFileSync(this.conf, [
            '[server]', `listen = 127.0.0.1:${this.port}`, `www = ${path.join(ROOT, 'www')}`,
            '[auth]', 'auth = local',
            '[paths]', `machines = ${MACHINES}`, `state = ${this.state}`,
            '[qemu]', 'stop_grace_s = 10s', '[usernet]', `firewall_table = ${this.table}`,
            '[sessions]', 'max_lifetime_s = 2d',
            '[limits]', 'max_load_per_core = 100', 'min_mem_available_mb = 64M',
            'max_sessions_per_user = 8', 'user_memory_fraction = 0.9', ''].join('\n'));
        for (const [u, admin] of [[USER, false], [ADMIN, true]]) {
            const out = this.qdesk(['user', 'add', u.name, '--password-stdin', ...(admin ? ['--admin'] : [])],
                u.password + '\n');
            assert(out.status === 0, `qdesk user add ${u.name} failed: ${out.stderr}`);
        }
        const log = fs.openSync(this.logPath, 'a');
        this.proc = spawn(QDESK, ['-c', this.conf, 'serve'], { stdio: ['ignore', log, log], detached: true });
        this.exited = new Promise((resolve) => this.proc.on('exit', resolve));
        await eventually(async () => {
            if (this.proc.exitCode !== null) throw new Error(`qdesk serve exited: ${this.log()}`);
            const r = await fetch(`${this.base}/healthz`).catch(() => null);
            return r && r.ok;
        }, 10000, 'the service to answer /healthz');
    }

    qdesk(args, input) {
        return spawnSync(QDESK, ['-c', this.conf, ...args], { input, encoding: 'utf8', timeout: 60000 });
    }

    log() {
        try {
            return fs.readFileSync(this.logPath, 'utf8');
        } catch {
            return '';
        }
    }

    live() {
        const out = this.qdesk(['status', '--json']);
        const list = JSON.parse(out.stdout || '[]');
        return list.filter((s) => !['stopped', 'failed'].includes(s.state));
    }

    // Stops every session, then the service; kills (by pid) any QEMU of ours that
    // outlived it, and removes the state.
    async close() {
        if (!this.proc) return;
        if (this.proc.exitCode === null) {
            this.qdesk(['stop', '--all']);
            await eventually(() => this.live().length === 0, 40000, 'every session to stop')
                .catch((e) => diag(e.message));
            this.proc.kill('SIGTERM');
            const done = await Promise.race([this.exited.then(() => true), sleep(20000).then(() => false)]);
            if (!done) this.proc.kill('SIGKILL');
        }
        for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
            let cmd = '';
            try {
                cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
            } catch {
                continue;
            }
            if (cmd.includes(this.state + '/')) {
                diag(`killing leftover process ${pid}: ${cmd.split('\0')[0]}`);
                try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
            }
        }
        spawnSync('nft', ['delete', 'table', 'inet', this.table]);
        fs.rmSync(this.dir, { recursive: true, force: true });
    }
}

/* ---- the browser ------------------------------------------------------------------ */

const pageErrors = [];
const pageLabel = new Map();

// Collects a page's JavaScript errors (API refusals the page shows are not errors).
function watch(page, label) {
    pageLabel.set(page, label);
    page.on('pageerror', (e) => pageErrors.push(`${pageLabel.get(page)}: ${e.message}`));
    page.on('console', (m) => {
        if (m.type() === 'error' && !/status of (401|404|409|503)/.test(m.text()))
            pageErrors.push(`${pageLabel.get(page)} console: ${m.text()}`);
    });
    return page;
}

// Keeps a screenshot as a test artifact; a picture that could not be taken fails
// the check.
async function shot(page, name, fullPage = false) {
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path: file, fullPage });
    const head = fs.readFileSync(file).subarray(0, 8);
    assert(head.equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) &&
        fs.statSync(file).size > 2000, `the screenshot ${file} is not a picture`);
    return file;
}

// The page fits a phone's width: nothing scrolls sideways.
async function fitsWidth(page, width) {
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(wide <= width, `the page scrolls sideways (${wide} px wide on a ${width} px screen)`);
}

// What the viewer's canvas shows: how many distinct colours a sample holds, and the
// share of pixels that are not (nearly) black.
function canvasStats(page) {
    return page.evaluate(() => {
        const c = document.querySelector('#screen canvas');
        if (!c || !c.width || !c.height) return { colours: 0, lit: 0, width: 0, height: 0 };
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        const colours = new Set();
        let lit = 0, n = 0;
        for (let i = 0; i < d.length; i += 4 * 53) {
            colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
            if (d[i] + d[i + 1] + d[i + 2] > 48) lit++;
            n++;
        }
        return { colours: colours.size, lit: lit / n, width: c.width, height: c.height };
    });
}

async function waitForDesktop(page, what) {
    return eventually(async () => {
        const s = await canvasStats(page);
        return s.colours >= 64 && s.lit >= 0.5 ? s : null;
    }, 120000, `${what} to show the demo desktop (many colours, mostly not black)`, 1000);
}

/* ---- the checks ------------------------------------------------------------------- */

const svc = new Service();
let browser, userCtx, viewCtx, adminCtx;
let portal, viewer, viewOnly, monitor;
let session; // the API's view of the desktop the test started

// The guest's serial console, read with the signed-in user's cookie from the page.
function serial() {
    return portal.evaluate(async (id) => {
        const r = await fetch(`/api/v1/sessions/${id}/serial`);
        return r.ok ? r.text() : '';
    }, session.id);
}

function apiGet(page, p) {
    return page.evaluate(async (url) => (await fetch(url)).json(), p);
}

const keyLines = (text) => (text.match(/^QDESK-KEY \d+/gm) || []).length;

check('the portal shows a login form and a wrong password gets an inline error', async () => {
    portal = watch(await userCtx.newPage(), 'portal');
    await portal.goto(svc.base + '/');
    await portal.getByLabel('User name').fill(USER.name);
    await portal.getByLabel('Password').fill('not-the-password');
    await portal.getByRole('button', { name: 'Sign in' }).click();
    const err = portal.locator('#login-error');
    await err.waitFor({ state: 'visible', timeout: 10000 });
    const text = await err.textContent();
    assert(/wrong user name or password/.test(text), `the error says "${text}"`);
    await shot(portal, '01-login-error');
});

check(`signing in shows the machine list with ${MACHINE} and its description`, async () => {
    await portal.getByLabel('Password').fill(USER.password);
    await portal.getByRole('button', { name: 'Sign in' }).click();
    const card = portal.locator(`#machine-${MACHINE}`);
    await card.waitFor({ timeout: 10000 });
    const machines = await apiGet(portal, '/api/v1/machines');
    const m = machines.find((x) => x.name === MACHINE);
    assert(m, `the API lists no ${MACHINE}`);
    const desc = (await card.locator('.desc').textContent()).trim();
    assert(desc === (m.description || 'No description.'), `the card says "${desc}", the catalogue "${m.description}"`);
    assert(await portal.locator('.who').textContent().then((t) => t.includes(USER.name)), 'the header does not name the user');
    // the lifetimes are the host's: its default ([sessions] default_lifetime_s = 4h)
    // chosen, nothing beyond max_lifetime_s (2d here)
    await card.locator('summary').click();
    const lifetimes = await card.locator('fieldset input[type=radio]').evaluateAll((rs) =>
        rs.map((r) => [r.parentElement.textContent, r.checked]));
    assert(JSON.stringify(lifetimes) === JSON.stringify([['30 min', false], ['1 h', false],
        ['4 h', true], ['1 day', false], ['2 days', false]]), `the lifetimes offered are ${JSON.stringify(lifetimes)}`);
    await card.locator('summary').click();
    await shot(portal, '02-machines', true);
}, [0]);

check('Start desktop shows its progress, then opens the viewer in the same tab', async () => {
    const card = portal.locator(`#machine-${MACHINE}`);
    await card.locator('summary').click();
    await card.getByRole('radio', { name: '30 min' }).check();
    // Record the progress steps the card shows (the page goes away when it is done).
    const steps = [];
    await portal.exposeFunction('__qdStep', (s) => { steps.push(s); });
    await portal.evaluate(() => {
        let last = '';
        new MutationObserver(() => {
            const li = document.querySelector('.progress:not([hidden]) li.current');
            if (li && li.dataset.step !== last) window.__qdStep(last = li.dataset.step);
        }).observe(document.querySelector('#machines'), { subtree: true, attributes: true, childList: true });
    });
    await card.getByRole('button', { name: 'Start desktop' }).click();
    await portal.waitForURL(/\/s\/[A-Za-z0-9_-]+$/, { timeout: 120000 }).catch(async (e) => {
        const err = await card.locator('.error:visible').allTextContents().catch(() => []);
        throw new Error(`${e.message}; the card shows: ${err.join(' | ') || 'no error'}`);
    });
    diag(`progress shown: ${steps.join(' → ')}`);
    assert(steps[0] === 'creating', `the first step shown was ${steps[0]}`);
    const token = new URL(portal.url()).pathname.split('/')[2];
    // That tab is the viewer now; the portal opens again in a second one.
    viewer = portal;
    pageLabel.set(viewer, 'viewer');
    portal = watch(await userCtx.newPage(), 'portal');
    await portal.goto(svc.base + '/');
    const list = await apiGet(portal, '/api/v1/sessions');
    session = list.find((s) => s.url && s.url.endsWith('/s/' + token));
    assert(session, 'no session of the user has the viewer\'s link');
    assert(session.machine === MACHINE, `the session runs ${session.machine}`);
    assert(session.expires_at - session.created_at <= 1800 + 5, 'the 30 min lifetime was not used');
}, [1]);

check('the viewer canvas shows the demo desktop', async () => {
    const stats = await waitForDesktop(viewer, 'the viewer');
    await shot(viewer, '03-viewer-control');
    diag(`canvas ${stats.width}x${stats.height}, ${stats.colours} colours in the sample, ${Math.round(stats.lit * 100)}% lit`);
    const title = await viewer.locator('#title').textContent();
    assert(title === MACHINE, `the bar names "${title}"`);
    assert(await viewer.locator('#badge').isHidden(), 'a control link shows the view-only badge');
    assert(await viewer.getByRole('button', { name: /Ctrl-Alt-Del/ }).isVisible(), 'no Ctrl-Alt-Del button');
    assert(/left$/.test(await viewer.locator('#left').textContent()), 'no time left in the bar');
}, [2]);

check('a click and keys typed in the viewer reach the guest', async () => {
    await eventually(async () => /^QDESK-DEMO-READY/m.test(await serial()), 90000,
        'QDESK-DEMO-READY on the serial console');
    const box = await viewer.locator('#screen canvas').boundingBox();
    await viewer.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    await viewer.keyboard.type('qdesk', { delay: 60 });
    const want = [...'qdesk'].map((c) => `QDESK-KEY ${KEYCODE[c]}`);
    const text = await eventually(async () => {
        const t = await serial();
        return want.every((w) => new RegExp(`^${w}\\b`, 'm').test(t)) && /^QDESK-BUTTON /m.test(t) ? t : null;
    }, 30000, `${want.join(', ')} and a QDESK-BUTTON line on the serial console`);
    diag(`serial: ${text.split('\n').filter((l) => l.startsWith('QDESK-')).slice(-7).join(' | ')}`);
}, [3]);

check('My desktops shows the session with time left, and Share gives both links, copy buttons and QR codes', async () => {
    const card = portal.locator(`li.session[data-id="${session.id}"]`);
    await card.waitFor({ timeout: 10000 });
    assert((await card.locator('.state').textContent()) === 'running', 'the card is not "running"');
    const left1 = await card.locator('.left').textContent();
    assert(/ left$/.test(left1), `time left reads "${left1}"`);
    await sleep(1500);
    const left2 = await card.locator('.left').textContent();
    assert(left1 !== left2, `time left does not count down ("${left1}")`);
    assert(await card.getByRole('link', { name: new RegExp(`Connect to ${MACHINE}`) }).isVisible(), 'no Connect link');
    await card.locator('summary', { hasText: 'Share' }).click();
    const links = await card.locator('input.link').evaluateAll((ins) => ins.map((i) => i.value));
    assert(links.length === 2 && links[0] === session.url && links[1] === session.view_url,
        `the share links are ${JSON.stringify(links)}`);
    assert(await card.getByRole('button', { name: 'Copy' }).count() === 2, 'not two Copy buttons');
    await eventually(() => card.locator('img.qr').evaluateAll((imgs) =>
        imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth > 0)), 10000, 'both QR codes to load');
    await card.getByRole('button', { name: 'Copy' }).nth(1).click();
    await eventually(async () => (await card.getByRole('button').filter({ hasText: /^Cop/ }).nth(1).textContent()) === 'Copied',
        3000, 'the copy button to say "Copied"');
    const copied = await portal.evaluate(() => navigator.clipboard.readText());
    assert(copied === session.view_url, `the clipboard holds "${copied}"`);
    await shot(portal, '04-my-desktops-share', true);
}, [2]);

check('+1 h extends the session by an hour', async () => {
    const before = (await apiGet(portal, `/api/v1/sessions/${session.id}`)).expires_at;
    const card = portal.locator(`li.session[data-id="${session.id}"]`);
    await card.getByRole('button', { name: '+1 h' }).click();
    const after = await eventually(async () => {
        const s = await apiGet(portal, `/api/v1/sessions/${session.id}`);
        return s.expires_at > before ? s.expires_at : null;
    }, 10000, 'expires_at to move');
    assert(after - before === 3600, `expires_at moved by ${after - before} s`);
    await eventually(async () => /^1 h \d\d min left$/.test(await card.locator('.left').textContent()), 5000,
        'the card to show over an hour left');
    assert(await card.locator('.error').isHidden(), 'the card shows an error');
}, [2]);

check('the view-only link shows the desktop on a phone-size screen with a view-only badge', async () => {
    viewOnly = watch(await viewCtx.newPage(), 'view-only');
    await viewOnly.goto(session.view_url.replace(/^https?:\/\/[^/]+/, svc.base));
    await waitForDesktop(viewOnly, 'the view-only page');
    await shot(viewOnly, '05-viewer-view-only-phone');
    assert(await viewOnly.getByText('View only', { exact: true }).isVisible(), 'no visible view-only badge');
    assert(await viewOnly.locator('#btn-cad').isHidden(), 'a view-only page offers Ctrl-Alt-Del');
    const box = await viewOnly.locator('#screen canvas').boundingBox();
    assert(box.width <= 360 + 1 && box.x >= -1, `the canvas (${Math.round(box.width)} px wide) does not fit the 360 px screen`);
    const overflow = await viewOnly.evaluate(() => document.documentElement.scrollWidth);
    assert(overflow <= 360, `the page scrolls sideways (${overflow} px wide)`);
}, [2]);

check('typing on the view-only page does not reach the guest', async () => {
    const before = keyLines(await serial());
    const box = await viewOnly.locator('#screen canvas').boundingBox();
    await viewOnly.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
    await viewOnly.keyboard.type('zxcv', { delay: 60 });
    // A key typed afterwards on the control page shows the console is being read.
    await viewer.locator('#screen canvas').click();
    await viewer.keyboard.type('m');
    const codes = (text) => text.split('\n').map((l) => /^QDESK-KEY (\d+)/.exec(l)).filter(Boolean)
        .map((m) => Number(m[1]));
    const added = await eventually(async () => {
        const got = codes(await serial()).slice(before);
        return got.includes(KEYCODE.m) ? got : null;
    }, 30000, `QDESK-KEY ${KEYCODE.m} (typed on the control page) on the serial console`);
    const leaked = added.filter((c) => [...'zxcv'].some((k) => KEYCODE[k] === c));
    assert(leaked.length === 0, `view-only keys reached the guest: QDESK-KEY ${leaked.join(', ')}`);
    diag(`keys seen since: ${added.join(' ')} (z x c v would be ${[...'zxcv'].map((k) => KEYCODE[k]).join(' ')})`);
}, [4, 7]);

check('the monitor tells a user who is not an administrator that it is for administrators', async () => {
    const page = watch(await userCtx.newPage(), 'monitor (user)');
    await page.goto(svc.base + '/monitor');
    await page.getByRole('heading', { name: 'The monitor is for administrators' }).waitFor({ timeout: 10000 });
    assert(await page.locator('#monitor').isHidden(), 'the monitor itself is shown');
    await page.close();
}, [1]);

check('the monitor shows an administrator the host and the session with a screenshot', async () => {
    monitor = watch(await adminCtx.newPage(), 'monitor');
    await monitor.goto(svc.base + '/monitor');
    await monitor.getByLabel('User name').fill(ADMIN.name);
    await monitor.getByLabel('Password').fill(ADMIN.password);
    await monitor.getByRole('button', { name: 'Sign in' }).click();
    await monitor.locator('#host .stat').first().waitFor({ timeout: 10000 });
    const host = await monitor.locator('#host').textContent();
    for (const word of ['Load', 'Memory', 'Acceleration', 'Sessions'])
        assert(host.includes(word), `the host panel has no ${word}`);
    const row = monitor.locator(`tr[data-id="${session.id}"]`);
    await row.waitFor({ timeout: 10000 });
    const cells = await row.locator('td').allTextContents();
    assert(cells.includes(USER.name) && cells.some((c) => c.startsWith(MACHINE)) && cells.some((c) => c.startsWith('running')),
        `the row reads ${JSON.stringify(cells)}`);
    await eventually(() => row.locator('img.thumb').evaluate((i) => i.complete && i.naturalWidth > 0),
        30000, 'a screenshot thumbnail');
    await shot(monitor, '06-monitor', true);
}, [2]);

check('Stop in My desktops asks first, then stops the session', async () => {
    const card = portal.locator(`li.session[data-id="${session.id}"]`);
    await card.getByRole('button', { name: 'Stop' }).click();
    const dialog = portal.getByRole('dialog');
    await dialog.waitFor({ timeout: 5000 });
    await shot(portal, '07-stop-confirm');
    await dialog.getByRole('button', { name: 'Stop' }).click();
    await eventually(async () => (await apiGet(portal, `/api/v1/sessions/${session.id}`)).state === 'stopped',
        60000, 'the session to be stopped');
    await eventually(async () => {
        const s = await card.locator('.state').textContent();
        return s === 'stopped' && await card.getByRole('link', { name: /Connect/ }).isHidden();
    }, 10000, 'the card to say "stopped" without Connect');
}, [2]);

check('the open viewers say that the desktop has ended', async () => {
    for (const [page, name] of [[viewer, 'control'], [viewOnly, 'view-only']]) {
        if (!page) continue;
        const title = await eventually(async () => {
            const visible = await page.locator('#overlay').isVisible();
            const t = await page.locator('#ov-title').textContent();
            return visible && /has ended/.test(t) ? t : null;
        }, 30000, `the ${name} viewer's "ended" message`);
        diag(`${name} viewer: ${title}`);
        await shot(page, `08-viewer-${name}-ended`);
    }
}, [11]);

check('the portal and the monitor fit a phone-size screen', async () => {
    const phone = { viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true };
    for (const [ctx, where, what] of [[userCtx, '/', `#machine-${MACHINE} button[type=submit]`],
        [adminCtx, '/monitor', '#host .stat']]) {
        const small = await browser.newContext({ ...phone, storageState: await ctx.storageState() });
        const page = watch(await small.newPage(), `${where} on a phone`);
        await page.goto(svc.base + where);
        await page.locator(what).first().waitFor({ timeout: 10000 });
        await fitsWidth(page, 360);
        const box = await page.locator(what).first().boundingBox();
        assert(box.x >= 0 && box.x + box.width <= 360, `${what} sticks out of the screen at ${where}`);
        await shot(page, `09-phone${where === '/' ? '-portal' : where.replace('/', '-')}`, true);
        await small.close();
    }
}, [1, 10]);

check('the monitor stops one session, then all of them', async () => {
    const started = [1, 2].map(() => {
        const out = svc.qdesk(['start', MACHINE, '--memory', '256M', '--json']);
        assert(out.status === 0, `qdesk start: ${out.stderr}`);
        return JSON.parse(out.stdout);
    });
    const rowOf = (s) => monitor.locator(`tr[data-id="${s.id}"]`);
    await eventually(async () => (await Promise.all(started.map((s) => rowOf(s).locator('td').allTextContents())))
        .every((cells) => cells.some((c) => c.startsWith('running'))), 60000, 'both sessions to run in the monitor');
    await rowOf(started[0]).getByRole('button', { name: /^Stop / }).click();
    await monitor.getByRole('dialog').getByRole('button', { name: 'Stop' }).click();
    await eventually(async () => (await apiGet(monitor, `/api/v1/sessions/${started[0].id}`)).state === 'stopped',
        60000, 'the first session to stop');
    assert((await apiGet(monitor, `/api/v1/sessions/${started[1].id}`)).state === 'running',
        'stopping one session stopped another');
    await eventually(async () => await rowOf(started[0]).count() === 0, 15000,
        'the monitor to drop the stopped session from its list');
    await monitor.getByRole('button', { name: 'Stop all…' }).click();
    const dialog = monitor.getByRole('dialog');
    assert(/Stop all 1 session\?/.test(await dialog.textContent()), 'the dialog does not count one live session');
    await dialog.getByRole('button', { name: 'Stop all' }).click();
    await eventually(async () => (await apiGet(monitor, `/api/v1/sessions/${started[1].id}`)).state === 'stopped',
        60000, 'the second session to stop');
    // ended sessions leave the list (unless "show ended" is ticked); nothing is left to stop
    await eventually(async () => await rowOf(started[1]).count() === 0 &&
        await monitor.getByRole('button', { name: 'Stop all…' }).isDisabled(), 15000,
    'the monitor to drop the stopped session and disable Stop all');
    await shot(monitor, '10-monitor-stopped-all', true);
}, [10]);

check('no page raised a JavaScript error', async () => {
    assert(pageErrors.length === 0, pageErrors.join('\n'));
});

/* ---- running them ----------------------------------------------------------------- */

async function main() {
    const only = process.env.QDESK_TEST_FILTER;
    if (only && !checks.some((c) => c.name.includes(only))) {
        console.log('1..0');
        return 0;
    }
    console.log(`1..${checks.length}`);
    fs.rmSync(ARTIFACTS, { recursive: true, force: true }); // this run's pictures only
    const passed = [];
    let failed = 0;
    try {
        if (!fs.existsSync(path.join(MACHINES, `${MACHINE}.conf`)) ||
            !fs.existsSync(path.join(MACHINES, `${MACHINE}.vmlinux`)))
            throw new Error(`${MACHINES} has no ${MACHINE} machine: run \`make guest\` first`);
        if (!fs.existsSync(path.join(ROOT, 'www', 'vendor', 'novnc.js')))
            throw new Error('www/vendor/novnc.js is missing: run `make build`');
        await svc.start();
        // Signals are ours to handle: teardown() stops the VMs before the browser.
        browser = await chromium.launch({
            executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true,
            handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false,
        });
        userCtx = await browser.newContext({ viewport: { width: 1280, height: 800 },
            permissions: ['clipboard-read', 'clipboard-write'] });
        adminCtx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
        // The view-only link is opened with no login at all, on a phone.
        viewCtx = await browser.newContext({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true });
    } catch (e) {
        checks.forEach((c, i) => {
            if (i === 0) diag(`set-up failed: ${e.message}`);
            console.log(`not ok ${i + 1} - ${c.name}`);
        });
        await teardown();
        return 1;
    }
    for (const [i, c] of checks.entries()) {
        const missing = c.needs.filter((n) => !passed[n]);
        if (missing.length) {
            diag(`not run: it needs "${checks[missing[0]].name}"`);
            console.log(`not ok ${i + 1} - ${c.name}`);
            failed++;
            continue;
        }
        const t0 = Date.now();
        try {
            await c.fn();
            passed[i] = true;
            console.log(`ok ${i + 1} - ${c.name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
        } catch (e) {
            failed++;
            diag(e.stack || e.message);
            for (const [p, n] of [[portal, 'portal'], [viewer, 'viewer'], [viewOnly, 'view-only'], [monitor, 'monitor']])
                if (p && !p.isClosed()) await shot(p, `failed-${i + 1}-${n}`).catch((err) => diag(err.message));
            const log = svc.log().trim().split('\n').slice(-15);
            diag(`service log (last lines):\n${log.join('\n')}`);
            console.log(`not ok ${i + 1} - ${c.name}`);
        }
    }
    await teardown();
    return failed ? 1 : 0;
}

let tornDown = null;
function teardown() {
    tornDown ??= (async () => {
        if (browser) await browser.close().catch((e) => diag(`closing the browser: ${e.message}`));
        await svc.close().catch((e) => diag(`stopping the service: ${e.message}`));
    })();
    return tornDown;
}

// Interrupted (Ctrl-C, the runner stopping): still stop the VMs, the service and
// the browser.
for (const sig of ['SIGINT', 'SIGTERM']) {
    process.on(sig, () => {
        diag(`interrupted by ${sig}; cleaning up`);
        teardown().finally(() => process.exit(1));
    });
}

process.exitCode = await main();
