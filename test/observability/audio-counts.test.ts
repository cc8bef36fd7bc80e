import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { AudioEncoding, AudioFormatSchema, AudioFrameSchema } from "../../gen/handshake/v1/audio_pb.js";
import { audioFrameCounts } from "../../src/core/metrics.js";
import { silentLogger } from "../../src/core/log.js";
import { Room } from "../../src/room/room.js";
import { QueuedAudioSink } from "../../src/server/audio-sink.js";
import { clientProfile, createFakeRoomStages, providerProfile, testRoomSettings } from "../support/room-stages.js";

const SAM = "u_sam";
const ALEX = "u_alex";

let room: Room | undefined;
afterEach(async () => {
  await room?.destroy();
});

describe("audio frames relayed and dropped (process counts the metrics read at scrape)", () => {
  it("counts each frame handed to a listener's stream, and the frames a listener that fell behind lost with its stream", () => {
    room = new Room("room-counts", undefined, createFakeRoomStages().stages, testRoomSettings(), silentLogger, undefined, () => {});
    room.join(SAM, providerProfile());
    room.join(ALEX, clientProfile());
    room.setAudioFormat(SAM, create(AudioFormatSchema, { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 }));
    // Alex listens on two streams; the second never reads and holds at most 3 frames.
    const reading = new QueuedAudioSink(1000);
    const stuck = new QueuedAudioSink(3);
    room.addAudioSink(ALEX, reading);
    room.addAudioSink(ALEX, stuck);
    const before = { ...audioFrameCounts };
    for (let seq = 0; seq < 5; seq++) room.audioFrame(SAM, create(AudioFrameSchema, { seq: BigInt(seq), pcm: new Uint8Array(640) }));
    expect(audioFrameCounts.relayed - before.relayed).toBe(10);
    // The stuck stream (the format and 2 frames queued) refused the 3rd frame and was ended: one frame dropped.
    expect(audioFrameCounts.dropped - before.dropped).toBe(1);
  });
});
