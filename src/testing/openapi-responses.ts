import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { escapePointerToken } from '../contracts/json-schema.ts';
import type { OpenApiDocument } from '../contracts/index.ts';

// ajv-formats is CommonJS with its plugin as `module.exports`.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

/** A response as a test saw it. */
export interface ObservedResponse {
  method: string;
  /** The request's URL or path; the query string is ignored. */
  url: string;
  status: number;
  headers: Readonly<Record<string, string | string[] | number | undefined>>;
  /** The raw body; '' for none. */
  body: string;
}

interface Route {
  path: string;
  pattern: RegExp;
  /** Literal segments first: `/v1/orders/new` wins over `/v1/orders/{id}`. */
  literalSegments: number;
}

/**
 * Holds responses to an OpenAPI 3.1 document, for contract tests: `check` lists every way a
 * response departs from what the document promises for its operation and status — an
 * undocumented operation or status, a content type or body the document does not describe, a
 * required header missing. An empty list is a conforming response.
 */
export function openApiResponses(document: OpenApiDocument): {
  check: (response: ObservedResponse) => string[];
} {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  // The document itself is the schema registry: each response schema is compiled by its JSON
  // pointer, so `#/components/schemas/...` references resolve within it.
  ajv.addSchema(document, 'openapi');
  const validators = new Map<string, ValidateFunction>();
  const routes: Route[] = Object.keys(document.paths)
    .map((path) => ({
      path,
      pattern: new RegExp(`^${path.split('/').map(segmentPattern).join('/')}$`),
      literalSegments: path.split('/').filter((segment) => !segment.startsWith('{')).length,
    }))
    .sort((a, b) => b.literalSegments - a.literalSegments);

  const check = (response: ObservedResponse): string[] => {
    const method = response.method.toLowerCase();
    const path = response.url.split('?')[0]!;
    const route = routes.find((candidate) => candidate.pattern.test(path));
    const operation = route === undefined ? undefined : (document.paths[route.path]?.[method] as Operation);
    if (route === undefined || operation === undefined)
      return [`${response.method} ${path}: no such operation`];
    const where = `${response.method.toUpperCase()} ${route.path} ${response.status}`;
    const status = String(response.status);
    const documented = operation.responses[status] ?? operation.responses.default;
    if (documented === undefined) {
      return [`${where}: status not documented (documented: ${Object.keys(operation.responses).join(', ')})`];
    }
    const problems: string[] = [];
    for (const [name, header] of Object.entries(documented.headers ?? {})) {
      if (header.required === true && response.headers[name.toLowerCase()] === undefined) {
        problems.push(`${where}: required header ${name} missing`);
      }
    }
    const content = documented.content ?? {};
    const contentType = String(response.headers['content-type'] ?? '')
      .split(';')[0]!
      .trim();
    if (Object.keys(content).length === 0) {
      if (response.body !== '') problems.push(`${where}: a body where the document describes none`);
      return problems;
    }
    if (!(contentType in content)) {
      problems.push(
        `${where}: content type ${contentType || '(none)'} (documented: ${Object.keys(content).join(', ')})`,
      );
      return problems;
    }
    if (!/[/+]json$/.test(contentType)) return problems;
    let body: unknown;
    try {
      body = JSON.parse(response.body);
    } catch {
      problems.push(`${where}: the body is not JSON`);
      return problems;
    }
    const pointer = [
      'paths',
      route.path,
      method,
      'responses',
      documented === operation.responses.default ? 'default' : status,
      'content',
      contentType,
      'schema',
    ]
      .map(escapePointerToken)
      .join('/');
    let validate = validators.get(pointer);
    if (validate === undefined) {
      validate = ajv.getSchema(`openapi#/${pointer}`)!;
      validators.set(pointer, validate);
    }
    if (!validate(body)) {
      for (const error of validate.errors ?? []) {
        problems.push(`${where}: body${error.instancePath} ${describeError(error)}`);
      }
    }
    return problems;
  };
  return { check };
}

interface Operation {
  responses: Record<
    string,
    {
      headers?: Record<string, { required?: boolean }>;
      content?: Record<string, unknown>;
    }
  >;
}

/** ajv's message, without a pattern too long to read (zod's uuid and date-time patterns). */
function describeError(error: ErrorObject): string {
  const pattern = error.params.pattern as unknown;
  if (error.keyword === 'pattern' && typeof pattern === 'string' && pattern.length > 40) {
    return 'must match the pattern of its schema';
  }
  return error.message ?? error.keyword;
}

function segmentPattern(segment: string): string {
  return segment.startsWith('{') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
