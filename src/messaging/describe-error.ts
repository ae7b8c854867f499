/**
 * The longest description kept: a dead letter's header, a failed row's column or a wrapping error's message
 * stays bounded however large the thrown message was.
 */
const maxLength = 2000;

/** An error as dead letters, failed rows and wrapping errors state it: `name: message`, at most 2 000 characters, then `…`. */
export function describeError(error: unknown): string {
  return clip(errorText(error));
}

/**
 * The same on one line — each run of line breaks becomes one space before the cut — for transports whose
 * headers cannot carry a line break (a NATS header value ends at the first one).
 */
export function describeErrorOnOneLine(error: unknown): string {
  return clip(errorText(error).replace(/[\r\n]+/g, ' '));
}

function errorText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

function clip(text: string): string {
  return text.length > maxLength ? text.slice(0, maxLength) + '…' : text;
}
