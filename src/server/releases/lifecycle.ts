import {randomBytes} from 'node:crypto'

import type {Insertable} from 'kysely'

import type {Db} from '../db/database.js'
import type {ReleaseTable} from '../db/schema.js'
import {dialectOf} from '../db/dialect.js'
import {now} from '../db/values.js'
import {INSTANCE_REFRESH_MS, INSTANCE_TIMEOUT_MS} from '../gateway/instance-registry.js'
import {badRequest, HttpError} from '../http-errors.js'

/**
 * The statuses a release is stored with (balena's). A release is created `running` whether a client builds it
 * (balena deploy) or our builder does: balena's clients know no separate "created" or "building" status, so
 * the two are one state here. It then ends once, in one of the other statuses, and stays as it ended.
 */
export const RELEASE_STATUSES = ['running', 'success', 'failed', 'error', 'cancelled', 'interrupted'] as const
export type ReleaseStatus = (typeof RELEASE_STATUSES)[number]
export type EndedStatus = Exclude<ReleaseStatus, 'running'>

/** The statuses each status may move to. */
const NEXT_STATUSES: Record<ReleaseStatus, readonly ReleaseStatus[]> = {
  running: ['success', 'failed', 'error', 'cancelled', 'interrupted'],
  success: [],
  failed: [],
  error: [],
  cancelled: [],
  interrupted: [],
}

export function isReleaseStatus(value: unknown): value is ReleaseStatus {
  return typeof value === 'string' && (RELEASE_STATUSES as readonly string[]).includes(value)
}

/** Whether a release of status `from` may be given status `to`; the same status again changes nothing and is allowed. */
export function mayMove(from: ReleaseStatus, to: ReleaseStatus): boolean {
  return from === to || NEXT_STATUSES[from].includes(to)
}

/** A change the lifecycle does not allow (an ended release started again, a final one made a draft): a 400 through the API. */
export class ReleaseTransitionError extends HttpError {
  constructor(
    readonly releaseId: number,
    readonly from: string,
    readonly to: string,
    why: string,
  ) {
    super(400, `release ${releaseId} is ${from}: ${why}`)
    this.name = 'ReleaseTransitionError'
  }
}

function checkStatus(value: unknown): ReleaseStatus {
  if (!isReleaseStatus(value)) throw badRequest(`release.status must be one of ${RELEASE_STATUSES.join(', ')}`)
  return value
}

function checkMove(releaseId: number, from: string, to: ReleaseStatus): void {
  if (!mayMove(from as ReleaseStatus, to)) throw new ReleaseTransitionError(releaseId, from, to, `it cannot become ${to} — only a running release ends, and it ends once`)
}

/** What ends a build: its status, its log, and the composition it was built from when it got that far. */
export interface BuildEnding {
  status: EndedStatus
  buildLog: string
  composition?: unknown
}

/** The interruption of cut-off builds while the server runs (see {@link ReleaseLifecycle.startInterruptingCutOffBuilds}). */
export interface BuildInterruptions {
  stop(): void
}

export interface BuildInterruptionOptions {
  /** A sweep that failed: it is tried again at the next one. */
  onError: (error: unknown) => void
  /** How often servers sharing a database look for the builds of stopped instances. */
  sweepMs?: number
  /** How long an instance may be silent before it counts as stopped. */
  instanceTimeoutMs?: number
}

/** A release made elsewhere and recorded when it is already built (an OS image the server publishes as a hostApp release). */
export interface FinishedRelease {
  fleetId: number
  commit: string
  /** Its version as written, and the semver core and revision read from it (0.0.0 and none when it is no semver). */
  rawVersion: string
  semver: string
  revision: number | null
}

/** Values of a release a client creates or changes through the API (pine field names, API values). */
type ReleaseValues = Record<string, unknown>

