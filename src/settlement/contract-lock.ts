import { createKeyedLock, type KeyedLock } from "../core/keyed-lock.js";

export { createKeyedLock, type KeyedLock } from "../core/keyed-lock.js";

/**
 * The lock the executor and the milestone service use when they are given none: in-process only.
 * The composition root passes the store's `contractLock` instead, which also holds across nodes
 * sharing a PostgreSQL database.
 */
export const sharedContractLock: KeyedLock = createKeyedLock();
