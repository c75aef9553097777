import type {Db} from './db/database.js'
import {countUsers, createUser} from './db/users.js'
import {generatePassword} from './auth/passwords.js'

export interface AdminSettings {
  email?: string
  username?: string
  password?: string
}

export interface CreatedAdmin {
  username: string
  email: string
  /** Set when the password was generated here: it is shown once and never stored in clear. */
  generatedPassword?: string
}

/** On an empty database, creates the first user (and their personal organization); otherwise does nothing. */
export async function ensureAdmin(db: Db, settings: AdminSettings): Promise<CreatedAdmin | undefined> {
  if ((await countUsers(db)) > 0) return undefined
  const username = settings.username || 'admin'
  const email = settings.email || `${username}@localhost`
  const generatedPassword = settings.password ? undefined : generatePassword()
  await createUser(db, {email, username, password: settings.password || (generatedPassword as string)})
  return {username, email, generatedPassword}
}
