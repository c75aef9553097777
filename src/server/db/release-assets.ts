import type {Db} from './database.js'

/** The ids of every release asset row. */
export async function releaseAssetIds(db: Db): Promise<number[]> {
  return (await db.selectFrom('release_asset').select('id').execute()).map((row) => row.id)
}

/** The stored `asset` of a release asset (its JSON text, null before a file is uploaded), or undefined when there is no such row. */
export async function releaseAssetFileOf(db: Db, id: number): Promise<string | null | undefined> {
  const row = await db.selectFrom('release_asset').select('asset').where('id', '=', id).executeTakeFirst()
  return row?.asset
}

/** Records the file a release asset now has (its href, name, type and size). */
export async function setReleaseAssetFile(db: Db, id: number, asset: object): Promise<void> {
  await db.updateTable('release_asset').set({asset: JSON.stringify(asset)}).where('id', '=', id).execute()
}

export async function deleteReleaseAsset(db: Db, id: number): Promise<void> {
  await db.deleteFrom('release_asset').where('id', '=', id).execute()
}
