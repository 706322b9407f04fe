// Starts a real meshi for the tests: the binary at $MESHI_BIN (default
// ../../target/debug/meshi from the package), `serve` on a free 127.0.0.1
// port with a fresh SQLite file in a temp dir.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, existsSync, openSync, closeSync, readFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

import { MeshiClient, MeshiRest, type ClientOptions, type WebSocketConstructor } from "../src/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/test -> package root -> repo root
const packageRoot = path.resolve(here, "..", "..");

export const MESHI_BIN = path.resolve(packageRoot, process.env.MESHI_BIN ?? "../../target/debug/meshi");

export const WS = WebSocket as unknown as WebSocketConstructor;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves when `check` returns true; rejects after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Rejects when `promise` has not settled within `ms`. */
export function within<T>(what: string, promise: Promise<T>, ms = 5000): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export interface ServerOptions {
  env?: Record<string, string>;
}

/** One meshi process; restart() starts it again on the same port and database. */
export class TestServer {
  readonly dir: string;
  port = 0;
  private child: ChildProcess | null = null;
  private exited: Promise<number | null> = Promise.resolve(null);
  private logs: string[] = [];
  private starts = 0;

  constructor(private readonly options: ServerOptions = {}) {
    this.dir = mkdtempSync(path.join(tmpdir(), "meshi-ts-"));
  }

  get http(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start(): Promise<void> {
    if (!existsSync(MESHI_BIN)) {
      throw new Error(`no meshi binary at ${MESHI_BIN}: run cargo build -p meshi or set MESHI_BIN`);
    }
    if (!this.port) this.port = await freePort();
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith("MESHI_") && v !== undefined) env[k] = v;
    }
    Object.assign(env, {
      MESHI_ADDR: `127.0.0.1:${this.port}`,
      MESHI_DATABASE_URL: `sqlite://${path.join(this.dir, "meshi.db")}`,
      MESHI_AUTH_RATE_PER_MIN: "0",
      MESHI_MAX_CONNECTIONS_PER_ADDR: "0",
      MESHI_MAX_SOCKETS_PER_ADDR: "0",
      MESHI_MAX_SOCKETS_PER_USER: "0",
      MESHI_MAX_ROOMS_PER_SOCKET: "0",
      MESHI_MAX_HOSTED_ROOMS: "0",
      MESHI_ROOM_CREATE_PER_MIN: "0",
      MESHI_DRAIN_SECS: "1",
      MESHI_LOG: "warn",
      ...this.options.env,
    });
    const log = path.join(this.dir, `server-${++this.starts}.log`);
    this.logs.push(log);
    const fd = openSync(log, "w");
    const child = spawn(MESHI_BIN, ["serve"], { cwd: this.dir, env, stdio: ["ignore", fd, fd] });
    closeSync(fd);
    this.child = child;
    this.exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    await this.waitReady(15_000);
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.child?.exitCode !== null) {
        throw new Error(`meshi exited early:\n${this.log()}`);
      }
      try {
        const res = await fetch(`${this.http}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return;
      } catch {
        /* not up yet */
      }
      if (Date.now() > deadline) throw new Error(`meshi not ready within ${timeoutMs} ms:\n${this.log()}`);
      await sleep(50);
    }
  }

  /** Sends SIGTERM (the server pushes `reconnect` and closes sockets with 1012) and waits for the exit. */
  async terminate(timeoutMs = 10_000): Promise<void> {
    await this.stop("SIGTERM", timeoutMs);
  }

  async kill(): Promise<void> {
    await this.stop("SIGKILL", 5000);
  }

  private async stop(signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const done = await within(`meshi to exit after ${signal}`, this.exited.then(() => true), timeoutMs).catch(() => false);
    if (!done) {
      child.kill("SIGKILL");
      await this.exited;
    }
    this.child = null;
  }

  async restart(): Promise<void> {
    await this.kill();
    await this.start();
  }

  async dispose(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Makes an existing account an admin with `meshi admin promote`. */
  promote(handle: string): void {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      if (!k.startsWith("MESHI_") && v !== undefined) env[k] = v;
    }
    env.MESHI_DATABASE_URL = `sqlite://${path.join(this.dir, "meshi.db")}`;
    const run = spawnSync(MESHI_BIN, ["admin", "promote", handle], { cwd: this.dir, env, timeout: 20_000, encoding: "utf8" });
    if (run.status !== 0) throw new Error(`meshi admin promote failed: ${run.stdout}${run.stderr}`);
  }

  log(): string {
    return this.logs.map((l) => (existsSync(l) ? readFileSync(l, "utf8") : "")).join("\n");
  }

  rest(token?: string): MeshiRest {
    return new MeshiRest({ baseUrl: this.http, token, timeoutMs: 5000 });
  }

  client(token: string, options: Partial<ClientOptions> = {}): MeshiClient {
    return new MeshiClient({
      url: this.wsUrl,
      token,
      WebSocket: WS,
      requestTimeoutMs: 5000,
      connectTimeoutMs: 3000,
      backoff: { initialMs: 100, maxMs: 1000, retryAfterJitterMs: 200 },
      ...options,
    });
  }
}

let userCounter = 0;

/** Registers a fresh user; returns a REST client holding its token. */
export async function newUser(server: TestServer, name = "user"): Promise<{ rest: MeshiRest; token: string; id: string; handle: string }> {
  const handle = `${name}_${process.pid % 10000}_${++userCounter}`.slice(0, 32);
  const rest = server.rest();
  const { token, user } = await rest.register({ handle, password: "correct horse battery", display_name: name });
  return { rest, token, id: user.id, handle };
}

/**
 * A TCP proxy in front of the server: cut() drops every connection and
 * refuses new ones until restore(), like a network outage.
 */
export class Proxy {
  port = 0;
  private server: net.Server | null = null;
  private sockets = new Set<net.Socket>();
  private up = true;

  constructor(private readonly target: () => number) {}

  get wsUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async start(): Promise<void> {
    this.port = await freePort();
    this.server = net.createServer((client) => {
      if (!this.up) {
        client.destroy();
        return;
      }
      const upstream = net.connect(this.target(), "127.0.0.1");
      this.sockets.add(client);
      this.sockets.add(upstream);
      const drop = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on("error", drop).on("close", drop);
      upstream.on("error", drop).on("close", drop);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, "127.0.0.1", resolve));
  }

  cut(): void {
    this.up = false;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  restore(): void {
    this.up = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** Collects what a client emits for one event. */
export function collect<T>(subscribe: (push: (value: T) => void) => unknown): T[] {
  const seen: T[] = [];
  subscribe((value) => seen.push(value));
  return seen;
}
