import type { Client } from "@connectrpc/connect";
import { ConnectError } from "@connectrpc/connect";
import type { ContractService } from "../../../gen/handshake/v1/contract_service_pb.js";
import {
  ContractStatus,
  EscrowHoldStatus,
  MilestoneStatus,
  type Contract,
  type EscrowHold,
  type Milestone,
  type Payment,
} from "../../../gen/handshake/v1/deal_pb.js";
import { PartyRole } from "../../../gen/handshake/v1/profile_pb.js";
import {
  contractStatusText,
  formatMoney,
  holdStatusText,
  lineItemKindText,
  milestoneStatusText,
  parseMoney,
  paymentStatusText,
  sideWords,
} from "../../shared/format.js";
import { h } from "./dom.js";
import { sha256Hex } from "./room-session.js";

/*
 * A contract as a card: terms, the fixed text with its hash checked on this device, signatures,
 * and the money — payments, escrow holds and milestones with the actions open to the viewer.
 */

/** What the card needs from its page. */
export interface ContractViewDeps {
  /** The viewer's user id. */
  userId: string;
  contracts: Client<typeof ContractService>;
  /** Signs in the live room; absent on the saved-contracts screen. */
  sign?: (contract: Contract) => Promise<void>;
  /** Declines in the live room with the person's reason; absent on the saved-contracts screen. */
  decline?: (contract: Contract, reason: string) => Promise<void>;
  /** A milestone changed through an action here. */
  onMilestone?: (milestone: Milestone) => void;
  /** Something failed; show it. */
  onError: (message: string) => void;
}

/** Money events not (yet) inside the contract message. */
export interface MoneyState {
  payments: Payment[];
  holds: EscrowHold[];
  milestones: Milestone[];
}

function merge<T extends { id: string; updatedAtMs: bigint }>(a: readonly T[], b: readonly T[]): T[] {
  const byId = new Map<string, T>();
  for (const item of [...a, ...b]) {
    const known = byId.get(item.id);
    if (!known || item.updatedAtMs >= known.updatedAtMs) byId.set(item.id, item);
  }
  return [...byId.values()];
}

function errorText(err: unknown): string {
  return err instanceof ConnectError ? err.rawMessage : (err as Error).message;
}

/** What a line item settled at: its milestone's payout (nothing, if the escrow went back), or undefined while open. */
function settledAmountOf(lineItemId: string, milestones: readonly Milestone[]): bigint | undefined {
  const m = milestones.find((x) => x.lineItemId === lineItemId);
  if (m?.status === MilestoneStatus.COMPLETED) return m.capturedMinor;
  if (m?.status === MilestoneStatus.RELEASED) return 0n;
  return undefined;
}

/** The contract's total as settled so far: each item at what it settled at, the open ones as agreed. */
export function settledTotalOf(contract: Contract, milestones: readonly Milestone[] = contract.milestones): bigint {
  return (contract.terms?.lineItems ?? []).reduce((sum, item) => sum + (settledAmountOf(item.id, milestones) ?? item.amountMinor), 0n);
}

