import { mkdir, readFile, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import { create, toJson, toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import { PaymentSetupSchema, PaymentsService, type PaymentSetup } from "../../gen/handshake/v1/payments_service_pb.js";
import { BalanceSchema } from "../../gen/handshake/v1/money_pb.js";
import { ContractSchema, MilestoneSchema, type Contract } from "../../gen/handshake/v1/deal_pb.js";
import { ApprovalStatus, PanelEventSchema, type ApprovalRequest } from "../../gen/handshake/v1/events_pb.js";
import { loadDialogue, type DialogueLine, type Speaker } from "./dialogue.js";
import { contractStatusText, describeEvent, formatMoney, parseMoney } from "../shared/format.js";
import { DealFailedError, ParticipantClosedError, contractTextHash, createParticipant, type Participant } from "./participant.js";
import { ProfileError, buildProfile } from "./profile.js";
import { balanceLines, contractDetail, dealSummary } from "./summary.js";
import { readPcm16Wav } from "./wav.js";
import { WavFormatError } from "../shared/wav.js";

/** Where the CLI writes and reads; injected so tests can run it in-process. */
export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** Lines typed here are sent as device transcripts by `join` (when no --wav or --dialogue). */
  stdin?: NodeJS.ReadableStream;
  env: Record<string, string | undefined>;
  /** Aborts the command (Ctrl-C). */
  signal?: AbortSignal;
}

/** Exit codes: 0 done, 1 failed, 2 bad usage, 124 timed out. */
export const EXIT = { ok: 0, failed: 1, usage: 2, timeout: 124 } as const;

/**
 * What `join` saves so later joins and commands act as the same person: the user token (which
 * names the user and reaches their saved contracts), who that is, and the last room joined.
 */
export interface CliState {
  server: string;
  roomId: string;
  userId: string;
  userToken: string;
  /** The display name last joined with; a later join without --name or --profile reuses it. */
  displayName: string;
  savedAtMs: number;
}

const USAGE = `handshake participant — join a Handshake room from the terminal

usage: node --import tsx clients/cli/main.ts [command] [options]

commands:
  join (default)                          join --room and stay until Ctrl-C (or --until-complete)
  contracts                               list your saved contracts
  contract <id>                           show one contract, its text and money
  milestone confirm <contract> <milestone>
  milestone propose <contract> <milestone> <amount>    (provider; decimal, e.g. 65.00)
  milestone approve <contract> <milestone> <amount>    (client; the proposed amount)
  milestone release <contract> <milestone>             (provider)
  balances                                your ledger balances
  stripe onboard                          (to be paid) prints your Stripe onboarding link
  stripe card                             (to pay) prints a Stripe page that saves your card
  stripe status [--refresh]               what Stripe lets you do (--refresh: ask Stripe again)
  stripe retry <contract> <line item> [pm_…]   try a declined payment again (your own saved card)

connection:   --server URL (default $HANDSHAKE_SERVER or http://127.0.0.1:8080)
              --token USER_TOKEN (default $HANDSHAKE_TOKEN, else the --state file)
              --state FILE (default $HANDSHAKE_STATE or ~/.handshake/cli-state.json): who you are
                (user id, name, user token); joining again with it comes back as the same user
join:         --room ID  --invite CODE  --keyword WORD
profile:      --profile file.json  --name NAME  --role provider|client  --trade TRADE
              --currency GBP  --max-auto-approve 250  --style aggressive|balanced|conservative
              --escrow never|above-threshold|always  --escrow-threshold 100
              --rate description:amount[:hour|day|job|item] (repeatable)  --experience YEARS
              --instructions TEXT
speaking:     --wav FILE (streamed in real time)  --dialogue FILE [--as provider|client] [--audio]
              otherwise each line typed on stdin is sent as a transcript, except these commands:
                /approve [id]      let your agent commit to terms above your max auto-approve
                /reject [id]       refuse them (your agent walks away)
                /sign              sign the room's contract
                /decline REASON    decline the room's contract instead of signing it
behaviour:    --auto-sign  --approvals ask|approve|decline (default ask: prompts on the terminal)
              --until-complete  --timeout SECONDS (default 300)  --json
`;

const OPTIONS = {
  server: { type: "string" },
  token: { type: "string" },
  state: { type: "string" },
  room: { type: "string" },
  invite: { type: "string" },
  keyword: { type: "string" },
  profile: { type: "string" },
  name: { type: "string" },
  role: { type: "string" },
  trade: { type: "string" },
  currency: { type: "string" },
  "max-auto-approve": { type: "string" },
  style: { type: "string" },
  escrow: { type: "string" },
  "escrow-threshold": { type: "string" },
  rate: { type: "string", multiple: true },
  experience: { type: "string" },
  instructions: { type: "string" },
  wav: { type: "string" },
  dialogue: { type: "string" },
  as: { type: "string" },
  audio: { type: "boolean" },
  "auto-sign": { type: "boolean" },
  approvals: { type: "string" },
  "until-complete": { type: "boolean" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  refresh: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

class UsageError extends Error {
  override readonly name = "UsageError";
}

/** One line saying what Stripe lets this person do. */
function setupLine(setup: PaymentSetup): string {
  const paid = !setup.payeeAccountCreated
    ? "not set up to be paid (stripe onboard)"
    : setup.chargesEnabled
      ? `can be paid${setup.payoutsEnabled ? ", payouts on" : ", payouts not enabled yet"}`
      : "Stripe onboarding not finished (stripe onboard)";
  return `${paid}; ${setup.cardSaved ? "a card is saved to pay with" : "no card saved to pay with (stripe card)"}`;
}

/** A file given on the command line that cannot be used; exit 2 like bad usage, without the --help hint. */
class InputError extends Error {
  override readonly name = "InputError";
}

/** Runs one CLI command with `argv` (without node and script); resolves with the exit code. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const out = (line: string) => io.stdout.write(line + "\n");
  const err = (line: string) => io.stderr.write(line + "\n");
  let parsed;
  try {
    parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    err((e as Error).message);
    err(USAGE);
    return EXIT.usage;
  }
  const { values, positionals } = parsed;
  if (values.help) {
    out(USAGE);
    return EXIT.ok;
  }
  const server = (values.server ?? io.env.HANDSHAKE_SERVER ?? "http://127.0.0.1:8080").replace(/\/+$/, "");
  const statePath = values.state ?? io.env.HANDSHAKE_STATE ?? path.join(os.homedir(), ".handshake", "cli-state.json");
  const [command = "join", ...args] = positionals;
  // The server a failure is about: contract commands may take it from the state file.
  let target = server;
  try {
    switch (command) {
      case "join":
        return await join();
      case "contracts":
      case "contract":
      case "milestone":
      case "balances":
      case "stripe":
        return await contractCommand(command, args);
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (e) {
    if (e instanceof UsageError || e instanceof ProfileError || e instanceof InputError) {
      err(e.message);
      if (e instanceof UsageError) err("run with --help for usage");
      return EXIT.usage;
    }
    if (e instanceof ConnectError) {
      err(explainConnectError(e, target, command === "join" ? values.room : undefined));
      return EXIT.failed;
    }
    err((e as Error).message);
    return EXIT.failed;
  }

  async function join(): Promise<number> {
    if (!values.room) throw new UsageError("--room is required to join");
    // A recording that cannot be sent is found before anyone is joined to a room.
    const wav = values.wav ? await checkWav(values.wav) : undefined;
    const saved = await loadState(statePath);
    // A saved token is only good on the server that signed it.
    const reuse = saved !== undefined && saved.userToken !== "" && sameServer(saved.server, server);
    if (saved && !reuse && !values.token && !io.env.HANDSHAKE_TOKEN) {
      err(`! ${statePath} is for ${saved.server}, not ${server}: joining as a new user (it will be overwritten)`);
    }
    const userToken = values.token ?? io.env.HANDSHAKE_TOKEN ?? (reuse ? saved.userToken : undefined);
    const name = values.name ?? (values.profile === undefined && reuse && saved.displayName ? saved.displayName : undefined);
    const profile = await buildProfile({
      ...(values.profile !== undefined && { profile: values.profile }),
      ...(name !== undefined && { name }),
      ...(values.role !== undefined && { role: values.role }),
      ...(values.trade !== undefined && { trade: values.trade }),
      ...(values.currency !== undefined && { currency: values.currency }),
      ...(values["max-auto-approve"] !== undefined && { maxAutoApprove: values["max-auto-approve"] }),
      ...(values.style !== undefined && { style: values.style }),
      ...(values.escrow !== undefined && { escrow: values.escrow }),
      ...(values["escrow-threshold"] !== undefined && { escrowThreshold: values["escrow-threshold"] }),
      ...(values.experience !== undefined && { experience: values.experience }),
      ...(values.instructions !== undefined && { instructions: values.instructions }),
      ...(values.rate !== undefined && { rates: values.rate }),
    });
    // Two people sharing one state file (the default one, say) would make the second join as the
    // first: a different name with a saved identity is refused rather than taken over silently.
    if (userToken !== undefined && userToken === saved?.userToken && saved.displayName !== "" && profile.displayName !== saved.displayName) {
      throw new InputError(
        `${statePath} is ${saved.displayName}'s (${saved.userId}); joining as ${profile.displayName} with it would be joining as them. ` +
          `Give ${profile.displayName} their own --state FILE, or join as ${saved.displayName}.`,
      );
    }
    const as = values.as;
    if (as !== undefined && as !== "provider" && as !== "client") throw new UsageError("--as must be provider or client");
    const timeoutMs = seconds(values.timeout ?? "300") * 1000;
    const dialogue = values.dialogue ? await loadDialogue(values.dialogue) : undefined;
    if (values.audio && !dialogue) throw new UsageError("--audio needs --dialogue (its lines name their WAV files)");
    const audioFor = values.audio && dialogue && values.dialogue ? await dialogueAudio(dialogue, values.dialogue) : undefined;
    const approvals = values.approvals ?? "ask";
    if (approvals !== "ask" && approvals !== "approve" && approvals !== "decline") throw new UsageError("--approvals must be ask, approve or decline");

    // Once the outcome is printed, events from leaving the room are not.
    let finished = false;
    const participant = createParticipant({
      serverUrl: server,
      roomId: values.room,
      profile,
      ...(userToken !== undefined && { userToken }),
      ...(values.invite !== undefined && { inviteCode: values.invite }),
      autoSign: values["auto-sign"] === true,
      ...(approvals !== "ask" && { autoApproval: approvals }),
      onEvent: (event, p) => {
        if (!finished) out(values.json ? toJsonString(PanelEventSchema, event) : describeEvent(event, (id) => p.nameOf(id)));
        if (approvals === "ask" && event.event.case === "approvalRequest") promptApproval(event.event.value, p);
      },
      onNotice: (message) => err(`! ${message}`),
    });
    const stop = new AbortController();
    const timer = values["until-complete"] ? setTimeout(() => stop.abort(new TimeoutError()), timeoutMs) : undefined;
    const onAbort = () => stop.abort(io.signal?.reason);
    io.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      let joined;
      try {
        joined = await participant.join();
      } catch (e) {
        if (userToken !== undefined && e instanceof ConnectError && e.code === Code.Unauthenticated) {
          const from = values.token !== undefined ? "--token" : io.env.HANDSHAKE_TOKEN ? "HANDSHAKE_TOKEN" : statePath;
          throw new Error(`the user token from ${from} was refused (${e.rawMessage}); join with another --state file to start as a new user`);
        }
        throw e;
      }
      const again = saved !== undefined && saved.userId === joined.userId;
      err(`joined room ${values.room} as ${profile.displayName} (${joined.userId}${again ? `, the same user as before, from ${statePath}` : ""})`);
      const state: CliState = {
        server,
        roomId: values.room,
        userId: joined.userId,
        userToken: joined.userToken,
        displayName: profile.displayName,
        savedAtMs: Date.now(),
      };
      await saveState(statePath, state).then(
        () => err(`user token saved to ${statePath}`),
        (e: unknown) => err(`! could not save ${statePath}: ${(e as Error).message}`),
      );
      if (values.keyword) await participant.room.setTriggerKeyword({ roomId: values.room, keyword: values.keyword });
      const speaking = speak(participant, { dialogue, as, audioFor, wav }, stop.signal);
      if (!values["until-complete"]) {
        await Promise.race([speaking, abortPromise(stop.signal)]).catch(() => undefined);
        await abortPromise(stop.signal).catch(() => undefined);
        return EXIT.ok;
      }
      // A failure while speaking (e.g. the room went away) ends the wait too.
      const speakingFailed = speaking.then(
        () => new Promise<never>(() => undefined),
        (e: unknown) => Promise.reject(e instanceof Error ? e : new Error(String(e))),
      );
      const outcome = await Promise.race([participant.waitForDeal({ signal: stop.signal }), speakingFailed]);
      finished = true;
      if (values.json) {
        out(
          JSON.stringify({
            deal: {
              contract: toJson(ContractSchema, outcome.contract),
              complete: true,
            },
          }),
        );
      } else {
        out("");
        for (const line of dealSummary(outcome, (id) => participant.nameOf(id))) out(line);
      }
      return EXIT.ok;
    } catch (e) {
      if (stop.signal.reason instanceof TimeoutError) {
        err(`timed out after ${timeoutMs / 1000} s waiting for the deal (${describeProgress(participant)})`);
        return EXIT.timeout;
      }
      if (e instanceof DealFailedError) {
        err(`deal failed: ${e.message}`);
        return EXIT.failed;
      }
      if (e instanceof ParticipantClosedError && io.signal?.aborted) return EXIT.ok;
      throw e;
    } finally {
      clearTimeout(timer);
      io.signal?.removeEventListener("abort", onAbort);
      await participant.leave();
    }
  }

  async function contractCommand(name: string, rest: string[]): Promise<number> {
    const token = values.token ?? io.env.HANDSHAKE_TOKEN ?? (await loadState(statePath))?.userToken;
    if (!token) throw new UsageError(`no user token: join first, or pass --token (looked in ${statePath})`);
    const stateServer = (values.server ?? io.env.HANDSHAKE_SERVER ?? (await loadState(statePath))?.server ?? server).replace(/\/+$/, "");
    const auth: Interceptor = (next) => (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    target = stateServer;
    const contracts = createClient(ContractService, createGrpcTransport({ baseUrl: stateServer, interceptors: [auth] }));
    const nameOfIn = (contract: Contract | undefined) => (userId: string) =>
      contract?.parties.find((p) => p.userId === userId)?.displayName ?? userId;
    switch (name) {
      case "contracts": {
        const list: Contract[] = [];
        let pageToken = "";
        do {
          const page = await contracts.listContracts({ pageSize: 100, pageToken });
          list.push(...page.contracts);
          pageToken = page.nextPageToken;
        } while (pageToken !== "");
        if (values.json) for (const c of list) out(toJsonString(ContractSchema, c));
        else if (list.length === 0) out("no contracts yet");
        else
          for (const c of list) {
            const total = c.terms ? formatMoney(c.terms.totalMinor, c.terms.currency) : "";
            out(`${c.id}  ${new Date(Number(c.createdAtMs)).toISOString()}  ${contractStatusText(c.status).padEnd(20)} ${total.padStart(12)}  ${c.title}`);
          }
        return EXIT.ok;
      }
      case "contract": {
        const [id] = rest;
        if (!id) throw new UsageError("usage: contract <contract id>");
        const { contract } = await contracts.getContract({ contractId: id });
        if (!contract) throw new Error("GetContract returned no contract");
        if (values.json) out(toJsonString(ContractSchema, contract));
        else for (const line of contractDetail(contract, nameOfIn(contract), contractTextHash(contract.text) === contract.textSha256)) out(line);
        return EXIT.ok;
      }
      case "balances": {
        const { balances } = await contracts.getBalances({});
        if (values.json) for (const b of balances) out(toJsonString(BalanceSchema, b));
        else for (const line of balanceLines("you", balances)) out(line.trim());
        return EXIT.ok;
      }
      case "milestone": {
        const [action, contractId, milestoneId, amount] = rest;
        if (!action || !contractId || !milestoneId) throw new UsageError("usage: milestone confirm|propose|approve|release <contract id> <milestone id> [amount]");
        const ids = { contractId, milestoneId };
        let milestone;
        switch (action) {
          case "confirm":
            milestone = (await contracts.confirmMilestone(ids)).milestone;
            break;
          case "release":
            milestone = (await contracts.releaseEscrow(ids)).milestone;
            break;
          case "propose":
          case "approve": {
            if (!amount) throw new UsageError(`usage: milestone ${action} <contract id> <milestone id> <amount>`);
            const { contract } = await contracts.getContract({ contractId });
            const currency = contract?.terms?.currency ?? "GBP";
            let amountMinor: bigint;
            try {
              amountMinor = parseMoney(amount, currency);
            } catch (e) {
              throw new UsageError((e as Error).message);
            }
            milestone =
              action === "propose"
                ? (await contracts.proposeMilestoneAmount({ ...ids, amountMinor })).milestone
                : (await contracts.approveMilestoneAmount({ ...ids, amountMinor })).milestone;
            break;
          }
          default:
            throw new UsageError(`unknown milestone action "${action}"`);
        }
        if (!milestone) throw new Error("the server returned no milestone");
        if (values.json) out(toJsonString(MilestoneSchema, milestone));
        else
          out(describeEvent(create(PanelEventSchema, { event: { case: "milestone", value: milestone } }), (id) => id).replace(/^\[0\] /, ""));
        return EXIT.ok;
      }
    }
    if (name === "stripe") return stripeCommand(createClient(PaymentsService, createGrpcTransport({ baseUrl: stateServer, interceptors: [auth] })), rest);
    throw new UsageError(`unknown command "${name}"`);
  }

  /** Stripe setup from the terminal: hosted pages to open in a browser, and retries. */
  async function stripeCommand(payments: ReturnType<typeof createClient<typeof PaymentsService>>, rest: string[]): Promise<number> {
    const [action, contractId, lineItemId, paymentMethodId = ""] = rest;
    const show = (setup: PaymentSetup | undefined) => {
      if (!setup) return;
      if (values.json) out(toJsonString(PaymentSetupSchema, setup));
      else out(setupLine(setup));
    };
    switch (action) {
      case "onboard": {
        const link = await payments.startPayeeOnboarding({});
        out(`open this link to connect your Stripe account (valid until ${new Date(Number(link.expiresAtMs)).toISOString()}, once):`);
        out(link.url);
        return EXIT.ok;
      }
      case "card": {
        const page = await payments.startCardSetup({ hosted: true });
        out("open this Stripe page to save the card you pay with:");
        out(page.hostedUrl);
        return EXIT.ok;
      }
      case "status":
        show((await payments.getPaymentSetup({ refresh: values.refresh ?? false })).setup);
        return EXIT.ok;
      case "retry": {
        if (!contractId || !lineItemId) throw new UsageError("usage: stripe retry <contract id> <line item id> [payment method id]");
        const { contract } = await payments.retryPayment({ contractId, lineItemId, paymentMethodId });
        if (!contract) throw new Error("RetryPayment returned no contract");
        if (values.json) out(toJsonString(ContractSchema, contract));
        else out(`contract ${contract.id}: ${contractStatusText(contract.status)}`);
        return EXIT.ok;
      }
      default:
        throw new UsageError("usage: stripe onboard|card|status|retry");
    }
  }

  async function speak(
    participant: Participant,
    what: { dialogue: DialogueLine[] | undefined; as: Speaker | undefined; audioFor: ((line: DialogueLine) => Promise<Uint8Array>) | undefined; wav: Uint8Array | undefined },
    signal: AbortSignal,
  ): Promise<void> {
    if (what.wav) {
      const frames = await participant.streamWav(what.wav, { signal });
      err(`streamed ${frames} frames of audio`);
    }
    if (what.dialogue) {
      await participant.runDialogue(what.dialogue, { ...(what.as && { as: what.as }), signal, ...(what.audioFor && { audioFor: what.audioFor }) });
      err("dialogue finished");
      return;
    }
    if (!what.wav && io.stdin) {
      const lines = createInterface({ input: io.stdin, terminal: false });
      signal.addEventListener("abort", () => lines.close(), { once: true });
      for await (const line of lines) {
        const text = line.trim();
        if (text === "") continue;
        if (text.startsWith("/")) await typedCommand(participant, text);
        else participant.say(text);
      }
    }
  }

  /** Asks the person on the terminal when their agent needs them (terms above their limit). */
  function promptApproval(request: ApprovalRequest, participant: Participant): void {
    if (request.status !== ApprovalStatus.PENDING || request.userId !== participant.userId) return;
    const limit = formatMoney(request.limitMinor, request.currency);
    err(`? your agent asks: ${request.summary}, above your auto-approve limit of ${limit}. Type /approve or /reject (${request.id})`);
  }

  /** A command typed during `join`; its failures are reported and the session goes on. */
  async function typedCommand(participant: Participant, line: string): Promise<void> {
    const [command = "", ...words] = line.slice(1).split(/\s+/);
    const rest = words.join(" ").trim();
    try {
      switch (command) {
        case "approve":
        case "reject": {
          const pending = participant.pendingApprovals();
          const request = rest ? pending.find((a) => a.id === rest) ?? { id: rest } : pending.at(-1);
          if (!request) {
            err("! no approval request is waiting for you");
            return;
          }
          const answered = await participant.answerApproval(request.id, command === "approve");
          err(`${command === "approve" ? "approved" : "rejected"}: ${answered.summary}`);
          return;
        }
        case "sign":
        case "decline": {
          const contract = participant.openContract();
          if (!contract) {
            err("! no contract is waiting for signatures");
            return;
          }
          if (command === "sign") {
            await participant.sign(contract);
            err(`signed contract ${contract.id}`);
            return;
          }
          if (!rest) {
            err("! usage: /decline REASON (say why; the other party sees it)");
            return;
          }
          await participant.declineContract(contract.id, rest);
          err(`declined contract ${contract.id}`);
          return;
        }
        default:
          err(`! unknown command /${command}: /approve, /reject, /sign or /decline REASON`);
      }
    } catch (e) {
      err(`! ${e instanceof ConnectError ? `server said ${Code[e.code] ?? e.code}: ${e.rawMessage}` : (e as Error).message}`);
    }
  }
}

/** Resolves each dialogue line's WAV relative to the dialogue file; fails early when one is missing. */
async function dialogueAudio(lines: DialogueLine[], dialogueFile: string): Promise<(line: DialogueLine) => Promise<Uint8Array>> {
  const dir = path.dirname(dialogueFile);
  const files = new Map<DialogueLine, Uint8Array>();
  for (const [index, line] of lines.entries()) {
    if (!line.audio) throw new Error(`--audio: line ${index + 1} of ${dialogueFile} names no "audio" WAV file`);
    const file = path.resolve(dir, line.audio);
    try {
      files.set(line, await readFile(file));
    } catch {
      throw new Error(`--audio: ${file} (line ${index + 1}) is missing; the speech fixtures under test/fixtures/audio/ are needed`);
    }
  }
  return (line) => Promise.resolve(files.get(line) ?? new Uint8Array());
}

/** Connection failures that mean nothing is listening at the URL (or it cannot be reached). */
const NO_SERVER = /ECONNREFUSED|ENOTFOUND|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN/;

/**
 * Says what a refused call means for the person at the terminal: no server at the URL, a full
 * room (when a seat frees), or else the server's own code and message.
 */
export function explainConnectError(e: ConnectError, server: string, roomId?: string): string {
  const cause = (e.cause as { code?: unknown } | undefined)?.code;
  if (e.code === Code.Unavailable && (NO_SERVER.test(e.rawMessage) || (typeof cause === "string" && NO_SERVER.test(cause)))) {
    return `no server at ${server} — start it with \`npm start\` or set HANDSHAKE_SERVER`;
  }
  if (e.code === Code.ResourceExhausted && /room is full/i.test(e.rawMessage)) {
    return (
      `room ${roomId ?? ""} is full (server said: ${e.rawMessage}). A room seats two people; a seat frees when one of them ` +
      `leaves, or when their connection has been gone for the server's LEAVE_GRACE_MS (30 s by default). ` +
      `Try again then, or pick another --room.`
    );
  }
  if (e.code === Code.ResourceExhausted && /limit of \d+ rooms/.test(e.rawMessage)) {
    return `server said ResourceExhausted: ${e.rawMessage}. A room frees when its last person leaves; try again in a minute.`;
  }
  return `server said ${Code[e.code] ?? e.code}: ${e.rawMessage}`;
}

/** Reads `file` for --wav and checks it is a PCM WAV the participant can stream, with sound in it. */
async function checkWav(file: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new InputError(`--wav ${file}: ${code === "ENOENT" ? "no such file" : (e as Error).message}`);
  }
  let audio;
  try {
    audio = readPcm16Wav(bytes);
  } catch (e) {
    if (!(e instanceof WavFormatError)) throw e;
    throw new InputError(
      `--wav ${file} is not a WAV the CLI can send (${e.message}); it needs 16-bit PCM at 1–192 kHz, e.g. \`sox IN -b 16 -r 16000 -c 1 OUT.wav\``,
    );
  }
  if (audio.samples.length < audio.channels) throw new InputError(`--wav ${file} holds no audio (its data chunk is empty)`);
  return bytes;
}

/** Whether two server URLs name the same server (a trailing slash or letter case aside). */
function sameServer(a: string, b: string): boolean {
  return a.replace(/\/+$/, "").toLowerCase() === b.replace(/\/+$/, "").toLowerCase();
}

class TimeoutError extends Error {
  override readonly name = "TimeoutError";
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--timeout must be a positive number of seconds (got "${value}")`);
  return n;
}

function abortPromise(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    else signal.addEventListener("abort", () => reject(signal.reason), { once: true });
  });
}

function describeProgress(participant: Participant): string {
  const progress = participant.progress();
  if (progress.state === "failed") return progress.reason;
  const last = [...participant.history].reverse().find((e) => e.event.case === "contract" || e.event.case === "negotiation" || e.event.case === "trigger");
  return last ? `last: ${describeEvent(last, (id) => participant.nameOf(id))}` : "no negotiation started";
}

/** The state file's contents, or undefined when it is missing or unreadable (older files lack displayName). */
export async function loadState(file: string): Promise<CliState | undefined> {
  try {
    const state = JSON.parse(await readFile(file, "utf8")) as Partial<CliState>;
    if (typeof state.userToken !== "string" || typeof state.server !== "string") return undefined;
    return { roomId: "", userId: "", displayName: "", savedAtMs: 0, ...state } as CliState;
  } catch {
    return undefined;
  }
}

async function saveState(file: string, state: CliState): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  // The file holds a bearer token: readable by its owner only.
  await writeFile(file, JSON.stringify(state, null, 2) + "\n", { mode: 0o600 });
}
