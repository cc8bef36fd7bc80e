import { ConnectError } from "@connectrpc/connect";
import type { Contract } from "../../../gen/handshake/v1/deal_pb.js";
import { contractStatusText, formatMoney } from "../../shared/format.js";
import { contractCard } from "./contract-view.js";
import { byId, h, replace } from "./dom.js";
import { loadSavedProfile, profileFields, saveProfile } from "./profile-form.js";
import { RoomSession, contractClient } from "./room-session.js";
import { RoomView } from "./room-view.js";

/*
 * The Handshake browser app: set up your agent, join a room by code or link, talk (microphone or
 * typed lines), watch the agents negotiate, sign, and follow the money; saved contracts after.
 */

/** The tab's identity: a tab is one person, so two tabs can be both sides of a deal. */
const TAB_TOKEN = "handshake.identity";
/** The last identity on this device, for the saved-contracts screen in a fresh tab. */
const DEVICE_TOKEN = "handshake.lastIdentity";
const ROOM_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

const app = byId("app");
const endpoint = { baseUrl: "" };
let current: { session: RoomSession; view: RoomView } | undefined;

/** Who this browser is: the user token and user id from the last JoinRoom. */
interface Identity {
  userToken: string;
  userId: string;
}

function identity(storage: Storage, key: string): Identity | undefined {
  try {
    const value = JSON.parse(storage.getItem(key) ?? "null") as Identity | null;
    return value && typeof value.userToken === "string" && typeof value.userId === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}

function errorText(err: unknown): string {
  return err instanceof ConnectError ? err.rawMessage : (err as Error).message;
}

function randomRoom(): string {
  const words = ["oak", "elm", "fox", "owl", "bay", "sky", "ash", "ivy", "jay", "kite"];
  const pick = () => words[Math.floor(Math.random() * words.length)] ?? "oak";
  return `${pick()}-${pick()}-${Math.floor(1000 + Math.random() * 9000)}`;
}

function showSetup(message?: string): void {
  current?.view.stop();
  current?.session.close();
  current = undefined;
  const params = new URLSearchParams(location.search);
  const profile = loadSavedProfile();
  const fields = profileFields(profile);
  const room = h("input", { name: "room", id: "room", "data-testid": "room-input", value: params.get("room") ?? "", placeholder: "e.g. oak-fox-1234", pattern: "[A-Za-z0-9_-]{1,64}", required: true });
  const invite = h("input", { name: "invite", id: "invite", "data-testid": "invite-input", value: params.get("invite") ?? "", placeholder: "optional" });
  const error = h("p", { class: "error", "data-testid": "setup-error", role: "alert" }, message ?? "");
  const join = h("button", { type: "submit", class: "primary", "data-testid": "join" }, "Join room");
  const form = h(
    "form",
    {
      class: "setup",
      "data-testid": "setup-screen",
      onsubmit: (event: Event) => {
        event.preventDefault();
        error.textContent = "";
        let edited;
        try {
          edited = fields.read();
        } catch (err) {
          error.textContent = (err as Error).message;
          return;
        }
        const roomId = room.value.trim();
        if (!ROOM_PATTERN.test(roomId)) {
          error.textContent = "A room code is 1–64 letters, digits, - or _.";
          return;
        }
        saveProfile(edited);
        join.disabled = true;
        // The AudioContext is made here, inside the click, so the browser lets it play.
        const audio = new AudioContext();
        enterRoom(roomId, invite.value.trim(), audio).catch((err: unknown) => {
          join.disabled = false;
          void audio.close();
          error.textContent = `Could not join: ${errorText(err)}`;
        });
      },
    },
    h("h2", {}, "Set up and join"),
    fields.element,
    h(
      "fieldset",
      {},
      h("legend", {}, "Room"),
      h("label", { class: "field" }, h("span", {}, "Room code"), h("div", { class: "inline" }, room, h("button", { type: "button", onclick: () => (room.value = randomRoom()) }, "New code"))),
      h("label", { class: "field" }, h("span", {}, "Invite code"), invite),
    ),
    error,
    join,
  );
  replace(app, form);
}

async function enterRoom(roomId: string, inviteCode: string, audio: AudioContext): Promise<void> {
  const profile = loadSavedProfile();
  let view: RoomView | undefined;
  const pending: Parameters<RoomView["take"]>[0][] = [];
  const session = new RoomSession(
    endpoint,
    roomId,
    profile,
    {
      onEvent: (event) => (view ? view.take(event) : pending.push(event)),
      onLink: (state) => view?.link(state),
      onPeerFormat: (format) => view?.peerAudio().setFormat(format),
      onPeerFrame: (frame) => {
        view?.peerAudio().play(frame);
        view?.countPeerFrame(session.peerFrames);
      },
    },
    { ...(identity(sessionStorage, TAB_TOKEN) ? { userToken: identity(sessionStorage, TAB_TOKEN)!.userToken } : {}), inviteCode },
  );
  await session.join();
  const me = JSON.stringify({ userToken: session.userToken, userId: session.userId } satisfies Identity);
  sessionStorage.setItem(TAB_TOKEN, me);
  localStorage.setItem(DEVICE_TOKEN, me);
  const url = new URL(location.href);
  url.search = new URLSearchParams({ room: roomId, ...(inviteCode ? { invite: inviteCode } : {}) }).toString();
  history.replaceState(null, "", url);
  view = new RoomView({
    session,
    audio,
    workletUrl: new URL("capture-worklet.js", location.href).href,
    shareLink: url.href,
    onLeave: () => {
      void audio.close();
      showSetup();
    },
  });
  for (const event of pending.splice(0)) view.take(event);
  current = { session, view };
  replace(app, view.element);
}

async function showContracts(): Promise<void> {
  const me = identity(sessionStorage, TAB_TOKEN) ?? identity(localStorage, DEVICE_TOKEN);
  const list = h("div", { class: "contract-list", "data-testid": "contracts-screen" }, h("p", { class: "muted" }, "Loading…"));
  const detail = h("div", { class: "contract-detail" });
  replace(app, h("section", { class: "contracts" }, h("h2", {}, "Saved contracts"), list, detail));
  if (!me) {
    replace(list, h("p", { class: "muted" }, "Join a room first: your contracts are kept under the identity this browser gets then."));
    return;
  }
  const client = contractClient(endpoint, () => me.userToken);
  const userId = me.userId;
  try {
    const contracts: Contract[] = [];
    let pageToken = "";
    do {
      const page = await client.listContracts({ pageSize: 50, pageToken });
      contracts.push(...page.contracts);
      pageToken = page.nextPageToken;
    } while (pageToken !== "" && contracts.length < 500);
    if (contracts.length === 0) {
      replace(list, h("p", { class: "muted" }, "No contracts yet."));
      return;
    }
    const open = (contract: Contract) =>
      replace(
        detail,
        contractCard(contract, { payments: [], holds: [], milestones: [] }, {
          userId,
          contracts: client,
          onMilestone: () => void client.getContract({ contractId: contract.id }).then((res) => res.contract && open(res.contract)),
          onError: (message) => detail.prepend(h("p", { class: "error" }, message)),
        }),
      );
    replace(
      list,
      h(
        "table",
        { class: "items" },
        h("thead", {}, h("tr", {}, h("th", {}, "Date"), h("th", {}, "Title"), h("th", {}, "Status"), h("th", { class: "num" }, "Total"))),
        h(
          "tbody",
          {},
          ...contracts.map((c) =>
            h(
              "tr",
              { class: "clickable", "data-testid": "contract-row", onclick: () => open(c) },
              h("td", {}, new Date(Number(c.createdAtMs)).toLocaleString()),
              h("td", {}, c.title),
              h("td", {}, contractStatusText(c.status)),
              h("td", { class: "num" }, c.terms ? formatMoney(c.terms.totalMinor, c.terms.currency) : ""),
            ),
          ),
        ),
      ),
    );
  } catch (err) {
    replace(list, h("p", { class: "error" }, `Could not load contracts: ${errorText(err)}`));
  }
}

byId("nav-setup").addEventListener("click", () => {
  if (current && !confirm("Leave the room?")) return;
  const session = current?.session;
  void session?.leave().catch(() => undefined);
  showSetup();
});
byId("nav-contracts").addEventListener("click", () => {
  if (current) {
    // Contracts open in a new tab so the live room keeps running.
    window.open(new URL("?view=contracts", location.href).href, "_blank");
    return;
  }
  void showContracts();
});

if (new URLSearchParams(location.search).get("view") === "contracts") void showContracts();
else showSetup();