/** Renders a contract card. The hash check runs in the background and unlocks the Sign button. */
export function contractCard(contract: Contract, money: MoneyState, deps: ContractViewDeps): HTMLElement {
  const currency = contract.terms?.currency ?? "GBP";
  const me = contract.parties.find((p) => p.userId === deps.userId);
  const nameOf = (userId: string) => contract.parties.find((p) => p.userId === userId)?.displayName ?? userId;
  const signed = contract.signatures.some((s) => s.userId === deps.userId);

  const hashState = h("span", { class: "hash-state", "data-testid": "hash-state" }, "checking…");
  const signButton = h("button", { class: "primary", "data-testid": "sign-button", disabled: true }, signed ? "Signed" : "Sign");
  const canSign = deps.sign && me && !signed && contract.status === ContractStatus.AWAITING_SIGNATURES;
  void sha256Hex(contract.text).then((hash) => {
    const ok = hash === contract.textSha256;
    hashState.textContent = ok ? "✓ matches the text below (checked on this device)" : "✗ does NOT match the text — do not sign";
    hashState.className = `hash-state ${ok ? "ok" : "bad"}`;
    if (ok && canSign) signButton.disabled = false;
  });
  signButton.addEventListener("click", () => {
    if (!deps.sign) return;
    signButton.disabled = true;
    signButton.textContent = "Signing…";
    deps.sign(contract).then(
      () => (signButton.textContent = "Signed"),
      (err: unknown) => {
        signButton.disabled = false;
        signButton.textContent = "Sign";
        deps.onError(`Signing failed: ${errorText(err)}`);
      },
    );
  });

  // Declining is open to a party until both have signed; it ends this deal and pays nothing.
  const canDecline = deps.decline && me && contract.status === ContractStatus.AWAITING_SIGNATURES;
  const declineReason = h("input", {
    class: "decline-reason",
    "data-testid": "decline-reason",
    placeholder: "Why? The other person sees this.",
    maxlength: 500,
    "aria-label": "reason for declining",
  });
  const declineButton = h("button", { class: "danger", "data-testid": "decline-button", type: "submit" }, "Decline");
  const declineForm = h(
    "form",
    {
      class: "inline decline",
      "data-testid": "decline-form",
      onsubmit: (event: Event) => {
        event.preventDefault();
        const reason = declineReason.value.trim();
        if (!deps.decline) return;
        if (reason === "") {
          deps.onError("Say why you decline: the other person sees your reason.");
          return;
        }
        declineButton.disabled = true;
        signButton.disabled = true;
        declineButton.textContent = "Declining…";
        deps.decline(contract, reason).then(
          () => (declineButton.textContent = "Declined"),
          (err: unknown) => {
            declineButton.disabled = false;
            declineButton.textContent = "Decline";
            deps.onError(`Declining failed: ${errorText(err)}`);
          },
        );
      },
    },
    declineReason,
    declineButton,
  );
  const declined =
    contract.status === ContractStatus.DECLINED
      ? h(
          "p",
          { class: "declined", "data-testid": "declined-reason" },
          `Declined by ${nameOf(contract.declinedByUserId)}: “${contract.declinedReason}”. Nothing was paid.`,
        )
      : undefined;

  const items = contract.terms?.lineItems ?? [];
  const payments = merge(contract.payments, money.payments);
  const holds = merge(contract.holds, money.holds);
  const milestones = merge(contract.milestones, money.milestones);
  const settledOf = (lineItemId: string) => settledAmountOf(lineItemId, milestones);
  const agreedTotal = contract.terms?.totalMinor ?? 0n;
  const settledTotal = settledTotalOf(contract, milestones);
  const terms = h(
    "table",
    { class: "items" },
    h("thead", {}, h("tr", {}, h("th", {}, "Item"), h("th", {}, "How it is paid"), h("th", { class: "num" }, "Amount"))),
    h(
      "tbody",
      {},
      ...items.map((item) =>
        h(
          "tr",
          {},
          h("td", {}, item.description, item.quantity > 1 ? h("small", {}, ` ${item.quantity} ${item.unit || "units"} × ${formatMoney(item.unitPriceMinor, currency)}`) : undefined),
          h("td", {}, lineItemKindText(item.kind), item.range ? h("small", {}, ` ${formatMoney(item.range.minMinor, currency)}–${formatMoney(item.range.maxMinor, currency)}`) : undefined),
          amountCell(item.amountMinor, settledOf(item.id), currency, "line-amount"),
        ),
      ),
    ),
    h("tfoot", {}, h("tr", {}, h("td", { colspan: 2 }, settledTotal !== agreedTotal ? "Total, as settled" : "Total"), amountCell(agreedTotal, settledTotal !== agreedTotal ? settledTotal : undefined, currency, "contract-total"))),
  );

  return h(
    "article",
    { class: "contract", "data-testid": "contract", "data-status": ContractStatus[contract.status] ?? "" },
    h("header", {}, h("h3", { "data-testid": "contract-title" }, contract.title), h("span", { class: "pill", "data-testid": "contract-status" }, contractStatusText(contract.status))),
    h("p", { class: "parties" }, contract.parties.map((p) => `${p.displayName} (${sideWords(p.role)})`).join(" and ")),
    terms,
    h("p", { class: "hash" }, "SHA-256 ", h("code", { "data-testid": "contract-hash" }, contract.textSha256), " ", hashState),
    h("details", {}, h("summary", {}, "Contract text"), h("pre", { class: "contract-text", "data-testid": "contract-text", tabindex: 0, role: "region", "aria-label": "Contract text" }, contract.text)),
    h(
      "div",
      { class: "signatures", "data-testid": "signatures" },
      h("h4", {}, "Signatures"),
      contract.signatures.length === 0 ? h("p", { class: "muted" }, "No one has signed yet.") : undefined,
      ...contract.signatures.map((s) => h("p", { class: "signature" }, `Signed by ${nameOf(s.userId)} at ${new Date(Number(s.signedAtMs)).toLocaleTimeString()}`)),
      canSign ? signButton : undefined,
      canDecline ? declineForm : undefined,
      declined,
    ),
    moneySection(payments, holds, milestones, contract, deps, nameOf),
  );
}

