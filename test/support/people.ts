import type { MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ContractService } from "../../gen/handshake/v1/contract_service_pb.js";
import type { AgentProfileSchema } from "../../gen/handshake/v1/profile_pb.js";
import { RoomService } from "../../gen/handshake/v1/room_service_pb.js";
import { ROOM_HEADER } from "../../clients/shared/room-routing.js";
import { bearer, grpcTransport, testProfile } from "./app.js";
import { recordPanel, type PanelRecorder } from "./panel.js";

/** A member of a room on a running server: ids, tokens and clients, and a way to speak. */
export interface Member {
  userId: string;
  userToken: string;
  sessionToken: string;
  roomId: string;
  /** RoomService with the session token. */
  room: Client<typeof RoomService>;
  /** ContractService with the session token, or the user token when joined with `contractsWith: "user"`. */
  contracts: Client<typeof ContractService>;
  /** Sends a final on-device transcript through SendAudio: the same pipeline as server speech. */
  say(text: string): Promise<void>;
}

/** A member whose PanelStream is open from the start (which also keeps them connected). */
export interface Person extends Member {
  panel: PanelRecorder;
}

/** How a test joins a room. */
export interface JoinOptions {
  /** Join as the user this long-lived token names (e.g. after a restart); default a new user. */
  userToken?: string;
  inviteCode?: string;
  /** Which token ContractService calls carry: the session's (default) or the user's, which outlives a restart. */
  contractsWith?: "session" | "user";
}

export { ROOM_HEADER };

/** Adds `handshake-room: <roomId>` to every call. */
export function roomHeader(roomId: string): Interceptor {
  return (next) => (req) => {
    req.header.set(ROOM_HEADER, roomId);
    return next(req);
  };
}

/** Joins `roomId` on the server at `baseUrl` with a test profile; opens no stream. */
export async function joinMember(
  baseUrl: string,
  roomId: string,
  profile: MessageInitShape<typeof AgentProfileSchema> = {},
  options: JoinOptions = {},
): Promise<Member> {
  // Room calls carry the room header, as the real clients' do (through a router they meet on the room's node).
  const anonymous = createClient(RoomService, createGrpcTransport({ baseUrl, interceptors: [roomHeader(roomId)] }));
  const joined = await anonymous.joinRoom({ roomId, profile: testProfile(profile), userToken: options.userToken ?? "", inviteCode: options.inviteCode ?? "" });
  const transport = createGrpcTransport({ baseUrl, interceptors: [bearer(joined.sessionToken), roomHeader(roomId)] });
  const room = createClient(RoomService, transport);
  const contractsTransport = options.contractsWith === "user" ? grpcTransport(baseUrl, joined.userToken) : transport;
  let start = 0;
  return {
    userId: joined.userId,
    userToken: joined.userToken,
    sessionToken: joined.sessionToken,
    roomId,
    room,
    contracts: createClient(ContractService, contractsTransport),
    async say(text: string) {
      // Timestamps as if spoken at about 60 ms a character, with a pause between utterances.
      const end = start + text.length * 60;
      await room.sendAudio({ transcript: { text, isFinal: true, startMs: start, endMs: end, confidence: 0.95 } });
      start = end + 500;
    },
  };
}

/** Joins `roomId` like `joinMember` and opens the person's panel recorder from the start. */
export async function joinPerson(
  baseUrl: string,
  roomId: string,
  profile: MessageInitShape<typeof AgentProfileSchema> = {},
  options: JoinOptions = {},
): Promise<Person> {
  const member = await joinMember(baseUrl, roomId, profile, options);
  return { ...member, panel: recordPanel(member.room, roomId) };
}

/** Two members, "Ada" then "Bo", joined to `roomId` (no streams open). */
export async function joinPair(baseUrl: string, roomId: string): Promise<{ roomId: string; a: Member; b: Member }> {
  const a = await joinMember(baseUrl, roomId, { displayName: "Ada" });
  const b = await joinMember(baseUrl, roomId, { displayName: "Bo" });
  return { roomId, a, b };
}
