import { ConnectError } from "@connectrpc/connect";
import { ContractStatus, type Contract } from "../../../gen/handshake/v1/deal_pb.js";
import { contractStatusText, sideWords } from "../../shared/format.js";
import { balancesView } from "./balances.js";
import { amountCell, contractCard, settledTotalOf } from "./contract-view.js";
import { byId, h, replace } from "./dom.js";
import { loadSavedProfile, profileFields, saveProfile } from "./profile-form.js";
import { RoomSession, contractClient } from "./room-session.js";
import { RoomView } from "./room-view.js";
import { createPaymentActions, stripeSettings } from "./stripe-setup.js";

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

function showSetup(message?: string): void {
  current?.view.stop();
  current?.session.close();
  current = undefined;
  const params = new URLSearchParams(location.search);
  const profile = loadSavedProfile();
  const fields = profileFields(profile);
  // The `v`-flag pattern the browser compiles needs the "-" escaped inside the class.
  const room = h("input", { name: "room", id: "room", "data-testid": "room-input", value: params.get("room") ?? "", placeholder: "e.g. kx7p-q2m9", pattern: "[A-Za-z0-9_\\-]{1,64}", autocomplete: "off", spellcheck: "false" });
  const invite = h("input", { name: "invite", id: "invite", "data-testid": "invite-input", value: params.get("invite") ?? "", placeholder: "only for invite-only rooms" });
  const error = h("p", { class: "error", "data-testid": "setup-error", role: "alert" }, message ?? "");
  const join = h("button", { type: "submit", class: "primary", "data-testid": "join" }, "Join room");
  const newRoom = h("button", { type: "submit", value: "new", "data-testid": "new-room" }, "New room");
  const settings = h(
    "details",
    { class: "settings", "data-testid": "settings" },
    h("summary", {}, "Settings", h("small", {}, " — your trade, rates, limits and escrow (defaults are fine)")),
    fields.settings,
    h("label", { class: "field" }, h("span", {}, "Invite code"), invite),
    stripeSettings(endpoint, () => (identity(sessionStorage, TAB_TOKEN) ?? identity(localStorage, DEVICE_TOKEN))?.userToken),
  );
  const form = h(
    "form",
    {
      class: "setup",
      "data-testid": "setup-screen",
      onsubmit: (event: Event) => {
        event.preventDefault();
        error.textContent = "";
        // "New room" leaves the code empty: the server picks an unguessable one.
        const fresh = (event as SubmitEvent).submitter === newRoom;
        let edited;
        try {
          edited = fields.read();
        } catch (err) {
          error.textContent = (err as Error).message;
          return;
        }
        const roomId = fresh ? "" : room.value.trim();
        if (!fresh && !ROOM_PATTERN.test(roomId)) {
          error.textContent = roomId === "" ? "Type the room code you were given, or start a new room." : "A room code is 1–64 letters, digits, - or _.";
          room.focus();
          return;
        }
        saveProfile(edited);
        join.disabled = newRoom.disabled = true;
        // The AudioContext is made here, inside the click, so the browser lets it play.
        const audio = new AudioContext();
        enterRoom(roomId, invite.value.trim(), audio).catch((err: unknown) => {
          join.disabled = newRoom.disabled = false;
          void audio.close();
          error.textContent = `Could not join: ${errorText(err)}`;
        });
      },
    },
    h("h2", {}, "Join a deal"),
    fields.name,
    h("label", { class: "field" }, h("span", {}, "Room code"), room),
    fields.role,
    settings,
    error,
    h("div", { class: "actions" }, join, h("span", { class: "muted" }, "or"), newRoom),
  );
  replace(app, form);
  // The saved name is this device's last person; if another tab is in a room as them, this tab is someone else.
  const nameInput = form.querySelector<HTMLInputElement>("#profile-name");
  const nameHint = h("small", { class: "hint", "data-testid": "name-hint", role: "status" });
  nameInput?.closest("label")?.after(nameHint);
  const onName = (event: MessageEvent<TabMessage>) => {
    if (event.data.kind !== "name" || !nameInput || !form.isConnected || event.data.displayName === "" || event.data.displayName !== nameInput.value.trim()) return;
    nameHint.textContent = `${event.data.displayName} is already in a room in another tab. Type this person’s name and side.`;
    nameInput.value = "";
    form.querySelectorAll<HTMLInputElement>('input[name="role"]').forEach((radio) => (radio.checked = false));
  };
  tabs.addEventListener("message", onName);
  setTimeout(() => tabs.removeEventListener("message", onName), 1000);
  tabs.postMessage({ kind: "names" } satisfies TabMessage);
}

/** Asks the other tabs of this browser whether one of them is `userId` now; resolves true if so. */
function identityInUse(userId: string): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), 150);
    const onMessage = (event: MessageEvent<TabMessage>) => {
      if (event.data.kind !== "mine" || event.data.userId !== userId) return;
      clearTimeout(timer);
      tabs.removeEventListener("message", onMessage);
      resolve(true);
    };
    tabs.addEventListener("message", onMessage);
    tabs.postMessage({ kind: "who", userId } satisfies TabMessage);
  });
}

