import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AudioControl, AudioEncoding, AudioFormatSchema, AudioFrameSchema, type AudioFormat, type AudioFrame } from "../../gen/handshake/v1/audio_pb.js";
import { silentLogger } from "../../src/core/log.js";
import { Room, type AudioSink } from "../../src/room/room.js";
import { clientProfile, createFakeRoomStages, providerProfile, testRoomSettings, type FakeRoomStages } from "../support/room-stages.js";

const SAM = "u_sam";
const ALEX = "u_alex";
const FORMAT = create(AudioFormatSchema, { encoding: AudioEncoding.PCM16LE, sampleRateHz: 16000, channels: 1 });
const frame = (seq: number): AudioFrame => create(AudioFrameSchema, { seq: BigInt(seq), pcm: new Uint8Array(640) });

let fakes: FakeRoomStages;
let room: Room;
let heardByAlex: { frame: AudioFrame; format: AudioFormat | undefined }[];

beforeEach(() => {
  fakes = createFakeRoomStages();
  room = new Room("room-audio", undefined, fakes.stages, testRoomSettings(), silentLogger, undefined, () => {});
  room.join(SAM, providerProfile());
  room.join(ALEX, clientProfile());
  heardByAlex = [];
  const sink: AudioSink = { push: (f, format) => void heardByAlex.push({ frame: f, format }) };
  room.addAudioSink(ALEX, sink);
  room.setAudioFormat(SAM, FORMAT);
});

afterEach(async () => {
  await room.destroy();
});

describe("Room: audio and mute", () => {
  it("applies a mute once for each listener: the peer hears nothing, the speech engine gets the audio and drops it itself", () => {
    const engine = fakes.speech.engines.find((e) => e.participant.userId === SAM)!;
    room.audioFrame(SAM, frame(0));
    expect([heardByAlex.length, engine.bytesHeard, engine.bytesMuted]).toEqual([1, 640, 0]);
    expect(heardByAlex[0]?.format).toBe(FORMAT);

    room.control(SAM, AudioControl.MUTE);
    expect(engine.muted).toBe(true);
    room.audioFrame(SAM, frame(1));
    // The peer hears nothing; the engine counts the muted audio on Sam's clock and recognises none of it.
    expect([heardByAlex.length, engine.bytesHeard, engine.bytesMuted]).toEqual([1, 640, 640]);

    room.control(SAM, AudioControl.UNMUTE);
    room.audioFrame(SAM, frame(2));
    expect(heardByAlex.map((h) => h.frame.seq)).toEqual([0n, 2n]);
    expect([engine.bytesHeard, engine.bytesMuted]).toEqual([1280, 640]);
  });

  it("relays through an audio call's input to the sinks there are at each frame, across a sink leaving mid-frame and the member rejoining", async () => {
    const fromSam = room.audioInput(SAM);
    const heardBySecond: bigint[] = [];
    // A sink that unregisters itself while a frame is being relayed: the other sink still gets that frame.
    const unregisterFirst = room.addAudioSink(ALEX, { push: () => unregisterFirst() });
    room.addAudioSink(ALEX, { push: (f) => void heardBySecond.push(f.seq) });
    fromSam(frame(1));
    fromSam(frame(2));
    expect(heardByAlex.map((h) => h.frame.seq)).toEqual([1n, 2n]);
    expect(heardBySecond).toEqual([1n, 2n]);

    // Sam leaves: the input holds a member who is gone and relays nothing.
    await room.leave(SAM);
    fromSam(frame(3));
    expect(heardBySecond).toEqual([1n, 2n]);
    // Sam rejoins (a new member) with the same input still open: it finds them again.
    room.join(SAM, providerProfile());
    room.setAudioFormat(SAM, FORMAT);
    fromSam(frame(4));
    expect(heardBySecond).toEqual([1n, 2n, 4n]);
    // Alex leaves: nobody is left to hear Sam.
    await room.leave(ALEX);
    fromSam(frame(5));
    expect(heardBySecond).toEqual([1n, 2n, 4n]);
  });

  it("checks a format once, in the speech converter, and keeps the old one when it is refused", () => {
    const bad = create(AudioFormatSchema, { ...FORMAT, sampleRateHz: 12_345 });
    const converter = fakes.stages.toSpeechPcm;
    fakes.stages.toSpeechPcm = (format) => {
      if (format.sampleRateHz === 12_345) throw Object.assign(new Error("sample_rate_hz 12345 is not supported"), { name: "AudioFormatError" });
      return converter(format);
    };
    expect(() => room.setAudioFormat(SAM, bad)).toThrow(/12345/);
    room.audioFrame(SAM, frame(0));
    expect(heardByAlex[0]?.format).toBe(FORMAT);
  });
});
