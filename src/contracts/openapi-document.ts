import type { z } from 'zod';
import { InvalidArgumentError } from '../errors/index.ts';
import type { HttpHeaderContract, HttpOperation, HttpResponseContract } from './http-operation.ts';

import { zodJsonSchema, type JsonSchema } from './json-schema.ts';

export type { JsonSchema } from './json-schema.ts';

/** The OpenAPI 3.1 document `openApiDocument` writes: plain JSON, ready to serve or commit. */
export interface OpenApiDocument {
  openapi: '3.1.0';
  info: { title: string; version: string; description?: string };
  servers?: { url: string; description?: string }[];
  paths: Record<string, Record<string, unknown>>;
  components: { schemas: Record<string, JsonSchema>; securitySchemes?: Record<string, unknown> };
  security?: Record<string, string[]>[];
}

export interface OpenApiDocumentOptions {
  info: { title: string; version: string; description?: string };
  servers?: { url: string; description?: string }[];
  /** OpenAPI security scheme objects by name, as the specification spells them. */
  securitySchemes?: Readonly<Record<string, Record<string, unknown>>>;
  /** The schemes operations accept unless they name their own; any one of them will do. */
  security?: readonly string[];
  /**
   * Response bodies by name: where an operation answers with one of these very schemas, the
   * document refers to `#/components/schemas/<name>` instead of repeating it, so clients
   * generate one type. Request bodies are always written in place, as the input they accept.
   */
  schemas?: Readonly<Record<string, z.ZodType>>;
  operations: readonly HttpOperation[];
}

/**
 * Writes the OpenAPI 3.1 document of an API from its operations' zod schemas: request schemas
 * as the input they accept (before transforms and defaults), responses as the output they give.
 * The same schemas parse requests in the handlers, so the published contract and the running
 * code cannot drift apart unnoticed; commit the document and compare it in a test, and a change
 * to the API shows up as a diff of its contract.
 */
export function openApiDocument(options: OpenApiDocumentOptions): OpenApiDocument {
  const named = new Map<z.ZodType, string>();
  const schemas: Record<string, JsonSchema> = {};
  for (const [name, schema] of Object.entries(options.schemas ?? {})) {
    named.set(schema, name);
    schemas[name] = zodJsonSchema(schema, 'output', 'draft-2020-12');
  }
  const schemeNames = new Set(Object.keys(options.securitySchemes ?? {}));
  for (const name of options.security ?? []) assertScheme(name, schemeNames, 'security');

  const paths: Record<string, Record<string, unknown>> = {};
  const operationIds = new Set<string>();
  for (const operation of options.operations) {
    const where = `${operation.method.toUpperCase()} ${operation.path}`;
    if (operationIds.has(operation.operationId)) {
      throw new InvalidArgumentError('operationId', 'unique across the API', operation.operationId);
    }
    operationIds.add(operation.operationId);
    const path = openApiPath(operation);
    const item = (paths[path] ??= {});
    if (item[operation.method] !== undefined) {
      throw new InvalidArgumentError('operations', 'one operation per method and path', where);
    }
    for (const name of operation.security ?? []) assertScheme(name, schemeNames, `security of ${where}`);
    item[operation.method] = operationObject(operation, named);
  }

  return {
    openapi: '3.1.0',
    info: { ...options.info },
    ...(options.servers === undefined ? {} : { servers: options.servers.map((s) => ({ ...s })) }),
    paths,
    components: {
      schemas,
      ...(options.securitySchemes === undefined ? {} : { securitySchemes: { ...options.securitySchemes } }),
    },
    ...(options.security === undefined ? {} : { security: requirement(options.security) }),
  };
}

