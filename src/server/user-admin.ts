import {ExpectedError, NotFoundError} from '../errors.js'
import {generatePassword} from './auth/passwords.js'
import {databaseLocation, openDatabase} from './db/database.js'
import {addMembership, createUser, findUserByLogin, setPassword} from './db/users.js'
import {HttpError} from './http-errors.js'

/** The server's database: PostgreSQL at `databaseUrl`, else SQLite in `dataDir`. */
interface DatabaseOptions {
  dataDir: string
  databaseUrl?: string
}

export interface AddUserOptions extends DatabaseOptions {
  email: string
  username: string
  /** Generated (and returned) when absent. */
  password?: string
  /** Handle of an existing organization the user also joins. */
  organization?: string
}

/** Adds a user to a server's database directly; an organization to join is checked before anything is written. */
export async function addServerUser(options: AddUserOptions): Promise<{username: string; email: string; generatedPassword?: string}> {
  const db = await openDatabase(databaseLocation(options))
  try {
    if (options.organization) {
      const organization = await db.selectFrom('organization').select('id').where('handle', '=', options.organization.toLowerCase()).executeTakeFirst()
      if (!organization) throw new NotFoundError('organization', options.organization, 'leave out --organization or use the handle of an existing one')
    }

    const generatedPassword = options.password === undefined ? generatePassword() : undefined
    const user = await createUser(db, {email: options.email, username: options.username, password: options.password ?? (generatedPassword as string)})
    if (options.organization) await addMembership(db, user.id, options.organization)
    return {username: user.username, email: user.email, generatedPassword}
  } catch (error) {
    throw error instanceof HttpError ? new ExpectedError(error.message) : error
  } finally {
    await db.destroy()
  }
}

/** Sets a user's password in a server's database directly (generated and returned when absent); every session of the user ends. */
export async function setServerUserPassword(options: DatabaseOptions & {login: string; password?: string}): Promise<{username: string; generatedPassword?: string}> {
  const db = await openDatabase(databaseLocation(options))
  try {
    const user = await findUserByLogin(db, options.login)
    if (!user) throw new NotFoundError('user', options.login, 'give the username or email of an existing user')
    const generatedPassword = options.password === undefined ? generatePassword() : undefined
    await setPassword(db, user.id, options.password ?? (generatedPassword as string))
    return {username: user.username, generatedPassword}
  } catch (error) {
    throw error instanceof HttpError ? new ExpectedError(error.message) : error
  } finally {
    await db.destroy()
  }
}
