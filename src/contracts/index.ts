export type {
  HttpHeaderContract,
  HttpMethod,
  HttpOperation,
  HttpResponseContract,
} from './http-operation.ts';
export {
  openApiDocument,
  type JsonSchema,
  type OpenApiDocument,
  type OpenApiDocumentOptions,
} from './openapi-document.ts';
export { problemDetailsSchema, problemContentType } from './problem-schema.ts';
export {
  asyncApiDocument,
  type AsyncApiDocument,
  type AsyncApiDocumentOptions,
  type MessageChannelContract,
} from './asyncapi-document.ts';
export { asyncApiBreaks, openApiBreaks } from './breaking-changes.ts';
export { schemaNarrowings, schemaWidenings } from './schema-widenings.ts';