function operationObject(operation: HttpOperation, named: Map<z.ZodType, string>): Record<string, unknown> {
  const parameters = [
    ...objectParameters(operation.params, 'path', operation),
    ...objectParameters(operation.query, 'query', operation),
    ...Object.entries(operation.headers ?? {}).map(([name, header]) => ({
      name,
      in: 'header',
      ...headerObject(header),
    })),
  ];
  const responses: Record<string, unknown> = {};
  for (const [status, response] of Object.entries(operation.responses)) {
    responses[status] = responseObject(response, named);
  }
  if (Object.keys(responses).length === 0) {
    throw new InvalidArgumentError('responses', 'at least one response', operation.operationId);
  }
  return {
    operationId: operation.operationId,
    summary: operation.summary,
    ...(operation.description === undefined ? {} : { description: operation.description }),
    ...(operation.tags === undefined ? {} : { tags: [...operation.tags] }),
    ...(parameters.length === 0 ? {} : { parameters }),
    ...(operation.body === undefined
      ? {}
      : {
          requestBody: {
            required: true,
            ...(operation.body.description === undefined ? {} : { description: operation.body.description }),
            content: {
              [operation.body.contentType ?? 'application/json']: {
                schema: zodJsonSchema(operation.body.schema, 'input', 'draft-2020-12'),
              },
            },
          },
        }),
    ...(operation.security === undefined ? {} : { security: requirement(operation.security) }),
    responses,
  };
}

function responseObject(
  response: HttpResponseContract,
  named: Map<z.ZodType, string>,
): Record<string, unknown> {
  const headers = Object.entries(response.headers ?? {});
  const name = response.body === undefined ? undefined : named.get(response.body);
  return {
    description: response.description,
    ...(headers.length === 0
      ? {}
      : { headers: Object.fromEntries(headers.map(([key, header]) => [key, headerObject(header)])) }),
    ...(response.body === undefined
      ? {}
      : {
          content: {
            [response.contentType ?? 'application/json']: {
              schema:
                name === undefined
                  ? zodJsonSchema(response.body, 'output', 'draft-2020-12')
                  : { $ref: `#/components/schemas/${name}` },
            },
          },
        }),
  };
}

function headerObject(header: HttpHeaderContract): Record<string, unknown> {
  return {
    description: header.description,
    required: header.required ?? false,
    schema:
      header.schema === undefined
        ? { type: 'string' }
        : zodJsonSchema(header.schema, 'input', 'draft-2020-12'),
  };
}

/** The properties of an object schema as parameters `in` the path or the query. */
function objectParameters(
  schema: z.ZodType | undefined,
  location: 'path' | 'query',
  operation: HttpOperation,
): Record<string, unknown>[] {
  if (schema === undefined) return [];
  const json = zodJsonSchema(schema, 'input', 'draft-2020-12');
  const properties = json.properties as Record<string, JsonSchema> | undefined;
  if (json.type !== 'object' || properties === undefined) {
    throw new InvalidArgumentError(
      location === 'path' ? 'params' : 'query',
      'an object schema',
      `${operation.operationId}: ${String(json.type)}`,
    );
  }
  const required = new Set((json.required as string[] | undefined) ?? []);
  return Object.entries(properties).map(([name, property]) => {
    const { description, ...rest } = property;
    return {
      name,
      in: location,
      required: location === 'path' || required.has(name),
      ...(typeof description === 'string' ? { description } : {}),
      schema: rest,
    };
  });
}

/** `/v1/orders/:id` as `/v1/orders/{id}`, with every `:param` named by the params schema and no other. */
function openApiPath(operation: HttpOperation): string {
  const inPath = [...operation.path.matchAll(/:([A-Za-z0-9_]+)/g)].map((match) => match[1]!);
  const declared =
    operation.params === undefined
      ? []
      : Object.keys(
          (zodJsonSchema(operation.params, 'input', 'draft-2020-12').properties as object | undefined) ?? {},
        );
  const missing = inPath.filter((name) => !declared.includes(name));
  const extra = declared.filter((name) => !inPath.includes(name));
  if (missing.length > 0 || extra.length > 0) {
    throw new InvalidArgumentError(
      'params',
      `the path's parameters (${inPath.join(', ') || 'none'})`,
      `${operation.operationId}: ${declared.join(', ') || 'none'}`,
    );
  }
  return operation.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

function requirement(names: readonly string[]): Record<string, string[]>[] {
  return names.map((name) => ({ [name]: [] }));
}

function assertScheme(name: string, known: ReadonlySet<string>, field: string): void {
  if (!known.has(name)) {
    throw new InvalidArgumentError(field, `one of the securitySchemes (${[...known].join(', ')})`, name);
  }
}
