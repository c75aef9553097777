import type {Db} from './database.js'

/** The release assets that have a file recorded but none stored in the database (uploaded before files moved there). */
export async function assetsWithoutContent(db: Db): Promise<number[]> {
  const rows = await db
    .selectFrom('release_asset')
    .select('id')
    .where('asset', 'is not', null)
    .where('id', 'not in', db.selectFrom('release_asset_content').select('asset'))
    .execute()
  return rows.map((row) => row.id)
}

/** The stored `asset` of a release asset (its JSON text, null before a file is uploaded), or undefined when there is no such row. */
export async function releaseAssetFileOf(db: Db, id: number): Promise<string | null | undefined> {
  const row = await db.selectFrom('release_asset').select('asset').where('id', '=', id).executeTakeFirst()
  return row?.asset
}

/** Stores the file a release asset now has, and records what clients read of it (its href, name, type and size). */
export async function setReleaseAssetFile(db: Db, id: number, asset: object, content: Uint8Array): Promise<void> {
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('release_asset_content')
      .values({asset: id, content})
      .onConflict((conflict) => conflict.column('asset').doUpdateSet({content}))
      .execute()
    await trx.updateTable('release_asset').set({asset: JSON.stringify(asset)}).where('id', '=', id).execute()
  })
}

/** A release asset's stored file, or undefined when it has none. */
export async function releaseAssetContentOf(db: Db, id: number): Promise<Buffer | undefined> {
  const row = await db.selectFrom('release_asset_content').select('content').where('asset', '=', id).executeTakeFirst()
  // PostgreSQL gives a Buffer, SQLite (libsql) an ArrayBuffer.
  return row && Buffer.from(row.content instanceof ArrayBuffer ? new Uint8Array(row.content) : row.content)
}

/** Stores the file of an asset uploaded before files moved into the database, unless one is stored by now. */
export async function importReleaseAssetContent(db: Db, id: number, content: Uint8Array): Promise<void> {
  await db.insertInto('release_asset_content').values({asset: id, content}).onConflict((conflict) => conflict.column('asset').doNothing()).execute()
}

export async function deleteReleaseAsset(db: Db, id: number): Promise<void> {
  await db.deleteFrom('release_asset').where('id', '=', id).execute()
}
