import { readFile } from "node:fs/promises";

/** Which side of the scripted conversation a line belongs to. */
export type Speaker = "provider" | "client";

/** One line of a scripted dialogue. */
export interface DialogueLine {
  speaker: Speaker;
  /** What the speaker says; sent as a final on-device transcript. */
  text: string;
  /** Pause before saying the line, once it is this speaker's turn. */
  delayMs?: number;
  /** A WAV of the line, relative to the dialogue file; used instead of `text` when streaming audio. */
  audio?: string;
}

/** Thrown when a dialogue file is not a list of `{speaker, text, delayMs?}`. */
export class DialogueError extends Error {
  override readonly name = "DialogueError";
}

/** Checks and normalises parsed JSON into dialogue lines. */
export function parseDialogue(value: unknown): DialogueLine[] {
  if (!Array.isArray(value) || value.length === 0) throw new DialogueError("a dialogue is a non-empty JSON array of lines");
  return value.map((raw: unknown, index) => {
    if (typeof raw !== "object" || raw === null) throw new DialogueError(`line ${index + 1} is not an object`);
    const line = raw as Record<string, unknown>;
    if (line.speaker !== "provider" && line.speaker !== "client") {
      throw new DialogueError(`line ${index + 1}: speaker must be "provider" or "client"`);
    }
    if (typeof line.text !== "string" || line.text.trim() === "" || line.text.length > 4000) {
      throw new DialogueError(`line ${index + 1}: text must be 1–4000 characters`);
    }
    const out: DialogueLine = { speaker: line.speaker, text: line.text };
    if (line.delayMs !== undefined) {
      if (typeof line.delayMs !== "number" || !Number.isInteger(line.delayMs) || line.delayMs < 0 || line.delayMs > 600_000) {
        throw new DialogueError(`line ${index + 1}: delayMs must be an integer from 0 to 600000`);
      }
      out.delayMs = line.delayMs;
    }
    if (line.audio !== undefined) {
      if (typeof line.audio !== "string" || line.audio === "") throw new DialogueError(`line ${index + 1}: audio must be a file path`);
      out.audio = line.audio;
    }
    return out;
  });
}

/** Reads and checks a dialogue file. */
export async function loadDialogue(file: string): Promise<DialogueLine[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(file, "utf8"));
  } catch (err) {
    throw new DialogueError(`cannot read dialogue ${file}: ${(err as Error).message}`);
  }
  return parseDialogue(parsed);
}
