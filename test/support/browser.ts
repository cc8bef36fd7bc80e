import { chromium, type Browser } from "playwright-core";

/*
 * Headless Chromium for the browser tests: Debian's /usr/bin/chromium, quiet, and optionally with
 * a fake microphone that plays a WAV file. The file is per process, so each person who speaks
 * gets a Chromium of their own.
 */

/** Launches Chromium; `micWav` makes its microphone play that file (once, when `once`; else looped). */
export function launchChromium(options: { micWav?: string; once?: boolean } = {}): Promise<Browser> {
  const mic = options.micWav
    ? ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", `--use-file-for-fake-audio-capture=${options.micWav}${options.once ? "%noloop" : ""}`, "--autoplay-policy=no-user-gesture-required"]
    : [];
  return chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", ...mic],
  });
}
