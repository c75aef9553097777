import {randomBytes} from 'node:crypto'

import {hashPassword} from '../auth/passwords.js'
import {badRequest, HttpError, isUniqueConstraintError} from '../http-errors.js'
import type {Db} from './database.js'
import {now} from './values.js'

export interface NewUser {
  email: string
  username: string
  password: string
}

export interface CreatedUser {
  id: number
  actorId: number
  username: string
  email: string
  organizationId: number
}

const newSessionSecret = () => randomBytes(16).toString('hex')

const USERNAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9_-]{0,61}$/
const EMAIL_PATTERN = /^[^\s@]+@[^\s@]+$/

/** Creates a user with their personal organization (handle and name from the username), in one transaction. */
export async function createUser(db: Db, user: NewUser): Promise<CreatedUser> {
  if (!USERNAME_PATTERN.test(user.username)) throw badRequest(`invalid username "${user.username}": use letters, digits, "-" and "_" (up to 62)`)
  if (!EMAIL_PATTERN.test(user.email)) throw badRequest(`invalid email address "${user.email}"`)
  if (user.password.length < 8) throw badRequest('a password needs at least 8 characters')
  const passwordHash = await hashPassword(user.password)
  try {
    return await db.transaction().execute(async (trx) => {
      const createdAt = now()
      const actor = await trx.insertInto('actor').values({kind: 'user'}).returning('id').executeTakeFirstOrThrow()
      const created = await trx
        .insertInto('user')
        .values({
          created_at: createdAt,
          username: user.username,
          email: user.email.toLowerCase(),
          password_hash: passwordHash,
          jwt_secret: newSessionSecret(),
          actor: actor.id,
        })
        .returning('id')
        .executeTakeFirstOrThrow()
      const organization = await trx
        .insertInto('organization')
        .values({created_at: createdAt, name: user.username, handle: user.username.toLowerCase()})
        .returning('id')
        .executeTakeFirstOrThrow()
      await trx.insertInto('organization_membership').values({created_at: createdAt, user: created.id, is_member_of__organization: organization.id}).execute()
      return {id: created.id, actorId: actor.id, username: user.username, email: user.email.toLowerCase(), organizationId: organization.id}
    })
  } catch (error) {
    if (isUniqueConstraintError(error)) throw new HttpError(409, `a user or organization named "${user.username}" or with email "${user.email}" already exists (unique)`)
    throw error
  }
}

/** Makes a user a member of an existing organization. */
export async function addMembership(db: Db, userId: number, organizationHandle: string): Promise<void> {
  const organization = await db.selectFrom('organization').select('id').where('handle', '=', organizationHandle.toLowerCase()).executeTakeFirst()
  if (!organization) throw new HttpError(404, `organization "${organizationHandle}" does not exist`)
  await db
    .insertInto('organization_membership')
    .values({created_at: now(), user: userId, is_member_of__organization: organization.id})
    .onConflict((conflict) => conflict.columns(['user', 'is_member_of__organization']).doNothing())
    .execute()
}

/** Gives a user a new password and ends all their sessions, as the old password may be what was stolen. */
export async function setPassword(db: Db, userId: number, password: string): Promise<void> {
  if (password.length < 8) throw badRequest('a password needs at least 8 characters')
  const passwordHash = await hashPassword(password)
  await db.updateTable('user').set({password_hash: passwordHash, jwt_secret: newSessionSecret()}).where('id', '=', userId).execute()
}

/** A new secret in every session token of the user: all of them (and their refreshes) stop working. */
export async function rotateSessionSecret(db: Db, userId: number): Promise<void> {
  await db.updateTable('user').set({jwt_secret: newSessionSecret()}).where('id', '=', userId).execute()
}

/** A user by email or username (case-insensitively), for logging in. */
export async function findUserByLogin(db: Db, login: string) {
  const needle = login.trim().toLowerCase()
  return db
    .selectFrom('user')
    .selectAll()
    .where((eb) => eb.or([eb(eb.fn('lower', ['username']), '=', needle), eb('email', '=', needle)]))
    .executeTakeFirst()
}

export async function countUsers(db: Db): Promise<number> {
  const row = await db.selectFrom('user').select((eb) => eb.fn.countAll<number>().as('count')).executeTakeFirstOrThrow()
  return Number(row.count)
}

/** The secret in every session token of the user, which rotating it revokes. Throws when there is no such user. */
export async function sessionSecretOf(db: Db, userId: number): Promise<string> {
  const user = await db.selectFrom('user').select('jwt_secret').where('id', '=', userId).executeTakeFirstOrThrow()
  return user.jwt_secret
}
