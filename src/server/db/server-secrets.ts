import type {Db} from './database.js'

/** The secrets every instance of a server must share, by their row's name. */
export type ServerSecretName = 'session-signing' | 'ssh-host-key' | 'registry-token-key'

async function storedSecret(db: Db, name: ServerSecretName): Promise<string | undefined> {
  const row = await db.selectFrom('server_secret').select('value').where('name', '=', name).executeTakeFirst()
  return row?.value
}

/**
 * A secret of the server, kept in its database so that every instance on one database signs and verifies with the
 * same one. Made on first need: `make` gives the value (a stored one it refuses, by returning undefined from
 * `isUsable`, is replaced). When two instances start at once, the first insert wins and both read it back.
 */
export async function sharedSecret(db: Db, name: ServerSecretName, make: () => Promise<string> | string, isUsable: (value: string) => boolean = () => true): Promise<string> {
  const stored = await storedSecret(db, name)
  if (stored !== undefined && isUsable(stored)) return stored
  const value = await make()
  if (stored === undefined) {
    await db.insertInto('server_secret').values({name, value}).onConflict((conflict) => conflict.column('name').doNothing()).execute()
  } else {
    // Replacing an unusable secret: only if nobody has replaced it since.
    await db.updateTable('server_secret').set({value}).where('name', '=', name).where('value', '=', stored).execute()
  }

  return (await storedSecret(db, name)) as string
}