/**
 * The release lifecycle, the one place that creates, ends and promotes releases, for the builder and the API
 * alike: created `running`, ended once (success, failed, error, cancelled, or interrupted when the server
 * stopped during its build), and, once successful, final and valid, the target of its fleet when the fleet
 * tracks the latest release (is not pinned) and the release is newer than the fleet's target.
 *
 * Each transition does its writes in one transaction and, when it may have changed a target, calls
 * `targetsMaybeChanged` after the commit. Given a transaction (the API's write), it works inside it, and
 * telling of changed targets is that transaction's owner's duty, once it commits.
 */
export class ReleaseLifecycle {
  /**
   * `instanceId`: the server instance whose builder makes the builds this creates (gateway/instance-registry.ts),
   * recorded with each so that only an instance that stopped has its builds interrupted.
   */
  constructor(
    private readonly db: Db,
    private readonly targetsMaybeChanged: () => void = () => undefined,
    private readonly instanceId = 'this instance',
  ) {}

  /** A new running release our builder builds for a fleet; a draft is not final, so never a target until finalized. */
  async createBuild(build: {fleetId: number; userId: number; draft: boolean}): Promise<number> {
    return this.transact(async (trx) => {
      const releaseId = await insertBuild(trx, build)
      await trx.insertInto('release_build').values({release: releaseId, instance: this.instanceId}).execute()
      return releaseId
    })
  }

  /** The defaults and checks of a release a client creates (balena deploy creates it `running`, then ends it). */
  prepareNew(values: ReleaseValues): void {
    for (const [name, value] of Object.entries({status: 'running', source: 'cloud', is_final: true, is_invalidated: false, semver: '0.0.0', composition: {}, start_timestamp: now()})) {
      if (values[name] === undefined) values[name] = value
    }

    checkStatus(values.status)
  }

  /**
   * Ends a running build; a successful one becomes its fleet's target when newer (see {@link promoteIfNewer}).
   * The same ending again changes nothing (the client cancelled the release and the builder then stopped).
   */
  async finish(releaseId: number, ending: BuildEnding): Promise<void> {
    const promoted = await this.transact(async (trx) => {
      const release = await trx.selectFrom('release').select('status').where('id', '=', releaseId).executeTakeFirst()
      // Gone (a client deleted it) or already so: nothing is left to end.
      if (!release || release.status === ending.status) return false
      checkMove(releaseId, release.status, ending.status)
      const composition = ending.composition === undefined ? {} : {composition: JSON.stringify(ending.composition)}
      await trx.updateTable('release').set({status: ending.status, end_timestamp: now(), build_log: ending.buildLog, ...composition}).where('id', '=', releaseId).execute()
      await trx.deleteFrom('release_build').where('release', '=', releaseId).execute()
      await endUnfinishedImages(trx, [releaseId])
      return promoteIfNewer(trx, [releaseId])
    })
    if (promoted) this.targetsMaybeChanged()
  }

  /** Records a release that is final and successful from the start; it becomes its fleet's target when newer. */
  async recordFinished(release: FinishedRelease): Promise<number> {
    const {releaseId, promoted} = await this.transact(async (trx) => {
      const releaseId = await insertFinished(trx, release)
      return {releaseId, promoted: await promoteIfNewer(trx, [releaseId])}
    })
    if (promoted) this.targetsMaybeChanged()
    return releaseId
  }

  /**
   * Invalidates a release (it can no longer be pinned or tracked), or makes it valid again, as the API's
   * `is_invalidated` does: a release made valid again becomes its fleet's target when newer.
   */
  async setInvalidated(releaseId: number, invalidated: boolean): Promise<void> {
    const promoted = await this.transact(async (trx) => {
      await trx.updateTable('release').set({is_invalidated: invalidated ? 1 : 0}).where('id', '=', releaseId).execute()
      return promoteIfNewer(trx, [releaseId])
    })
    if (promoted) this.targetsMaybeChanged()
  }

  /** Ends a running build as failed, saying why. */
  fail(releaseId: number, message: string): Promise<void> {
    return this.finish(releaseId, {status: 'failed', buildLog: `[Error] ${message}`})
  }