/** What tabs of this browser tell each other about who they are. */
type TabMessage = { kind: "who"; userId: string } | { kind: "mine"; userId: string } | { kind: "names" } | { kind: "name"; displayName: string };
const tabs = new BroadcastChannel("handshake.tabs");
tabs.addEventListener("message", (event: MessageEvent<TabMessage>) => {
  if (event.data.kind === "who" && current && event.data.userId === current.session.userId) tabs.postMessage({ kind: "mine", userId: current.session.userId } satisfies TabMessage);
  if (event.data.kind === "names" && current) tabs.postMessage({ kind: "name", displayName: loadSavedProfile().displayName } satisfies TabMessage);
});

async function enterRoom(roomId: string, inviteCode: string, audio: AudioContext): Promise<void> {
  const profile = loadSavedProfile();
  // A duplicated tab copies sessionStorage; if the tab it came from is still that person, this one starts as someone new.
  let mine = identity(sessionStorage, TAB_TOKEN);
  if (mine && (await identityInUse(mine.userId))) {
    sessionStorage.removeItem(TAB_TOKEN);
    mine = undefined;
  }
  let view: RoomView | undefined;
  const pending: Parameters<RoomView["take"]>[0][] = [];
  const paymentActions = createPaymentActions(endpoint, () => session.userToken);
  const session = new RoomSession(
    endpoint,
    roomId,
    profile,
    {
      onEvent: (event) => {
        paymentActions.take(event);
        return view ? view.take(event) : pending.push(event);
      },
      onLink: (state) => view?.link(state),
      onPeerFormat: (format) => view?.peerAudio().setFormat(format),
      onPeerFrame: (frame) => {
        view?.peerAudio().play(frame);
        view?.peerFrame();
      },
    },
    { ...(mine ? { userToken: mine.userToken } : {}), inviteCode },
  );
  await session.join();
  const me = JSON.stringify({ userToken: session.userToken, userId: session.userId } satisfies Identity);
  sessionStorage.setItem(TAB_TOKEN, me);
  localStorage.setItem(DEVICE_TOKEN, me);
  const url = new URL(location.href);
  url.search = new URLSearchParams({ room: session.roomId, ...(inviteCode ? { invite: inviteCode } : {}) }).toString();
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
    onProfileChanged: (changed) => saveProfile(changed),
  });
  for (const event of pending.splice(0)) view.take(event);
  current = { session, view };
  replace(app, view.element, paymentActions.element);
}

async function showContracts(): Promise<void> {
  const me = identity(sessionStorage, TAB_TOKEN) ?? identity(localStorage, DEVICE_TOKEN);
  const list = h("div", { class: "contract-list", "data-testid": "contracts-screen" }, h("p", { class: "muted" }, "Loading…"));
  const money = h("div", { "data-testid": "saved-balances" });
  // A contract opens in a sheet over the list, as in the room.
  const slot = h("div", { "data-testid": "contract-slot" });
  const sheet = h("dialog", { class: "sheet", "data-testid": "contract-sheet", "aria-label": "Contract" });
  sheet.append(h("div", { class: "sheet-bar" }, h("h2", {}, "Contract"), h("button", { type: "button", "data-testid": "close-contract", onclick: () => sheet.close() }, "Close")), slot);
  replace(app, h("section", { class: "contracts" }, h("h2", {}, "Saved contracts"), money, list, sheet));
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
    replace(money, balancesView(userId, contracts.flatMap((c) => c.payments), contracts.flatMap((c) => c.holds)));
    if (contracts.length === 0) {
      replace(list, h("p", { class: "muted" }, "No contracts yet."));
      return;
    }
    const show = (contract: Contract) =>
      replace(
        slot,
        contractCard(contract, { payments: [], holds: [], milestones: [] }, {
          userId,
          contracts: client,
          onMilestone: () => void client.getContract({ contractId: contract.id }).then((res) => res.contract && show(res.contract)),
          onError: (message) => slot.prepend(h("p", { class: "error", role: "alert" }, message)),
        }),
      );
    const open = (contract: Contract) => {
      show(contract);
      if (!sheet.open) sheet.showModal();
    };
    const counterparty = (c: Contract) => {
      const other = c.parties.find((p) => p.userId !== userId);
      return other ? `${other.displayName} (${sideWords(other.role)})` : "";
    };
    replace(
      list,
      h(
        "table",
        { class: "items saved" },
        h("thead", {}, h("tr", {}, h("th", {}, "Date"), h("th", {}, "What"), h("th", {}, "With"), h("th", {}, "Status"), h("th", { class: "num" }, "Total"))),
        h(
          "tbody",
          {},
          ...contracts.map((c) =>
            h(
              "tr",
              { class: "clickable", "data-testid": "contract-row", "data-status": ContractStatus[c.status] ?? "", onclick: () => open(c) },
              h("td", {}, new Date(Number(c.createdAtMs)).toLocaleDateString([], { day: "numeric", month: "short", year: "numeric" })),
              // The title is a button so the row opens from the keyboard too.
              h("td", {}, h("button", { type: "button", class: "link", "data-testid": "contract-open" }, c.title)),
              h("td", { "data-testid": "contract-counterparty" }, counterparty(c)),
              h("td", {}, h("span", { class: `pill status-${ContractStatus[c.status]?.toLowerCase() ?? ""}` }, contractStatusText(c.status))),
              c.terms ? amountCell(c.terms.totalMinor, settledTotalOf(c), c.terms.currency, "contract-row-total") : h("td", {}),
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
