/**
 * Schemas every route uses: the error body, path parameters, the small replies of deletes, and helpers. Route
 * replies are serialised from their schemas (fast-json-stringify), which drops any property a schema does not
 * name: a field clients read must be in the schema.
 */
import { Type, type Static, type TSchema, type TUnsafe } from '@sinclair/typebox';

export const nullable = <T extends TSchema>(t: T, description?: string) => Type.Union([t, Type.Null()], description ? { description } : {});

/** A JSON object with any keys, each value of schema `t` (additionalProperties, valid in OpenAPI 3.1). */
export const Dict = <T extends TSchema>(t: T, description?: string): TUnsafe<Record<string, Static<T>>> =>
  Type.Unsafe<Record<string, Static<T>>>({ type: 'object', additionalProperties: t, ...(description ? { description } : {}) });

/** Every error: {"error":{"code","message",...}} (more fields name what failed: field, state, name, ...). */
export const ErrorBody = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.String({ description: 'a stable code: INVALID_SPEC, INSTANCE_NOT_FOUND, INVALID_STATE, ...' }),
        message: Type.String(),
        field: Type.Optional(Type.String({ description: 'INVALID_SPEC: the field at fault' })),
        state: Type.Optional(Type.String({ description: 'INVALID_STATE: the state the instance is in' })),
      },
      { additionalProperties: true },
    ),
  },
  { title: 'Error' },
);
export type ErrorBody = Static<typeof ErrorBody>;

const err = (description: string) => Type.Object({ error: ErrorBody.properties.error }, { title: 'Error', description });

/** The error replies of a route, by status. */
export const E = {
  400: err('the request is not valid (INVALID_SPEC with the field, or another 400 code)'),
  401: err('UNAUTHORIZED: a bearer token is required (TCP API); a revoked or expired one is refused, saying so'),
  403: err('FORBIDDEN: the token\'s role is below the one the operation needs (TCP API); the message names both'),
  404: err('not found (INSTANCE_NOT_FOUND, IMAGE_NOT_FOUND, ...)'),
  409: err('not possible now (INVALID_STATE, ALREADY_EXISTS, *_IN_USE, INSUFFICIENT_RESOURCES, ...)'),
  413: err('TOO_LARGE: the upload is larger than the daemon takes (CORRAL_UPLOAD_MAX)'),
  429: err('TOO_MANY_CLIENTS: the stream already has as many clients as it takes'),
  500: err('the daemon failed (QEMU_FAILED, NETWORK_FAILED, INTERNAL, ...)'),
} as const;

/** The usual error replies: a bad request, no such thing, not possible now, a failure. */
export const errors = { 400: E[400], 401: E[401], 404: E[404], 409: E[409], 500: E[500] } as const;

export const NameParams = Type.Object({ name: Type.String() }, { additionalProperties: false });

export const Deleted = Type.Object({ deleted: Type.String({ description: 'the name of what was deleted' }) });
