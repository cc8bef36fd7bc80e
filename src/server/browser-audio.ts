import type { AudioFormat } from "../../gen/handshake/v1/audio_pb.js";
import { ResourceExhaustedError } from "../core/errors.js";
import type { Room } from "../room/room.js";

/** One member's browser audio (SendAudio): the next frame number, the format, the call-rate bucket. */
export interface BrowserAudioState {
  nextSeq: bigint;
  format: AudioFormat | undefined;
  tokens: number;
  refilledAtMs: number;
}

/**
 * The per-member state of SendAudio, which, unlike a stream, has no call whose end frees it.
 * It is kept per live room (a WeakMap: it goes with the room when the room ends), a departed
 * member's entry is dropped at the room's next SendAudio, and `forget` drops one at once
 * (LeaveRoom, JoinRoom).
 */
export interface BrowserAudio {
  /** The member's state, made fresh for a member who has none. */
  of(room: Room, userId: string): BrowserAudioState;
  /** Refuses a call past `perSecond` calls a second (ResourceExhaustedError); takes nothing yet. */
  admit(state: BrowserAudioState): void;
  /** Takes one call of the rate, once the call has passed its checks (refused calls cost nothing). */
  charge(state: BrowserAudioState): void;
  /**
   * Notes a format the member sent: a new sender (a reloaded page) numbers its frames from 0
   * again, so a format starts the numbering afresh rather than dropping them as duplicates.
   */
  restart(state: BrowserAudioState, format: AudioFormat): void;
  /** Drops the member's state. */
  forget(room: Room, userId: string): void;
}

/** Creates the SendAudio state of one server, limited to `perSecond` calls per member. */
export function createBrowserAudio(perSecond: number, now: () => number = () => Date.now()): BrowserAudio {
  const byRoom = new WeakMap<Room, Map<string, BrowserAudioState>>();
  return {
    of(room, userId) {
      let members = byRoom.get(room);
      if (!members) byRoom.set(room, (members = new Map()));
      for (const id of members.keys()) if (!room.has(id)) members.delete(id);
      let state = members.get(userId);
      if (!state) members.set(userId, (state = { nextSeq: 0n, format: undefined, tokens: perSecond, refilledAtMs: now() }));
      return state;
    },
    admit(state) {
      const at = now();
      state.tokens = Math.min(perSecond, state.tokens + ((at - state.refilledAtMs) / 1000) * perSecond);
      state.refilledAtMs = at;
      if (state.tokens < 1) throw new ResourceExhaustedError(`SendAudio is limited to ${perSecond} calls per second`);
    },
    charge(state) {
      state.tokens -= 1;
    },
    restart(state, format) {
      state.format = format;
      state.nextSeq = 0n;
    },
    forget(room, userId) {
      byRoom.get(room)?.delete(userId);
    },
  };
}
