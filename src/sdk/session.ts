import {ApiError, ExpectedError} from '../errors.js'
import {type Actor, loginWithCredentials, whoami} from './auth.js'
import {FleetClient} from './client.js'

export type LoginMethod = {token: string} | {username: string; password: string}

/** Logs in against a remote and proves the credential works before anything is stored. */
export async function establishSession(remote: string, method: LoginMethod, clientName: string): Promise<{token: string; actor: Actor}> {
  const client = new FleetClient({remote, clientName})
  const token = 'token' in method ? method.token : await loginWithCredentials(client, method.username, method.password)
  if (token === '') throw new ExpectedError('the token is empty — pass it with --token <token> or on stdin with --token -')
  client.setToken(token)
  try {
    return {token, actor: await whoami(client)}
  } catch (error) {
    if (error instanceof ApiError && error.statusCode === 401) {
      throw new ExpectedError('the server rejected that token — check it, or generate a new one with "flotilla api-key generate"')
    }

    throw error
  }
}