function moneySection(
  payments: Payment[],
  holds: EscrowHold[],
  milestones: Milestone[],
  contract: Contract,
  deps: ContractViewDeps,
  nameOf: (userId: string) => string,
): HTMLElement | undefined {
  if (payments.length === 0 && holds.length === 0 && milestones.length === 0) return undefined;
  const role = contract.parties.find((p) => p.userId === deps.userId)?.role;
  return h(
    "div",
    { class: "money", "data-testid": "money" },
    h("h4", {}, "Money"),
    ...payments.map((p) =>
      h(
        "p",
        { class: "payment", "data-testid": "payment", "data-status": paymentStatusText(p.status) },
        `Payment: ${formatMoney(p.amountMinor, p.currency)} from ${nameOf(p.payerUserId)} to ${nameOf(p.payeeUserId)} — ${paymentStatusText(p.status)}`,
        p.failureReason ? ` (${p.failureReason})` : "",
      ),
    ),
    ...holds.map((hold) =>
      h(
        "p",
        { class: "hold", "data-testid": "hold", "data-status": holdStatusText(hold.status) },
        `Escrow: ${formatMoney(hold.amountMinor, hold.currency)} held from ${nameOf(hold.payerUserId)} — ${holdStatusText(hold.status)}`,
        hold.capturedMinor > 0n ? `, ${formatMoney(hold.capturedMinor, hold.currency)} paid out` : "",
      ),
    ),
    // Milestones can be acted on only once the contract is signed and its money is in place.
    ...milestones.map((m) =>
      milestoneRow(m, contract.status === ContractStatus.ACTIVE ? role : undefined, holds.find((x) => x.lineItemId === m.lineItemId)?.status === EscrowHoldStatus.HELD, deps, (side) => nameOf(contract.parties.find((p) => p.role === side)?.userId ?? "")),
    ),
  );
}

/** A table cell with an amount; when it settled at another amount, that one, with the agreed one struck through. */
export function amountCell(agreedMinor: bigint, settledMinor: bigint | undefined, currency: string, testId: string): HTMLElement {
  if (settledMinor === undefined || settledMinor === agreedMinor) return h("td", { class: "num", "data-testid": testId }, formatMoney(agreedMinor, currency));
  return h(
    "td",
    { class: "num settled", "data-testid": testId, "data-agreed": formatMoney(agreedMinor, currency) },
    h("s", { "aria-label": `agreed ${formatMoney(agreedMinor, currency)}` }, formatMoney(agreedMinor, currency)),
    " ",
    h("span", { "data-testid": `${testId}-settled` }, formatMoney(settledMinor, currency)),
  );
}

/**
 * One milestone, with only the actions the server lets the viewer take now: `role` is their side
 * (undefined when no action is open to them), `held` whether its escrow is in place. The other
 * side is told whom the milestone waits for.
 */
