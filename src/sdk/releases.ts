import {ExpectedError, NotFoundError, UsageError} from '../errors.js'
import type {FleetClient} from './client.js'
import {getFleet} from './fleets.js'
import {odataValue} from './pine.js'

interface ReleaseRow {
  id: number
  commit: string
  status: string
  source: string
  created_at: string
  start_timestamp: string | null
  end_timestamp: string | null
  is_final: boolean
  is_invalidated: boolean
  semver: string | null
  raw_version: string | null
  note: string | null
  composition?: unknown
  belongs_to__application: Array<{slug: string}>
  release_tag: Array<{tag_key: string; value: string}>
}

export interface Release {
  id: number
  commit: string
  status: string
  source: string
  fleet: string
  created_at: string
  start_timestamp: string | null
  end_timestamp: string | null
  is_final: boolean
  is_invalidated: boolean
  semver: string | null
  raw_version: string | null
  note: string | null
  tags: Record<string, string>
  composition?: unknown
}

const SELECT = [
  'id', 'commit', 'status', 'source', 'created_at', 'start_timestamp', 'end_timestamp', 'is_final', 'is_invalidated',
  'semver', 'raw_version', 'note',
]
const EXPAND = 'belongs_to__application($select=slug),release_tag($select=tag_key,value)'

function toRelease(row: ReleaseRow): Release {
  return {
    id: row.id,
    commit: row.commit,
    status: row.status,
    source: row.source,
    fleet: row.belongs_to__application[0]?.slug ?? '',
    created_at: row.created_at,
    start_timestamp: row.start_timestamp,
    end_timestamp: row.end_timestamp,
    is_final: row.is_final,
    is_invalidated: row.is_invalidated,
    semver: row.semver,
    raw_version: row.raw_version,
    note: row.note,
    tags: Object.fromEntries(row.release_tag.map((tag) => [tag.tag_key, tag.value])),
    ...(row.composition === undefined ? {} : {composition: row.composition}),
  }
}

export async function listReleases(client: FleetClient, fleetReference: string): Promise<Release[]> {
  const fleet = await getFleet(client, fleetReference)
  const rows = await client.pine.get<ReleaseRow>('release', {
    $select: SELECT,
    $expand: EXPAND,
    $filter: `belongs_to__application eq ${fleet.id}`,
    $orderby: 'created_at desc',
  })
  return rows.map(toRelease)
}

/** Finds a release by numeric id, full commit, or a unique commit prefix of 7+ characters. */
export async function getRelease(client: FleetClient, reference: string, options: {composition?: boolean} = {}): Promise<Release> {
  let filter: string
  // A commit prefix may be all digits: 7 to 15 of them could name either an id or a commit, so both are asked for.
  if (/^\d{1,6}$/.test(reference)) filter = `id eq ${Number(reference)}`
  else if (/^[\da-f]{32}$/i.test(reference)) filter = `commit eq ${odataValue(reference.toLowerCase())}`
  else if (/^\d{7,15}$/.test(reference)) filter = `id eq ${Number(reference)} or startswith(commit,${odataValue(reference)})`
  else if (/^[\da-f]{7,31}$/i.test(reference)) filter = `startswith(commit,${odataValue(reference.toLowerCase())})`
  else throw new UsageError(`"${reference}" is neither a release id nor a commit (7 or more hex characters)`)
  const rows = await client.pine.get<ReleaseRow>('release', {
    $select: options.composition ? [...SELECT, 'composition'] : SELECT,
    $expand: EXPAND,
    $filter: filter,
    $top: 2,
  })
  if (rows.length === 0) throw new NotFoundError('release', reference, 'run "flotilla release list <fleet>" to see the releases')
  if (rows.length > 1) throw new UsageError(`release "${reference}" is ambiguous — give more characters of its commit`)
  return toRelease(rows[0])
}

export async function finalizeRelease(client: FleetClient, release: Release): Promise<void> {
  if (release.status !== 'success') throw new ExpectedError(`release ${release.commit.slice(0, 7)} is ${release.status}: only successful releases can be finalized`)
  await client.pine.patch('release', release.id, {is_final: true})
}

export async function setReleaseInvalidated(client: FleetClient, release: Release, invalidated: boolean): Promise<void> {
  await client.pine.patch('release', release.id, {is_invalidated: invalidated})
}

/** Stops a running build: the server marks it cancelled unless it already ended (an ended release keeps its status). */
export async function cancelRelease(client: FleetClient, releaseId: number): Promise<void> {
  await client.pine.patch('release', {$filter: `id eq ${releaseId} and status eq 'running'`}, {
    status: 'cancelled',
    end_timestamp: new Date().toISOString(),
  })
}

export async function tagRelease(client: FleetClient, releaseId: number, tags: Array<[string, string]>): Promise<void> {
  for (const [key, value] of tags) await client.pine.upsert('release_tag', {release: releaseId, tag_key: key}, {value})
}

export async function setReleaseNote(client: FleetClient, releaseId: number, note: string): Promise<void> {
  await client.pine.patch('release', releaseId, {note})
}

export interface ReleaseImage {
  service: string
  image_size: number | null
  build_seconds: number | null
  status: string
}

interface ReleaseImageRow {
  image: Array<{
    image_size: number | null
    status: string
    start_timestamp: string | null
    end_timestamp: string | null
    is_a_build_of__service: Array<{service_name: string}>
  }>
}

/** A release and each service's image, for the summary after a push. */
export async function getReleaseImages(client: FleetClient, releaseId: number): Promise<{release: Release; images: ReleaseImage[]}> {
  const release = await getRelease(client, String(releaseId))
  const rows = await client.pine.get<ReleaseImageRow>('image__is_part_of__release', {
    $filter: `is_part_of__release eq ${releaseId}`,
    $expand: 'image($select=image_size,status,start_timestamp,end_timestamp;$expand=is_a_build_of__service($select=service_name))',
  })
  const images = rows.flatMap((row) =>
    row.image.map((image) => ({
      service: image.is_a_build_of__service[0]?.service_name ?? '',
      image_size: image.image_size,
      status: image.status,
      build_seconds:
        image.start_timestamp && image.end_timestamp ? (Date.parse(image.end_timestamp) - Date.parse(image.start_timestamp)) / 1000 : null,
    })),
  )
  return {release, images: images.sort((a, b) => a.service.localeCompare(b.service))}
}
