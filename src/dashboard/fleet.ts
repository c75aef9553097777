// One fleet: its devices (searchable, sortable, live), its releases, its variables and tags, which release it runs.
import {h} from 'preact'
import {useState} from 'preact/hooks'

import type {Api} from './api.js'
import {releaseChoice} from './fleets.js'
import {deviceStatus, ErrorLine, formatDate, NameValueEditor, Section, shortId, StatusBadge, useAction, usePoll} from './ui.js'

interface FleetDetail {
  id: number
  app_name: string
  slug: string
  should_track_latest_release: boolean
  is_for__device_type: Array<{slug: string}>
  should_be_running__release: Array<{commit: string}>
}

/** A device as the fleet's table lists it; the device page reads these and more. */
export interface DeviceRow {
  id: number
  uuid: string
  device_name: string
  is_online: boolean
  overall_status: string | null
  update_status: string | null
  os_version: string | null
  supervisor_version: string | null
  ip_address: string | null
  last_connectivity_event: string | null
  is_running__release: Array<{commit: string}>
}

export interface ReleaseRow {
  id: number
  commit: string
  status: string
  created_at: string
  start_timestamp: string | null
  end_timestamp: string | null
  is_final: boolean
  is_invalidated: boolean
  is_created_by__user: Array<{username: string}>
}

export const RELEASE_FIELDS = {$select: 'id,commit,status,created_at,start_timestamp,end_timestamp,is_final,is_invalidated', $expand: 'is_created_by__user($select=username)'}

export function buildTime(release: {start_timestamp: string | null; end_timestamp: string | null}): string {
  if (!release.start_timestamp || !release.end_timestamp) return '—'
  const seconds = Math.round((Date.parse(release.end_timestamp) - Date.parse(release.start_timestamp)) / 1000)
  return seconds >= 60 ? `${Math.floor(seconds / 60)} min ${seconds % 60} s` : `${seconds} s`
}

type SortKey = 'device_name' | 'uuid' | 'status' | 'release' | 'os_version' | 'supervisor_version' | 'ip_address' | 'last_connectivity_event'
const COLUMNS: Array<[SortKey, string]> = [
  ['device_name', 'Name'], ['uuid', 'UUID'], ['status', 'Status'], ['release', 'Release'], ['os_version', 'OS'],
  ['supervisor_version', 'Agent'], ['ip_address', 'IP address'], ['last_connectivity_event', 'Last seen'],
]

const sortValue = (device: DeviceRow, key: SortKey): string =>
  key === 'status' ? deviceStatus(device) : key === 'release' ? device.is_running__release[0]?.commit ?? '' : String(device[key] ?? '')

function DeviceTable({devices}: {devices: DeviceRow[]}) {
  const [search, setSearch] = useState('')
  const [sort, setSort] = useState<{key: SortKey; descending: boolean}>({key: 'device_name', descending: false})
  const needle = search.trim().toLowerCase()
  const shown = devices
    .filter((device) => needle === '' || [device.device_name, device.uuid, device.ip_address ?? '', deviceStatus(device)].some((text) => text.toLowerCase().includes(needle)))
    .sort((a, b) => sortValue(a, sort.key).localeCompare(sortValue(b, sort.key)) * (sort.descending ? -1 : 1))
  const header = ([key, label]: [SortKey, string]) => h('th', {key, 'aria-sort': sort.key === key ? (sort.descending ? 'descending' : 'ascending') : 'none'},
    h('button', {type: 'button', class: 'sort', onClick: () => setSort({key, descending: sort.key === key && !sort.descending})}, label, sort.key === key ? (sort.descending ? ' ▼' : ' ▲') : ''))
  return h('div', null,
    h('label', {for: 'device-search'}, 'Search devices '),
    h('input', {id: 'device-search', type: 'search', value: search, onInput: (event: Event) => setSearch((event.target as HTMLInputElement).value)}),
    h('div', {class: 'scroll'}, h('table', {class: 'devices'},
      h('thead', null, h('tr', null, COLUMNS.map(header))),
      h('tbody', null, shown.map((device) => h('tr', {key: device.id},
        h('td', null, h('a', {href: `#/device/${device.uuid}`}, device.device_name)),
        h('td', {class: 'mono'}, shortId(device.uuid)),
        h('td', null, h(StatusBadge, {status: deviceStatus(device)})),
        h('td', {class: 'mono'}, shortId(device.is_running__release[0]?.commit)),
        h('td', null, device.os_version ?? '—'),
        h('td', null, device.supervisor_version ?? '—'),
        h('td', null, device.ip_address ?? '—'),
        h('td', null, formatDate(device.last_connectivity_event))))))),
    shown.length === 0 && h('p', null, devices.length === 0 ? 'No device in this fleet yet.' : 'No device matches.'))
}