  /** The status of a release now, or undefined when there is none: a running build looks whether a client cancelled it. */
  async statusOf(releaseId: number): Promise<string | undefined> {
    const release = await this.db.selectFrom('release').select('status').where('id', '=', releaseId).executeTakeFirst()
    return release?.status
  }

  /**
   * Refuses what a client's change of releases may not do, before it is written: an unknown status, a status an
   * ended release cannot take, a final release made a draft again.
   */
  async checkChange(releaseIds: number[], values: ReleaseValues): Promise<void> {
    if (values.status === undefined && values.is_final !== false) return
    const to = values.status === undefined ? undefined : checkStatus(values.status)
    const releases = await this.db.selectFrom('release').select(['id', 'status', 'is_final']).where('id', 'in', releaseIds).execute()
    for (const release of releases) {
      if (to) checkMove(release.id, release.status, to)
      if (values.is_final === false && release.is_final) throw new ReleaseTransitionError(release.id, 'final', 'draft', 'a final release cannot become a draft again')
    }
  }

  /** After a client created or changed releases: the images of an unsuccessful one end with it, and a successful one is promoted when newer. */
  async settle(releaseIds: number[]): Promise<void> {
    const promoted = await this.transact(async (trx) => {
      await endUnfinishedImages(trx, releaseIds)
      return promoteIfNewer(trx, releaseIds)
    })
    if (promoted) this.targetsMaybeChanged()
  }

  /** Makes each successful, final, valid release its fleet's target when the fleet tracks the latest release and the release is newer than its target. */
  async promoteIfNewer(releaseIds: number[]): Promise<boolean> {
    const promoted = await this.transact((trx) => promoteIfNewer(trx, releaseIds))
    if (promoted) this.targetsMaybeChanged()
    return promoted
  }

  /**
   * Interrupts the builds the stop of a server cut off, from the server's start: on SQLite (one server) every
   * unfinished build, once, at start; on PostgreSQL, where other instances may be building, only the builds of
   * instances not seen for `instanceTimeoutMs`, at start and then every `sweepMs`. A failure at start rejects;
   * one of a later sweep goes to `onError`.
   */
  async startInterruptingCutOffBuilds(options: BuildInterruptionOptions): Promise<BuildInterruptions> {
    if (dialectOf(this.db) === 'sqlite') {
      await this.interruptUnfinishedBuilds()
      return {stop: () => undefined}
    }

    const timeoutMs = options.instanceTimeoutMs ?? INSTANCE_TIMEOUT_MS
    const interruptStopped = () => this.interruptBuildsOfStoppedInstances(new Date(Date.now() - timeoutMs).toISOString())
    await interruptStopped()
    const sweep = setInterval(() => interruptStopped().catch(options.onError), options.sweepMs ?? INSTANCE_REFRESH_MS)
    sweep.unref()
    return {stop: () => clearInterval(sweep)}
  }

  /**
   * A build that was running when the server stopped can never finish: say so rather than leave it "running",
   * for the release and for each of its images that was still being built. For the only server's start
   * (SQLite): every release still running there, built here or deployed by a client, was cut off by the stop.
   */
  async interruptUnfinishedBuilds(): Promise<number[]> {
    const running = await this.db.selectFrom('release').select('id').where('status', '=', 'running').where('source', '=', 'cloud').execute()
    return this.interrupt(running.map((release) => release.id))
  }

  /**
   * The same for servers sharing one database (PostgreSQL): only the builds of instances no longer alive (not
   * seen since `aliveSince`, an ISO date) are interrupted; those of live instances, and releases clients deploy, run on.
   */
  async interruptBuildsOfStoppedInstances(aliveSince: string): Promise<number[]> {
    const alive = this.db.selectFrom('server_instance').select('id').where('last_seen_at', '>', aliveSince)
    const orphaned = await this.db.selectFrom('release_build').select('release').where('instance', 'not in', alive).execute()
    return this.interrupt(orphaned.map((build) => build.release))
  }