function milestoneRow(m: Milestone, role: PartyRole | undefined, held: boolean, deps: ContractViewDeps, nameOfSide: (side: PartyRole) => string): HTMLElement {
  const act = (button: HTMLButtonElement, run: () => Promise<{ milestone?: Milestone }>) => {
    button.addEventListener("click", () => {
      button.disabled = true;
      run().then(
        (res) => {
          if (res.milestone) deps.onMilestone?.(res.milestone);
        },
        (err: unknown) => {
          button.disabled = false;
          deps.onError(`Milestone action failed: ${errorText(err)}`);
        },
      );
    });
    return button;
  };
  const ids = { contractId: m.contractId, milestoneId: m.id };
  const open = held && (m.status === MilestoneStatus.PENDING || m.status === MilestoneStatus.AMOUNT_PROPOSED);
  const ranged = m.minMinor !== m.maxMinor;
  const mineConfirmed = role === PartyRole.PROVIDER ? m.providerConfirmed : m.clientConfirmed;
  const actions: HTMLElement[] = [];
  // A ranged milestone settles by proposal and approval; only a fixed one is confirmed by both.
  if (open && !ranged && !mineConfirmed && (role === PartyRole.PROVIDER || role === PartyRole.CLIENT)) {
    actions.push(act(h("button", { "data-testid": "milestone-confirm" }, "Confirm done"), () => deps.contracts.confirmMilestone(ids)));
  }
  if (open && role === PartyRole.PROVIDER && ranged) {
    const amount = h("input", { class: "amount", inputmode: "decimal", placeholder: `${formatMoney(m.minMinor, m.currency)}–${formatMoney(m.maxMinor, m.currency)}`, "data-testid": "milestone-amount" });
    const propose = h("button", { "data-testid": "milestone-propose" }, "Propose final amount");
    propose.addEventListener("click", () => {
      let amountMinor: bigint;
      try {
        amountMinor = parseMoney(amount.value, m.currency);
      } catch (err) {
        deps.onError((err as Error).message);
        return;
      }
      propose.disabled = true;
      deps.contracts.proposeMilestoneAmount({ ...ids, amountMinor }).then(
        (res) => res.milestone && deps.onMilestone?.(res.milestone),
        (err: unknown) => {
          propose.disabled = false;
          deps.onError(`Proposing failed: ${errorText(err)}`);
        },
      );
    });
    actions.push(amount, propose);
  }
  if (open && m.status === MilestoneStatus.AMOUNT_PROPOSED && role === PartyRole.CLIENT && m.proposedAmountMinor) {
    const proposed = m.proposedAmountMinor;
    actions.push(
      act(h("button", { class: "primary", "data-testid": "milestone-approve" }, `Approve ${formatMoney(proposed, m.currency)}`), () =>
        deps.contracts.approveMilestoneAmount({ ...ids, amountMinor: proposed }),
      ),
    );
  }
  if (open && role === PartyRole.PROVIDER) {
    actions.push(act(h("button", { class: "danger", "data-testid": "milestone-release" }, "Release escrow"), () => deps.contracts.releaseEscrow(ids)));
  }
  const confirmations = ranged ? "" : `; ${[m.providerConfirmed ? "provider ✓" : "provider …", m.clientConfirmed ? "client ✓" : "client …"].join(", ")}`;
  const provider = nameOfSide(PartyRole.PROVIDER);
  const client = nameOfSide(PartyRole.CLIENT);
  // What the viewer waits for when the next move is the other person's.
  const otherConfirmed = role === PartyRole.PROVIDER ? m.clientConfirmed : m.providerConfirmed;
  const waiting = !open || role === undefined
    ? undefined
    : ranged
      ? m.status === MilestoneStatus.AMOUNT_PROPOSED && role === PartyRole.PROVIDER
        ? `Waiting for ${client} to approve ${formatMoney(m.proposedAmountMinor, m.currency)}.`
        : m.status === MilestoneStatus.PENDING && role === PartyRole.CLIENT
          ? `Waiting for ${provider} to propose the final amount.`
          : undefined
      : mineConfirmed && !otherConfirmed
        ? `Waiting for ${role === PartyRole.PROVIDER ? client : provider} to confirm it is done.`
        : undefined;
  return h(
    "div",
    { class: "milestone", "data-testid": "milestone", "data-status": milestoneStatusText(m.status) },
    h("p", {}, `Milestone: ${m.terms?.title ?? "Milestone"} — ${milestoneStatusText(m.status)}`),
    h(
      "small",
      {},
      `${formatMoney(m.minMinor, m.currency)}${ranged ? `–${formatMoney(m.maxMinor, m.currency)}` : ""}${confirmations}`,
      m.proposedAmountMinor ? `; proposed ${formatMoney(m.proposedAmountMinor, m.currency)}` : "",
      m.capturedMinor > 0n ? `; paid ${formatMoney(m.capturedMinor, m.currency)}` : "",
      m.failureReason ? `; ${m.failureReason}` : "",
    ),
    waiting ? h("p", { class: "muted", "data-testid": "milestone-waiting" }, waiting) : undefined,
    actions.length > 0 ? h("div", { class: "actions" }, ...actions) : undefined,
  );
}
