import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import type { Contract, EscrowHold, Milestone, Payment } from "../../gen/handshake/v1/deal_pb.js";
import { PaymentActionSchema, type PaymentAction } from "../../gen/handshake/v1/payments_service_pb.js";
import {
  ExecutionStepSchema,
  PanelErrorSchema,
  type ExecutionStep,
  type ExecutionStepStatus,
  type PanelError,
} from "../../gen/handshake/v1/events_pb.js";

/**
 * Something the room should see while a contract's money moves: proto messages ready to be
 * wrapped in a `PanelEvent` of the contract's room.
 */
export type ExecutionEvent = { roomId: string; contractId: string } & (
  | { kind: "step"; step: ExecutionStep }
  | { kind: "payment"; payment: Payment }
  | { kind: "hold"; hold: EscrowHold }
  | { kind: "milestone"; milestone: Milestone }
  | { kind: "contract"; contract: Contract }
  | { kind: "error"; error: PanelError }
  /** For the payer only: it may carry a PaymentIntent's client secret. */
  | { kind: "action"; action: PaymentAction; payerUserId: string }
);

/** Receives execution events; must not throw (a throwing listener is logged and ignored). */
export type ExecutionEventListener = (event: ExecutionEvent) => void;

/** One saga step as the room sees it. */
export interface StepInit {
  step: string;
  lineItemId?: string;
  userId?: string;
  status: ExecutionStepStatus;
  detail: string;
}

/** The settlement's outlet to the room: raw events, saga steps and payment errors. */
export interface SettlementEvents {
  emit(event: ExecutionEvent): void;
  step(contract: Contract, init: StepInit): void;
  /** A PanelError of stage "payment". */
  panelError(contract: Contract, code: string, message: string, retryable: boolean): void;
  /** Tells the payer (only) what they must do for a payment to go ahead. */
  paymentAction(contract: Contract, payerUserId: string, init: Omit<PaymentAction, "$typeName" | "contractId" | "$unknown">): void;
}

/** Wraps a listener so that a throwing one is logged (with `throwMessage`) and never breaks the saga. */
export function createSettlementEvents(listener: ExecutionEventListener, log: Logger, throwMessage: string): SettlementEvents {
  const emit = (event: ExecutionEvent): void => {
    try {
      listener(event);
    } catch (err) {
      log.error({ err, kind: event.kind, contractId: event.contractId }, throwMessage);
    }
  };
  return {
    emit,
    step(contract, init) {
      emit({ kind: "step", roomId: contract.roomId, contractId: contract.id, step: create(ExecutionStepSchema, { contractId: contract.id, ...init }) });
    },
    panelError(contract, code, message, retryable) {
      emit({
        kind: "error",
        roomId: contract.roomId,
        contractId: contract.id,
        error: create(PanelErrorSchema, { stage: "payment", code, message, retryable }),
      });
    },
    paymentAction(contract, payerUserId, init) {
      emit({ kind: "action", roomId: contract.roomId, contractId: contract.id, payerUserId, action: create(PaymentActionSchema, { ...init, contractId: contract.id }) });
    },
  };
}
