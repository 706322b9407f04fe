// Starts the real meshi binary on a free loopback port with a fresh SQLite
// file, and makes accounts the way an operator does.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(import.meta.dirname, '..', '..');
// MESHI_BIN is relative to the repository root (or absolute).
export const BIN = path.resolve(ROOT, process.env.MESHI_BIN || 'target/debug/meshi');

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

export async function startServer(extraEnv = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshi-web-'));
  const port = await freePort();
  const env = {
    ...process.env,
    MESHI_ADDR: `127.0.0.1:${port}`,
    MESHI_DATABASE_URL: `sqlite://${path.join(dir, 'db')}`,
    MESHI_AUTH_RATE_PER_MIN: '0',
    MESHI_MAX_SOCKETS_PER_ADDR: '0',
    MESHI_MAX_SOCKETS_PER_USER: '0',
    MESHI_MAX_CONNECTIONS_PER_ADDR: '0',
    MESHI_MAX_ROOMS_PER_SOCKET: '0',
    MESHI_MAX_HOSTED_ROOMS: '0',
    MESHI_ROOM_CREATE_PER_MIN: '0',
    MESHI_RATE_PER_SEC: '1000',
    MESHI_RATE_BURST: '1000',
    MESHI_ADMIN_HANDLES: 'root',
    MESHI_LOG: 'warn',
    MESHI_DRAIN_SECS: '1',
    MESHI_RECONNECT_AFTER_MS: '500',
    ...extraEnv,
  };
  const adminPassword = 'root password 1';
  const made = spawnSync(BIN, ['admin', 'create', 'root'], { env, input: `${adminPassword}\n`, timeout: 30000 });
  if (made.status !== 0) throw new Error(`admin create with ${BIN} failed: ${made.error || made.stderr}`);
  const base = `http://127.0.0.1:${port}`;
  let child;
  async function launch() {
    child = spawn(BIN, ['serve'], { env, stdio: ['ignore', 'inherit', 'inherit'] });
    const deadline = Date.now() + 30000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`meshi exited with ${child.exitCode}`);
      try {
        const r = await fetch(`${base}/healthz`);
        if (r.ok) return;
      } catch { /* not yet */ }
      if (Date.now() > deadline) { child.kill('SIGKILL'); throw new Error('meshi never became healthy'); }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  async function halt() {
    if (child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 15000))]);
    if (child.exitCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }
  await launch();
  async function call(method, p, token, body) {
    const r = await fetch(`${base}/api/v1${p}`, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(10000),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : null;
  }
  return {
    base,
    call,
    adminToken: async () => (await call('POST', '/auth/login', null, { handle: 'root', password: adminPassword })).token,
    /** Stops the server the way an operator does (SIGTERM: sockets get
     * `reconnect`, then close with 1012), waits `downMs`, starts it again
     * on the same port and database. */
    async restart(downMs = 0, whileDown = async () => {}) {
      await halt();
      await whileDown();
      await new Promise((r) => setTimeout(r, downMs));
      await launch();
    },
    async stop() {
      await halt();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/// Headless Chromium from the distribution's package (`CHROMIUM` names
/// another binary); never a browser of Playwright's own.
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox'],
    timeout: 30000,
  });
}
