import type {Release} from '../sdk/releases.js'
import type {Column, Output} from './output.js'

export const releaseColumns: Column<Release>[] = [
  {header: 'ID', value: (release) => release.id},
  {header: 'COMMIT', value: (release) => release.commit.slice(0, 7)},
  {header: 'STATUS', value: (release) => release.status},
  {header: 'VERSION', value: (release) => release.raw_version ?? release.semver ?? ''},
  {header: 'CREATED', value: (release) => release.created_at},
  {header: 'FINAL', value: (release) => release.is_final},
  {header: 'INVALIDATED', value: (release) => release.is_invalidated},
]

export function showRelease(output: Output, release: Release): void {
  output.keyValue([
    ['id', release.id],
    ['commit', release.commit],
    ['fleet', release.fleet],
    ['status', release.status],
    ['source', release.source],
    ['version', release.raw_version ?? release.semver],
    ['final', release.is_final],
    ['invalidated', release.is_invalidated],
    ['created', release.created_at],
    ['build started', release.start_timestamp],
    ['build ended', release.end_timestamp],
    ['note', release.note],
    ['tags', Object.entries(release.tags).map(([key, value]) => `${key}=${value}`)],
  ])
}
