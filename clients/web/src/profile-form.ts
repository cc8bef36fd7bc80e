import { create, fromJson, toJson, type JsonValue } from "@bufbuild/protobuf";
import {
  AgentProfileSchema,
  EscrowPreference,
  NegotiationStyle,
  PartyRole,
  RateSchema,
  RateUnit,
  type AgentProfile,
} from "../../../gen/handshake/v1/profile_pb.js";
import { minorDigitsOf, parseMoney } from "../../shared/format.js";
import { h } from "./dom.js";

/*
 * The setup screen's profile form: what the person's agent knows and may do. The profile is kept
 * in localStorage (proto JSON) so the next visit starts filled in.
 */

const STORAGE_KEY = "handshake.profile";

/** The profile saved on this device, or a blank one. */
export function loadSavedProfile(): AgentProfile {
  try {
    const raw = localStorage.getItem(STORAGE_KEY);
    if (raw) return fromJson(AgentProfileSchema, JSON.parse(raw) as JsonValue);
  } catch {
    // A damaged entry is replaced by the next save.
  }
  // Escrow by default only for big items (over £500), as most people expect small jobs paid at once.
  return create(AgentProfileSchema, {
    currency: "GBP",
    // No role until the person answers the join screen's question.
    role: PartyRole.UNSPECIFIED,
    style: NegotiationStyle.BALANCED,
    escrowPreference: EscrowPreference.ABOVE_THRESHOLD,
    escrowThresholdMinor: 50_000n,
  });
}

/** Saves the profile on this device, without the Monzo token. */
export function saveProfile(profile: AgentProfile): void {
  localStorage.setItem(STORAGE_KEY, JSON.stringify(toJson(AgentProfileSchema, { ...profile, monzoAccessToken: "" })));
}

const UNIT_WORDS: Record<string, RateUnit> = { hour: RateUnit.HOUR, day: RateUnit.DAY, job: RateUnit.JOB, item: RateUnit.ITEM };

/** Rates as lines: "call-out: 80 per job". */
function ratesToText(profile: AgentProfile): string {
  return profile.rates
    .map((r) => `${r.description}: ${decimal(r.amountMinor, profile.currency || "GBP")} per ${r.unit === RateUnit.UNSPECIFIED ? "job" : (RateUnit[r.unit]?.toLowerCase() ?? "job")}`)
    .join("\n");
}

function textToRates(text: string, currency: string) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "")
    .map((line, index) => {
      const match = /^(.+?)\s*:\s*([\d.,]+)\s*(?:(?:per|an?|\/)\s*(hour|day|job|item))?$/i.exec(line);
      if (!match?.[1] || !match[2]) throw new Error(`rate ${index + 1} should look like "call-out: 80 per job"`);
      return create(RateSchema, {
        description: match[1],
        amountMinor: parseMoney(match[2], currency),
        unit: UNIT_WORDS[(match[3] ?? "job").toLowerCase()] ?? RateUnit.JOB,
      });
    });
}

function decimal(amountMinor: bigint, currency: string): string {
  if (amountMinor === 0n) return "";
  const digits = minorDigitsOf(currency);
  const scale = 10n ** BigInt(digits);
  return digits === 0 ? amountMinor.toString() : `${amountMinor / scale}.${(amountMinor % scale).toString().padStart(digits, "0")}`;
}

function select(name: string, options: [string, string][], value: string): HTMLSelectElement {
  const element = h("select", { name, id: `profile-${name}`, "data-testid": `profile-${name}` }, ...options.map(([v, label]) => h("option", { value: v }, label)));
  element.value = value;
  return element;
}

function field(label: string, control: HTMLElement, hint?: string): HTMLElement {
  return h("label", { class: "field" }, h("span", {}, label), control, hint ? h("small", {}, hint) : undefined);
}

