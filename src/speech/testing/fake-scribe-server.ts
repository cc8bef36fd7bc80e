import { STATUS_CODES, createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";

/** One client session as the fake server saw it. */
export interface FakeScribeSession {
  /** The upgrade request's URL (path and query). */
  url: URL;
  headers: IncomingHttpHeaders;
  /** Every client message, parsed. */
  messages: Record<string, unknown>[];
  /** Decoded PCM of every non-empty input_audio_chunk, in order. */
  audio: Buffer[];
  /** Manual commits received (input_audio_chunk with commit true). */
  commits: number;
  closed: boolean;
  /** All audio received so far, concatenated. */
  audioBytes(): Buffer;
  send(message: Record<string, unknown>): void;
  /** Closes the socket cleanly from the server side. */
  close(code?: number, reason?: string): void;
  /** Drops the TCP connection without a close frame (a network failure). */
  drop(): void;
  /** Resolves once `check` holds; rechecked after each client message and on close. */
  until(check: () => boolean): Promise<void>;
}

/** How the fake answers a WebSocket upgrade. */
export type UpgradeAnswer = { status: number; headers?: Record<string, string> } | "accept";

/**
 * A local stand-in for wss://api.elevenlabs.io/v1/speech-to-text/realtime speaking the real
 * protocol: the xi-api-key header, the query parameters, `session_started` on connect, JSON
 * `input_audio_chunk` messages with base64 PCM, `input_error` for malformed ones. Tests script
 * transcripts and failures through the sessions it records.
 */
export class FakeScribeServer {
  readonly sessions: FakeScribeSession[] = [];
  /** Upgrade requests seen, accepted or not. */
  upgrades = 0;
  /** Decides each upgrade; default: accept when the key matches, else 401. */
  answerUpgrade: (headers: IncomingHttpHeaders) => UpgradeAnswer = (headers) =>
    headers["xi-api-key"] === this.apiKey ? "accept" : { status: 401 };
  /** Sends `session_started` on connect, as the real service does. */
  autoSessionStarted = true;

  private readonly http: Server;
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly sockets = new Set<WebSocket>();
  private readonly waiters = new Set<() => void>();

  private constructor(readonly apiKey: string) {
    this.http = createServer((_req, res) => {
      res.statusCode = 426;
      res.end();
    });
    this.http.on("upgrade", (req, socket, head) => {
      this.upgrades++;
      this.notify();
      const url = new URL(req.url ?? "/", "ws://127.0.0.1");
      const answer = url.pathname === "/v1/speech-to-text/realtime" ? this.answerUpgrade(req.headers) : { status: 404 };
      if (answer !== "accept") {
        const extra = Object.entries(answer.headers ?? {})
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join("");
        const body = JSON.stringify({ detail: { status: "rejected", message: STATUS_CODES[answer.status] } });
        socket.end(
          `HTTP/1.1 ${answer.status} ${STATUS_CODES[answer.status]}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}Connection: close\r\n\r\n${body}`,
        );
        return;
      }
      this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, url, req.headers));
    });
  }

  /** Starts a fake on 127.0.0.1 with an ephemeral port. */
  static async start(apiKey = "test-key"): Promise<FakeScribeServer> {
    const server = new FakeScribeServer(apiKey);
    await new Promise<void>((resolve) => server.http.listen(0, "127.0.0.1", resolve));
    return server;
  }

  /** The base URL to give the engine (ws://127.0.0.1:port). */
  get baseUrl(): string {
    const { port } = this.http.address() as AddressInfo;
    return `ws://127.0.0.1:${port}`;
  }

  /** Resolves with session number `index` (0-based) once it has connected. */
  async session(index: number): Promise<FakeScribeSession> {
    await this.until(() => this.sessions.length > index);
    return this.sessions[index]!;
  }

  /** Resolves once `check` holds; rechecked on every connection and message. */
  until(check: () => boolean): Promise<void> {
    return new Promise((resolve) => {
      const attempt = (): void => {
        if (check()) {
          this.waiters.delete(attempt);
          resolve();
        }
      };
      this.waiters.add(attempt);
      attempt();
    });
  }

  /** Number of sockets still open (a test ends with none). */
  get openConnections(): number {
    return this.sockets.size;
  }

  async close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  private notify(): void {
    for (const w of [...this.waiters]) w();
  }

  private accept(ws: WebSocket, url: URL, headers: IncomingHttpHeaders): void {
    this.sockets.add(ws);
    const server = this;
    const session: FakeScribeSession = {
      url,
      headers,
      messages: [],
      audio: [],
      commits: 0,
      closed: false,
      audioBytes: () => Buffer.concat(session.audio),
      send: (message) => ws.send(JSON.stringify(message)),
      close: (code = 1000, reason = "") => ws.close(code, reason),
      drop: () => ws.terminate(),
      until: (check) => server.until(check),
    };
    this.sessions.push(session);
    ws.on("message", (data, isBinary) => {
      const reject = (error: string): void => {
        ws.send(JSON.stringify({ message_type: "input_error", error }));
        ws.close(1008, "input_error");
      };
      if (isBinary) return reject("binary frames are not accepted");
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(data.toString()) as Record<string, unknown>;
      } catch {
        return reject("invalid JSON");
      }
      session.messages.push(message);
      if (message.message_type !== "input_audio_chunk" || typeof message.audio_base_64 !== "string") {
        return reject("expected input_audio_chunk with audio_base_64");
      }
      if (message.sample_rate !== undefined && message.sample_rate !== 16000) return reject("sample_rate does not match audio_format");
      const pcm = Buffer.from(message.audio_base_64, "base64");
      if (pcm.length % 2 !== 0) return reject("PCM16 audio must have an even byte count");
      if (pcm.length > 0) session.audio.push(pcm);
      if (message.commit === true) session.commits++;
      this.notify();
    });
    ws.on("close", () => {
      session.closed = true;
      this.sockets.delete(ws);
      this.notify();
    });
    if (this.autoSessionStarted) {
      session.send({
        message_type: "session_started",
        session_id: `sess_${this.sessions.length}`,
        config: {
          sample_rate: 16000,
          audio_format: url.searchParams.get("audio_format"),
          language_code: url.searchParams.get("language_code"),
          commit_strategy: url.searchParams.get("commit_strategy"),
          model_id: url.searchParams.get("model_id"),
          include_timestamps: url.searchParams.get("include_timestamps") === "true",
        },
      });
    }
    this.notify();
  }
}

/** A committed_transcript_with_timestamps message for `words` [text, start s, end s], with spacing entries. */
export function timestamped(words: [string, number, number][], extra: Record<string, unknown> = {}): Record<string, unknown> {
  const entries: Record<string, unknown>[] = [];
  words.forEach(([text, start, end], i) => {
    if (i > 0) entries.push({ text: " ", start: words[i - 1]![2], end: start, type: "spacing" });
    entries.push({ text, start, end, type: "word", logprob: -0.05 });
  });
  return { message_type: "committed_transcript_with_timestamps", text: words.map((w) => w[0]).join(" "), language_code: "en", words: entries, ...extra };
}
