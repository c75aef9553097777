import {ApiError, ExpectedError, NotLoggedInError} from '../errors.js'
import type {FleetClient} from './client.js'
import {isFlotillaUrl} from './endpoints.js'

export interface Actor {
  id: number
  actorType: 'user' | 'application' | 'device'
  actorTypeId: number
  username?: string
  email?: string
  slug?: string
  uuid?: string
}

/** Exchanges an email (or username) and password for a session token. */
export async function loginWithCredentials(client: FleetClient, username: string, password: string): Promise<string> {
  try {
    const token = await client.request<string>('POST', '/login_', {json: {username, password}, anonymous: true})
    if (typeof token !== 'string' || token === '') throw new ExpectedError('the server answered the login without a token')
    return token.trim()
  } catch (error) {
    if (error instanceof NotLoggedInError || (error instanceof ApiError && error.statusCode === 401)) {
      throw new ExpectedError('wrong email/username or password — check them and try again')
    }

    throw error
  }
}

export async function whoami(client: FleetClient): Promise<Actor> {
  return client.request<Actor>('GET', '/actor/v1/whoami')
}

/** What `endSession` did: ended the session, found none to end (an API key), or met a server that cannot end one. */
export type SessionEnd = 'ended' | 'not-a-session' | 'unsupported'

const JWT_PATTERN = /^[\w-]+\.[\w-]+\.[\w-]*$/

/**
 * Ends a session token on the server, with every other session token of the user [flotilla `POST /user/v1/logout`].
 * balena's API has no such call (balena-cli only forgets the token), so a balena-style remote is `unsupported`, as
 * is a server answering 404; an API key is no session (it is revoked with `api-key revoke`). A token the server
 * already refuses has nothing left to end.
 */
export async function endSession(client: FleetClient, remote: string, token: string): Promise<SessionEnd> {
  if (!JWT_PATTERN.test(token)) return 'not-a-session'
  if (!isFlotillaUrl(remote)) return 'unsupported'
  try {
    await client.request('POST', '/user/v1/logout')
    return 'ended'
  } catch (error) {
    if (error instanceof NotLoggedInError || (error instanceof ApiError && error.statusCode === 401)) return 'ended'
    if (error instanceof ApiError && error.statusCode === 404) return 'unsupported'
    throw error
  }
}
