/** X-Ray's own problems, logged at most once per interval per kind, never thrown. */

const INTERVAL_MS = 60_000;
const lastLogged = new Map<string, number>();

export type Logger = (message: string) => void;

let sink: Logger = (message) => process.emitWarning(message, { code: 'XRAY' });

/** Where X-Ray's warnings go (default: `process.emitWarning`, code `XRAY`). */
export function setLogger(logger: Logger): void {
  sink = logger;
}

/** Log `message` unless a message of the same `kind` was logged within the last minute. */
export function warn(kind: string, message: string): void {
  try {
    const now = Date.now();
    const last = lastLogged.get(kind);
    if (last !== undefined && now - last < INTERVAL_MS) return;
    lastLogged.set(kind, now);
    sink(`xray: ${message}`);
  } catch {
    // a failing logger must not fail the pipeline either
  }
}

/** The text of an error, as the collector stores it: `Name: message`. */
export function errorText(error: unknown): string {
  if (error instanceof Error) {
    const kind = (error as { code?: unknown }).code ?? error.name;
    return error.message ? `${String(kind)}: ${error.message}` : String(kind);
  }
  return String(error);
}
