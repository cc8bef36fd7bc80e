import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { AudioEncoding, AudioFormatSchema, AudioFrameSchema } from "../../gen/handshake/v1/audio_pb.js";
import { noopStageMetrics, type StageMetrics } from "../../src/core/metrics.js";
import { silentLogger } from "../../src/core/log.js";
import { Room } from "../../src/room/room.js";
import { clientProfile, createFakeRoomStages, providerProfile, testRoomSettings } from "../support/room-stages.js";

const SAM = "u_sam";
const ALEX = "u_alex";
/** 20 ms of 16 kHz PCM16 mono. */
const FRAME_BYTES = 640;

let room: Room | undefined;
afterEach(async () => {
  await room?.destroy();
});

describe("speech latency (end of utterance → final) by engine", () => {
  it("is recorded once per server final, from the audio the engine heard, and never for a final outside that audio", () => {
    const recorded: { engine: string; seconds: number }[] = [];
    const metrics: StageMetrics = { ...noopStageMetrics, speechFinal: (engine, seconds) => recorded.push({ engine, seconds }) };
    const fakes = createFakeRoomStages();
    fakes.stages.metrics = metrics;
    room = new Room("room-speech", undefined, fakes.stages, testRoomSettings(), silentLogger, undefined, () => {});
    room.join(SAM, providerProfile());
    room.join(ALEX, clientProfile());
    room.setAudioFormat(SAM, create(AudioFormatSchema, { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 }));
    for (let seq = 0; seq < 50; seq++) room.audioFrame(SAM, create(AudioFrameSchema, { seq: BigInt(seq), pcm: new Uint8Array(FRAME_BYTES) }));
    const engine = fakes.speech.engineFor(SAM)!;

    // An utterance that ended 400 ms before the last frame (1 s heard).
    engine.final("fix the boiler", { startMs: 100, endMs: 600 });
    expect(recorded).toHaveLength(1);
    expect(recorded[0]!.engine).toBe("fake");
    // At least the 400 ms of audio heard after the utterance ended.
    expect(recorded[0]!.seconds).toBeGreaterThanOrEqual(0.4);

    // A final past the audio heard is on another clock: not recorded.
    engine.final("later", { startMs: 900, endMs: 5_000 });
    expect(recorded).toHaveLength(1);
  });

  it("counts each failure a server engine reports by engine and code, as the panel shows it", () => {
    const errors: { engine: string; code: string }[] = [];
    const fakes = createFakeRoomStages();
    fakes.stages.metrics = { ...noopStageMetrics, speechError: (engine, code) => errors.push({ engine, code }) };
    room = new Room("room-speech-errors", undefined, fakes.stages, testRoomSettings(), silentLogger, undefined, () => {});
    room.join(SAM, providerProfile());
    room.join(ALEX, clientProfile());
    fakes.speech.engineFor(SAM)!.error({ code: "rate_limited", message: "slow down", retryable: true });
    expect(errors).toEqual([{ engine: "fake", code: "rate_limited" }]);
    expect(room.events.since(0n, SAM).some((e) => e.event.case === "error" && e.event.value.code === "rate_limited")).toBe(true);
  });
});