  private async interrupt(candidates: number[]): Promise<number[]> {
    if (candidates.length === 0) return []
    return this.transact(async (trx) => {
      await trx.deleteFrom('release_build').where('release', 'in', candidates).execute()
      const running = await trx.selectFrom('release').select('id').where('status', '=', 'running').where('id', 'in', candidates).execute()
      const releaseIds = running.map((release) => release.id)
      if (releaseIds.length === 0) return []
      await trx.updateTable('release').set({status: 'interrupted', end_timestamp: now()}).where('id', 'in', releaseIds).execute()
      await endUnfinishedImages(trx, releaseIds, 'the server stopped during the build')
      return releaseIds
    })
  }

  private transact<T>(work: (trx: Db) => Promise<T>): Promise<T> {
    return this.db.isTransaction ? work(this.db) : this.db.transaction().execute(work)
  }
}

/**
 * A new release row: what every release starts with (created now, cloud-built, valid, no composition yet), and
 * what this one is.
 */
async function insertRelease(trx: Db, row: Omit<Insertable<ReleaseTable>, 'created_at' | 'composition' | 'source' | 'is_invalidated'>): Promise<number> {
  const release = await trx
    .insertInto('release')
    .values({created_at: now(), composition: '{}', source: 'cloud', is_invalidated: 0, ...row})
    .returning('id')
    .executeTakeFirstOrThrow()
  return release.id
}

/** The row of a build our builder makes. */
function insertBuild(trx: Db, build: {fleetId: number; userId: number; draft: boolean}): Promise<number> {
  return insertRelease(trx, {
    belongs_to__application: build.fleetId,
    commit: randomBytes(16).toString('hex'),
    status: 'running',
    start_timestamp: now(),
    is_final: build.draft ? 0 : 1,
    semver: '0.0.0',
    is_created_by__user: build.userId,
  })
}

/** The row of a release recorded finished. */
function insertFinished(trx: Db, release: FinishedRelease): Promise<number> {
  const timestamp = now()
  return insertRelease(trx, {
    belongs_to__application: release.fleetId,
    commit: release.commit,
    status: 'success',
    start_timestamp: timestamp,
    end_timestamp: timestamp,
    is_final: 1,
    semver: release.semver,
    revision: release.revision,
    raw_version: release.rawVersion,
    variant: '',
  })
}

/**
 * The images still being built of releases that ended without success end with them, in the same status
 * (balena's builder writes `Running` at first, our build steps `running`).
 */
async function endUnfinishedImages(trx: Db, releaseIds: number[], message?: string): Promise<void> {
  const ended = await trx.selectFrom('release').select(['id', 'status']).where('id', 'in', releaseIds).where('status', 'not in', ['running', 'success']).execute()
  for (const release of ended) {
    await trx
      .updateTable('image')
      .set({status: release.status, end_timestamp: now(), ...(message === undefined ? {} : {error_message: message})})
      .where('id', 'in', trx.selectFrom('image__is_part_of__release').select('image').where('is_part_of__release', '=', release.id))
      .where('status', 'in', ['running', 'Running'])
      .execute()
  }
}

/** The rule "a fleet tracks its newest successful final release unless pinned": ids grow with creation, so newer is a higher id. */
async function promoteIfNewer(trx: Db, releaseIds: number[]): Promise<boolean> {
  let promoted = false
  const releases = await trx
    .selectFrom('release')
    .select(['id', 'belongs_to__application as fleetId'])
    .where('id', 'in', releaseIds)
    .where('status', '=', 'success')
    .where('is_final', '=', 1)
    .where('is_invalidated', '=', 0)
    .orderBy('id')
    .execute()
  for (const release of releases) {
    const result = await trx
      .updateTable('application')
      .set({should_be_running__release: release.id})
      .where('id', '=', release.fleetId)
      .where('should_track_latest_release', '=', 1)
      .where((eb) => eb.or([eb('should_be_running__release', 'is', null), eb('should_be_running__release', '<', release.id)]))
      .executeTakeFirst()
    if (Number(result.numUpdatedRows) > 0) promoted = true
  }

  return promoted
}
