import type {FastifyInstance} from 'fastify'

import {verifyLogin} from '../auth/passwords.js'
import {signSession} from '../auth/tokens.js'
import {authenticatedActor, type ServerContext, userActor} from '../context.js'
import {findUserByLogin, rotateSessionSecret, sessionSecretOf} from '../db/users.js'
import {badRequest, HttpError, unauthorized} from '../http-errors.js'

/** Logging in, refreshing a session and asking who a credential belongs to. */
export function registerAuthRoutes(app: FastifyInstance, context: ServerContext): void {
  app.post('/login_', async (request, reply) => {
    const body = (request.body ?? {}) as {username?: unknown; password?: unknown}
    if (typeof body.username !== 'string' || typeof body.password !== 'string') throw unauthorized()
    const limitKey = `${request.ip}\u0000${body.username.trim().toLowerCase()}`
    const retryAfter = await context.loginLimiter.retryAfterSeconds(limitKey)
    if (retryAfter > 0) throw new HttpError(429, 'too many failed logins, try again later', {'retry-after': String(retryAfter)})
    const user = await findUserByLogin(context.db, body.username)
    const valid = await verifyLogin(body.password, user?.password_hash)
    if (!user || !valid) {
      await context.loginLimiter.recordFailure(limitKey)
      throw unauthorized()
    }

    await context.loginLimiter.reset(limitKey)
    const token = await signSession(context.secret, {id: user.id, jwt_secret: user.jwt_secret, authTime: Date.now()})
    return reply.type('text/plain').send(token)
  })

  app.get('/user/v1/whoami', async (request) => {
    const user = await userActor(context, request)
    return {id: user.userId, username: user.username, email: user.email}
  })

  app.get('/actor/v1/whoami', async (request) => {
    const actor = await authenticatedActor(context, request)
    switch (actor.kind) {
      case 'user': {
        return {id: actor.actorId, actorType: 'user', actorTypeId: actor.userId, username: actor.username, email: actor.email}
      }

      case 'application': {
        return {id: actor.actorId, actorType: 'application', actorTypeId: actor.applicationId, slug: actor.slug}
      }

      case 'device': {
        return {id: actor.actorId, actorType: 'device', actorTypeId: actor.deviceId, uuid: actor.uuid}
      }
    }
  })

  // [flotilla] balena has no way to end a session but rotating the user's jwt_secret; this does it: every session
  // token of the user (and any refreshed from one) stops working at once. API keys are revoked on their own.
  app.post('/user/v1/logout', async (request, reply) => {
    const user = await userActor(context, request)
    if (user.via !== 'session') throw badRequest('an API key is not a session: revoke it with "flotilla api-key revoke"')
    await rotateSessionSecret(context.db, user.userId)
    return reply.code(200).type('text/plain').send('OK')
  })

  app.get('/user/v1/refresh-token', async (request, reply) => {
    const user = await userActor(context, request)
    // A refreshed session keeps the time of the login it descends from; an API key never counts as a fresh login.
    const token = await signSession(context.secret, {id: user.userId, jwt_secret: await sessionSecretOf(context.db, user.userId), authTime: user.authTime ?? 0})
    return reply.type('text/plain').send(token)
  })
}
