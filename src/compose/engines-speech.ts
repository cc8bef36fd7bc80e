import type { Logger } from "pino";
import { checkAudioFrame, checkPcmBytes } from "../audio/audio-format.js";
import { createSpeechPcmConverter } from "../audio/resampler.js";
import type { Config } from "../config.js";
import type { SpeechPcmConverter } from "../room/room.js";
import type { AudioInput } from "../server/deps.js";
import { toRecognisedSpeech } from "../speech/device-transcripts.js";
import { createPocketSphinxEngineFactory, detectPocketSphinx } from "../speech/pocketsphinx.js";
import type { SpeechEngineFactory } from "../speech/speech-engine.js";
import { boundSpeechEngines } from "../speech/speech-pool.js";
import { keywordVocabulary } from "../trigger/keyword.js";

/** The speech engine picked by configuration and the audio checks at the boundary. */
export interface SpeechEngines {
  speechFactory: SpeechEngineFactory | undefined;
  toSpeechPcm: SpeechPcmConverter;
  audioInput: AudioInput;
  close(): Promise<void>;
}

/**
 * Scribe when configured; PocketSphinx when installed (or demanded); otherwise transcripts sent
 * by clients only, with a clear log line saying which Debian packages bring local speech.
 */
export async function createSpeechEngines(config: Config, log: Logger): Promise<SpeechEngines & { name: string }> {
  const audioInput: AudioInput = {
    checkFrame: (frame) => checkAudioFrame(frame),
    checkPcmBytes: (bytes) => checkPcmBytes(bytes),
    deviceTranscript: (transcript) => toRecognisedSpeech(transcript),
  };
  const base = { toSpeechPcm: createSpeechPcmConverter, audioInput, close: async () => {} };
  switch (config.speech.engine) {
    case "device":
      return { ...base, name: "device", speechFactory: undefined };
    case "scribe": {
      const { createScribeEngineFactory } = await import("../speech/scribe.js");
      return {
        ...base,
        name: "scribe",
        speechFactory: createScribeEngineFactory({
          apiKey: config.speech.elevenLabsApiKey,
          baseUrl: config.speech.elevenLabsBaseUrl,
          language: config.speech.language,
          // Each engine makes a child with its name, room and user: reconnects and failures are logged.
          log,
        }),
      };
    }
    case "pocketsphinx":
    case "auto": {
      const found = await detectPocketSphinx();
      if (!found.available) {
        const message = `local speech needs the Debian packages ${found.missing.join(", ")} (apt-get install ${found.missing.join(" ")}); transcripts sent by clients still work`;
        if (config.speech.engine === "pocketsphinx") log.error({ missing: found.missing }, message);
        else log.warn({ missing: found.missing }, message);
        return { ...base, name: "device", speechFactory: undefined };
      }
      // One recogniser process per participant, at most SPEECH_MAX_PROCESSES of them (speech-pool.ts).
      const pool = boundSpeechEngines(
        createPocketSphinxEngineFactory({
          log,
          endSilenceMs: config.speech.endSilenceMs,
          languageModel: config.speech.languageModel,
          // The configured trigger keyword is always in the recogniser's vocabulary.
          extraWords: keywordVocabulary(config.trigger.keyword),
        }),
        config.speech.maxProcesses,
      );
      return { ...base, name: "pocketsphinx", speechFactory: pool.factory };
    }
  }
}
