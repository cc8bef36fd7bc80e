import type { AudioStreamRequest } from "../../gen/handshake/v1/room_service_pb.js";
import { TranscriptSource } from "../../gen/handshake/v1/transcript_pb.js";
import { InvalidArgumentError } from "../core/errors.js";
import type { Room } from "../room/room.js";
import type { AudioInput } from "./deps.js";
import { checkControl } from "./validate.js";

/**
 * Applies one AudioStream message after the format header: checks it and hands it to the room.
 * Shared by the connect-node handler and the HTTP/2 fast path, so both keep one contract. A
 * format is checked once, by the room as it builds the speech converter (an AudioFormatError,
 * InvalidArgument), and a mute once, by the room.
 */
export function applyAudioMessage(room: Room, userId: string, message: AudioStreamRequest["message"], audio: AudioInput): void {
  switch (message.case) {
    case "format":
      room.setAudioFormat(userId, message.value);
      return;
    case "frame":
      audio.checkFrame(message.value);
      room.audioFrame(userId, message.value);
      return;
    case "transcript":
      room.transcript(userId, audio.deviceTranscript(message.value), TranscriptSource.DEVICE);
      return;
    case "control":
      room.control(userId, checkControl(message.value));
      return;
    case undefined:
      throw new InvalidArgumentError("AudioStream message is empty");
  }
}
