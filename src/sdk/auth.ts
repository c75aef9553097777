import {ApiError, ExpectedError, NotLoggedInError} from '../errors.js'
import type {FleetClient} from './client.js'

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
