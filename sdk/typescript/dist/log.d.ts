/** X-Ray's own problems, logged at most once per interval per kind, never thrown. */
export type Logger = (message: string) => void;
/** Where X-Ray's warnings go (default: `process.emitWarning`, code `XRAY`). */
export declare function setLogger(logger: Logger): void;
/** Log `message` unless a message of the same `kind` was logged within the last minute. */
export declare function warn(kind: string, message: string): void;
/** The text of an error, as the collector stores it: `Name: message`. */
export declare function errorText(error: unknown): string;
