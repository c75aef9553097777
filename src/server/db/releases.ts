import type {Db} from './database.js'

/** The id of the fleet's release of this commit (only a successful one when asked), or undefined. */
export async function releaseIdOfCommit(db: Db, fleetId: number, commit: string, options: {successful?: boolean} = {}): Promise<number | undefined> {
  const release = await db
    .selectFrom('release')
    .select('id')
    .where('belongs_to__application', '=', fleetId)
    .where('commit', '=', commit)
    .$if(options.successful === true, (query) => query.where('status', '=', 'success'))
    .executeTakeFirst()
  return release?.id
}
