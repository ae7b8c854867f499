import type { z } from 'zod';

export type HttpMethod = 'get' | 'post' | 'put' | 'patch' | 'delete';

/** A request or response header of an operation. */
export interface HttpHeaderContract {
  description: string;
  /** Default false. A required response header must be present in every such response. */
  required?: boolean;
  /** Default: a string. */
  schema?: z.ZodType;
}

/** One response an operation may give, by status code. */
export interface HttpResponseContract {
  description: string;
  /** The body's schema; none for a response without a body. */
  body?: z.ZodType;
  /** Default `application/json`. */
  contentType?: string;
  headers?: Readonly<Record<string, HttpHeaderContract>>;
}

/**
 * One operation of an HTTP API, in the terms its handler already uses: the zod schemas that
 * parse its input and describe its output. `openApiDocument` turns a list of them into the
 * published contract.
 */
export interface HttpOperation {
  method: HttpMethod;
  /** As the router spells it: `/v1/orders/:id`. */
  path: string;
  /** Unique across the API: what generated clients name the call. */
  operationId: string;
  summary: string;
  description?: string;
  tags?: readonly string[];
  /** An object schema of the path's `:params`. */
  params?: z.ZodType;
  /** An object schema of the query string. */
  query?: z.ZodType;
  headers?: Readonly<Record<string, HttpHeaderContract>>;
  body?: { schema: z.ZodType; contentType?: string; description?: string };
  /** Names of the document's security schemes, any one of which is accepted; `[]`: open. Default: the document's. */
  security?: readonly string[];
  responses: Readonly<Record<number, HttpResponseContract>>;
}
