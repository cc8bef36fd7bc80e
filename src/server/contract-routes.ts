import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import { InvalidArgumentError } from "../core/errors.js";
import type { CallScopes } from "./call-scope.js";
import type { ServerDeps } from "./deps.js";
import { checkAmount, checkContractId, checkMilestoneId } from "./validate.js";

/** Page size when the request leaves it 0. */
const DEFAULT_PAGE_SIZE = 20;
const MAX_PAGE_SIZE = 100;

/** Registers ContractService: saved contracts and milestone actions, for the caller only. */
export function registerContractRoutes(router: ConnectRouter, deps: ServerDeps, scopes: CallScopes): void {
  const { desk, milestones, store, config } = deps;
  /** The authenticated caller (a user or a session token: both name the user). */
  const callerOf = (ctx: HandlerContext) => scopes.caller(ctx.values);
  router.service(ContractService, {
    async listContracts(req, ctx) {
      const { userId } = callerOf(ctx);
      if (req.pageSize > MAX_PAGE_SIZE) throw new InvalidArgumentError(`page_size must be at most ${MAX_PAGE_SIZE}`);
      if (req.pageToken.length > 200) throw new InvalidArgumentError("page_token is not a page token");
      const page = await desk.list(userId, req.pageSize || DEFAULT_PAGE_SIZE, req.pageToken || undefined);
      return { contracts: page.contracts, nextPageToken: page.nextCursor ?? "" };
    },
    async getContract(req, ctx) {
      const { userId } = callerOf(ctx);
      return { contract: await desk.get(userId, checkContractId(req.contractId)) };
    },
    async confirmMilestone(req, ctx) {
      const { userId } = callerOf(ctx);
      return { milestone: await milestones.confirm(userId, checkContractId(req.contractId), checkMilestoneId(req.milestoneId)) };
    },
    async proposeMilestoneAmount(req, ctx) {
      const { userId } = callerOf(ctx);
      const amount = checkAmount(req.amountMinor, config.limits.maxAmountMinor);
      return {
        milestone: await milestones.proposeAmount(userId, checkContractId(req.contractId), checkMilestoneId(req.milestoneId), amount),
      };
    },
    async approveMilestoneAmount(req, ctx) {
      const { userId } = callerOf(ctx);
      const amount = checkAmount(req.amountMinor, config.limits.maxAmountMinor);
      return {
        milestone: await milestones.approveAmount(userId, checkContractId(req.contractId), checkMilestoneId(req.milestoneId), amount),
      };
    },
    async releaseEscrow(req, ctx) {
      const { userId } = callerOf(ctx);
      return { milestone: await milestones.release(userId, checkContractId(req.contractId), checkMilestoneId(req.milestoneId)) };
    },
    async getBalances(_req, ctx) {
      const { userId } = callerOf(ctx);
      return { balances: await store.getBalances(userId) };
    },
  });
}