function ReleaseTable({releases}: {releases: ReleaseRow[]}) {
  if (releases.length === 0) return h('p', null, 'No release yet: run "flotilla push".')
  return h('div', {class: 'scroll'}, h('table', null,
    h('thead', null, h('tr', null, ['Commit', 'Status', 'Created', 'Build time', 'By'].map((label) => h('th', {key: label}, label)))),
    h('tbody', null, releases.map((release) => h('tr', {key: release.id},
      h('td', {class: 'mono'}, h('a', {href: `#/release/${release.id}`}, shortId(release.commit))),
      h('td', null, release.status, release.is_invalidated ? ' (invalidated)' : release.is_final ? '' : ' (draft)'),
      h('td', null, formatDate(release.created_at)),
      h('td', null, buildTime(release)),
      h('td', null, release.is_created_by__user[0]?.username ?? '—'))))))
}

/** Pin the fleet to one successful release, or make it follow the latest (as `fleet pin` and `fleet track-latest` do). */
function ReleaseChoice({api, fleet, releases, after}: {api: Api; fleet: FleetDetail; releases: ReleaseRow[]; after: () => void}) {
  const usable = releases.filter((release) => release.status === 'success' && !release.is_invalidated)
  const [chosen, setChosen] = useState('')
  const action = useAction(after)
  const pin = () => action.run(() => api.patch('application', fleet.id, {should_be_running__release: Number(chosen || usable[0]?.id), should_track_latest_release: false}))
  const trackLatest = () => action.run(async () => {
    const [latest] = await api.get<{id: number}>('release', {
      $select: 'id', $filter: `belongs_to__application eq ${fleet.id} and status eq 'success' and is_final eq true and is_invalidated eq false`, $orderby: 'created_at desc', $top: 1,
    })
    await api.patch('application', fleet.id, {should_track_latest_release: true, ...(latest ? {should_be_running__release: latest.id} : {})})
  })
  return h('div', {class: 'inline'},
    h('span', null, `Runs: ${releaseChoice(fleet)}`),
    h('label', {for: 'fleet-pin'}, 'Release'),
    h('select', {id: 'fleet-pin', value: chosen || String(usable[0]?.id ?? ''), onChange: (event: Event) => setChosen((event.target as HTMLSelectElement).value)},
      usable.map((release) => h('option', {key: release.id, value: String(release.id)}, `${shortId(release.commit)} — ${formatDate(release.created_at)}`))),
    h('button', {type: 'button', disabled: action.busy || usable.length === 0, onClick: pin}, 'Pin fleet to release'),
    h('button', {type: 'button', disabled: action.busy || fleet.should_track_latest_release, onClick: trackLatest}, 'Track latest'),
    h(ErrorLine, {message: action.error}))
}

export function FleetView({api, id}: {api: Api; id: number}) {
  const state = usePoll(async () => {
    const [fleet] = await api.get<FleetDetail>('application', {
      $select: 'id,app_name,slug,should_track_latest_release', $expand: 'is_for__device_type($select=slug),should_be_running__release($select=commit)',
    }, id)
    const [devices, releases, variables, tags] = await Promise.all([
      api.get<DeviceRow>('device', {
        $select: 'id,uuid,device_name,is_online,overall_status,update_status,os_version,supervisor_version,ip_address,last_connectivity_event',
        $expand: 'is_running__release($select=commit)', $filter: `belongs_to__application eq ${id}`, $orderby: 'device_name asc',
      }),
      api.get<ReleaseRow>('release', {...RELEASE_FIELDS, $filter: `belongs_to__application eq ${id}`, $orderby: 'created_at desc', $top: 50}),
      api.get<{id: number; name: string; value: string}>('application_environment_variable', {$select: 'id,name,value', $filter: `application eq ${id}`, $orderby: 'name asc'}),
      api.get<{id: number; tag_key: string; value: string}>('application_tag', {$select: 'id,tag_key,value', $filter: `application eq ${id}`, $orderby: 'tag_key asc'}),
    ])
    return {fleet, devices, releases, variables, tags: tags.map((tag) => ({id: tag.id, name: tag.tag_key, value: tag.value}))}
  }, [api, id])
  const data = state.data
  if (!data) return h('div', null, h(ErrorLine, {message: state.error}), !state.error && h('p', null, 'Loading…'))
  if (!data.fleet) return h('p', {role: 'alert'}, 'No such fleet, or not yours.')
  return h('div', null,
    h('p', null, h('a', {href: '#/'}, '← Fleets')),
    h('h1', null, data.fleet.app_name),
    h('p', {class: 'muted'}, `${data.fleet.slug} · ${data.fleet.is_for__device_type[0]?.slug ?? ''}`),
    h(ErrorLine, {message: state.error}),
    h(ReleaseChoice, {api, fleet: data.fleet, releases: data.releases, after: state.reload}),
    h(Section, {title: 'Devices'}, h(DeviceTable, {devices: data.devices})),
    h(Section, {title: 'Releases'}, h(ReleaseTable, {releases: data.releases})),
    h(NameValueEditor, {
      label: 'Variables', rows: data.variables, after: state.reload,
      onSet: (name, value) => api.upsert('application_environment_variable', {application: id, name}, {value}),
      onRemove: (row) => api.delete('application_environment_variable', row.id),
    }),
    h(NameValueEditor, {
      label: 'Tags', rows: data.tags, after: state.reload,
      onSet: (name, value) => api.upsert('application_tag', {application: id, tag_key: name}, {value}),
      onRemove: (row) => api.delete('application_tag', row.id),
    }))
}
