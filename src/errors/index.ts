export {
  errorCodes,
  isErrorCode,
  messageIsPublic,
  clientDetailOf,
  type ErrorCode,
  type ErrorCodeEntry,
} from './codes.ts';
export {
  KeelError,
  isKeelError,
  InvalidArgumentError,
  ValidationError,
  NotFoundError,
  AbortedError,
  type KeelErrorOptions,
  type FieldIssue,
} from './keel-error.ts';
export { toProblemDetails, problemType, problemContentType, type ProblemDetails } from './problem-details.ts';