/** The profile's controls: name and role for the join screen, the rest for the settings sheet; `read()` returns the edited profile or throws with what is wrong. */
export function profileFields(profile: AgentProfile): { name: HTMLElement; role: HTMLElement; settings: HTMLElement; read(): AgentProfile } {
  const input = (name: string, value: string | number, attrs: Record<string, string | number | boolean> = {}) =>
    h("input", { name, id: `profile-${name}`, "data-testid": `profile-${name}`, value: String(value), ...attrs });
  const name = input("name", profile.displayName, { required: true, maxlength: 100, autocomplete: "name", placeholder: "e.g. Sam Price" });
  // One plain question instead of provider/client jargon; nothing is preselected for a newcomer.
  const roleChoice = (value: "provider" | "client", label: string, hint: string) =>
    h(
      "label",
      { class: "choice" },
      h("input", {
        type: "radio",
        name: "role",
        value,
        required: true,
        "data-testid": `profile-role-${value}`,
        checked: (value === "provider" && profile.role === PartyRole.PROVIDER) || (value === "client" && profile.role === PartyRole.CLIENT),
      }),
      h("span", {}, h("strong", {}, label), h("small", {}, hint)),
    );
  const role = h(
    "fieldset",
    { class: "role", "data-testid": "profile-role" },
    h("legend", {}, "Are you being paid, or paying?"),
    roleChoice("provider", "I’m being paid", "I do the work or sell the thing"),
    roleChoice("client", "I’m paying", "I need the work done or buy the thing"),
  );
  const trade = input("trade", profile.trade, { maxlength: 100, placeholder: "e.g. plumber" });
  const experience = input("experience", profile.experienceYears, { type: "number", min: 0, max: 80 });
  const currency = select("currency", [["GBP", "GBP £"], ["EUR", "EUR €"], ["USD", "USD $"]], profile.currency || "GBP");
  const rates = h("textarea", { name: "rates", id: "profile-rates", "data-testid": "profile-rates", rows: 3, placeholder: "call-out: 80 per job\nlabour: 45 per hour" });
  rates.value = ratesToText(profile);
  const style = select("style", [["balanced", "Balanced — concede steadily"], ["aggressive", "Firm — hold out until late"], ["conservative", "Easy-going — concede early"]],
    profile.style === NegotiationStyle.AGGRESSIVE ? "aggressive" : profile.style === NegotiationStyle.CONSERVATIVE ? "conservative" : "balanced");
  const maxAuto = input("max-auto-approve", decimal(profile.maxAutoApproveMinor, profile.currency || "GBP"), { inputmode: "decimal", placeholder: "0 = always ask me" });
  const escrow = select("escrow", [["above-threshold", "Hold large items in escrow"], ["always", "Hold every item in escrow"], ["never", "Pay at once"]],
    profile.escrowPreference === EscrowPreference.ALWAYS ? "always" : profile.escrowPreference === EscrowPreference.NEVER ? "never" : "above-threshold");
  const threshold = input("escrow-threshold", decimal(profile.escrowThresholdMinor, profile.currency || "GBP"), { inputmode: "decimal" });
  const instructions = h("textarea", { name: "instructions", id: "profile-instructions", "data-testid": "profile-instructions", rows: 2, maxlength: 4000, placeholder: "Anything your agent should know" });
  instructions.value = profile.customInstructions;

  const settings = h(
    "div",
    { class: "profile" },
    field("Trade", trade),
    field("Years of experience", experience),
    field("Currency", currency),
    field("Usual rates", rates, "one per line: what: amount per hour|day|job|item"),
    field("Negotiation style", style),
    field("Agree to pay without asking, up to", maxAuto, "above this your agent asks you first"),
    field("Escrow", escrow),
    field("Escrow items above", threshold),
    field("Instructions for your agent", instructions),
  );
  const checkedRole = () => (role.querySelector("input:checked") as HTMLInputElement | null)?.value;

  return {
    name: field("Your name", name),
    role,
    settings,
    read() {
      const code = currency.value;
      const money = (value: string, what: string) => {
        if (value.trim() === "") return 0n;
        try {
          return parseMoney(value, code);
        } catch (err) {
          throw new Error(`${what}: ${(err as Error).message}`);
        }
      };
      if (name.value.trim() === "") throw new Error("your name is needed");
      if (!checkedRole()) throw new Error("say whether you are being paid or paying");
      const years = Number(experience.value || "0");
      if (!Number.isInteger(years) || years < 0 || years > 80) throw new Error("years of experience: a whole number from 0 to 80");
      return create(AgentProfileSchema, {
        ...profile,
        displayName: name.value.trim(),
        role: checkedRole() === "provider" ? PartyRole.PROVIDER : checkedRole() === "client" ? PartyRole.CLIENT : PartyRole.UNSPECIFIED,
        trade: trade.value.trim(),
        experienceYears: years,
        currency: code,
        rates: textToRates(rates.value, code),
        style: style.value === "aggressive" ? NegotiationStyle.AGGRESSIVE : style.value === "conservative" ? NegotiationStyle.CONSERVATIVE : NegotiationStyle.BALANCED,
        maxAutoApproveMinor: money(maxAuto.value, "agree to pay up to"),
        escrowPreference: escrow.value === "always" ? EscrowPreference.ALWAYS : escrow.value === "never" ? EscrowPreference.NEVER : EscrowPreference.ABOVE_THRESHOLD,
        escrowThresholdMinor: money(threshold.value, "escrow items above"),
        customInstructions: instructions.value.trim(),
      });
    },
  };
}
