/**
 * A driver's error is made where the server's answer was parsed, so its stack names only the
 * driver. Re-captured in the awaiting function, it leads back through the caller's awaits
 * instead: the frame that sent the failing statement is in it.
 */
export function withCallerStack(error: unknown): unknown {
  if (error instanceof Error) Error.captureStackTrace(error);
  return error;
}
