/**
 * `culex-mqtt/fastify`: the broker's {@link dashboard} as a Fastify plugin, mounted under the
 * plugin's `prefix` like any other Fastify plugin. Needs `fastify` 5 (an optional peer dependency
 * of culex-mqtt); this module only uses its types, so importing it loads no part of Fastify.
 *
 * ```ts
 * import Fastify from 'fastify'
 * import { culexDashboard } from 'culex-mqtt/fastify'
 * const fastify = Fastify()
 * await fastify.register(culexDashboard, { broker, prefix: '/culex', authorizeAdmin })
 * await fastify.listen({ port: 8080, host: '127.0.0.1' })  // the page at http://127.0.0.1:8080/culex/
 * ```
 * @packageDocumentation
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { dashboard, type DashboardOptions, type DashboardSource } from './dashboard/handler.js'

export type { AdminCredentials, AuthorizeAdminHook, DashboardOptions, DashboardSource } from './dashboard/handler.js'

/**
 * Options of {@link culexDashboard}: the broker, and the options of {@link dashboard} except
 * `prefix`, which the plugin takes from where Fastify mounts it (the `prefix` register option,
 * nested prefixes included).
 */
export interface CulexDashboardPluginOptions extends Omit<DashboardOptions, 'prefix'> {
  /** The broker to show (a `Broker` fits). */
  broker: DashboardSource
}

/** The methods the dashboard answers (others under the prefix get Fastify's 404). */
const METHODS = ['GET', 'HEAD', 'POST', 'DELETE']

/**
 * The dashboard and its JSON API as a Fastify plugin: `GET`, `HEAD`, `POST` and `DELETE` routes
 * for `/` and `/*` under the register `prefix` (the page at `<prefix>/`; `<prefix>` is redirected
 * there), each handing the raw request and response to {@link dashboard}'s handler (the reply is
 * hijacked: Fastify's `onSend` hooks and serializers do not see these responses).
 *
 * The routes stay encapsulated in the plugin, with a content-type parser of their own that
 * leaves request bodies unread (the dashboard's state-changing requests carry none), so the host's
 * parsers, hooks and other routes are untouched. A path under the prefix the dashboard does not
 * serve gets the dashboard's JSON 404 (`{"error":"not found"}`), not the host's not-found handler;
 * with `authorizeAdmin`, it needs credentials too (else 401), as every request under the prefix.
 *
 * ```ts
 * await fastify.register(culexDashboard, {
 *   broker,
 *   prefix: '/culex',
 *   authorizeAdmin: ({ username, password }) => check(username, password),
 * })
 * ```
 */
export const culexDashboard: FastifyPluginAsync<CulexDashboardPluginOptions> = async (fastify, options) => {
  const { broker, ...rest } = options
  // Fastify hands the plugin its register options too (`prefix`, `logLevel`...): the prefix the
  // handler strips is the full one of this instance, which `fastify.prefix` has.
  const handler = dashboard(broker, { ...rest, prefix: fastify.prefix })
  fastify.removeAllContentTypeParsers()
  fastify.addContentTypeParser('*', (_request, _payload, done) => done(null))
  const serve = (request: FastifyRequest, reply: FastifyReply): void => {
    reply.hijack()
    handler(request.raw, reply.raw)
  }
  for (const url of ['/', '/*']) fastify.route({ method: METHODS, url, handler: serve })
}
