// The fleets of the signed-in user: devices by status, the release each runs; and a form to create one.
import {h} from 'preact'
import {useState} from 'preact/hooks'

import type {Api} from './api.js'
import {deviceStatus, ErrorLine, Section, shortId, StatusBadge, type StatusWord, useAction, usePoll} from './ui.js'

interface FleetRow {
  id: number
  app_name: string
  slug: string
  should_track_latest_release: boolean
  is_for__device_type: Array<{slug: string}>
  owns__device: Array<{is_online: boolean; overall_status: string | null; update_status: string | null}>
  should_be_running__release: Array<{commit: string}>
}

const STATUSES: StatusWord[] = ['online', 'offline', 'updating', 'failed']

export function listFleetRows(api: Api): Promise<FleetRow[]> {
  return api.get<FleetRow>('application', {
    $select: 'id,app_name,slug,should_track_latest_release',
    $expand: 'is_for__device_type($select=slug),owns__device($select=is_online,overall_status,update_status),should_be_running__release($select=commit)',
    $filter: "is_of__class eq 'fleet' and is_host eq false",
    $orderby: 'slug asc',
  })
}

export function releaseChoice(fleet: {should_track_latest_release: boolean; should_be_running__release: Array<{commit: string}>}): string {
  const commit = fleet.should_be_running__release[0]?.commit
  if (fleet.should_track_latest_release) return commit ? `latest (${shortId(commit)})` : 'latest (none yet)'
  return commit ? `pinned to ${shortId(commit)}` : 'pinned (none)'
}

function FleetTable({fleets}: {fleets: FleetRow[]}) {
  if (fleets.length === 0) return h('p', null, 'No fleet yet: create one below.')
  return h('div', {class: 'scroll'}, h('table', {class: 'fleets'},
    h('thead', null, h('tr', null, h('th', null, 'Fleet'), h('th', null, 'Device type'), h('th', null, 'Devices'), h('th', null, 'Release'))),
    h('tbody', null, fleets.map((fleet) => {
      const counts = new Map<StatusWord, number>()
      for (const device of fleet.owns__device) counts.set(deviceStatus(device), (counts.get(deviceStatus(device)) ?? 0) + 1)
      return h('tr', {key: fleet.id},
        h('td', null, h('a', {href: `#/fleet/${fleet.id}`}, fleet.app_name), h('div', {class: 'muted'}, fleet.slug)),
        h('td', null, fleet.is_for__device_type[0]?.slug ?? '—'),
        h('td', null, h('span', {class: 'counts'}, STATUSES.map((status) => h('span', {key: status, class: `count count-${status}`}, h(StatusBadge, {status}), ` ${counts.get(status) ?? 0}`)))),
        h('td', null, releaseChoice(fleet)))
    }))))
}

function CreateFleet({api, after}: {api: Api; after: () => void}) {
  const choices = usePoll(async () => ({
    deviceTypes: await api.get<{id: number; slug: string; name: string}>('device_type', {$select: 'id,slug,name', $orderby: 'slug asc'}),
    organizations: await api.get<{id: number; handle: string}>('organization', {$select: 'id,handle', $orderby: 'handle asc'}),
  }), [], 600_000)
  const [name, setName] = useState('')
  const [deviceType, setDeviceType] = useState('')
  const [organization, setOrganization] = useState('')
  const action = useAction(after)
  const submit = (event: Event) => {
    event.preventDefault()
    if (!/^[\w-]+$/.test(name)) return action.run(() => Promise.reject(new Error(`invalid fleet name "${name}" — use letters, digits, "-" and "_" only`)))
    action.run(async () => {
      await api.post('application', {
        app_name: name,
        is_for__device_type: Number(deviceType || choices.data?.deviceTypes[0]?.id),
        organization: Number(organization || choices.data?.organizations[0]?.id),
      })
      setName('')
    })
  }

  const input = (setter: (value: string) => void) => (event: Event) => setter((event.target as HTMLInputElement).value)
  return h(Section, {title: 'Create a fleet'},
    h('form', {class: 'inline', onSubmit: submit},
      h('label', {for: 'fleet-name'}, 'Name'),
      h('input', {id: 'fleet-name', required: true, value: name, onInput: input(setName), pattern: '[A-Za-z0-9_\\-]+'}),
      h('label', {for: 'fleet-type'}, 'Device type'),
      h('select', {id: 'fleet-type', value: deviceType || String(choices.data?.deviceTypes[0]?.id ?? ''), onChange: input(setDeviceType)},
        (choices.data?.deviceTypes ?? []).map((type) => h('option', {key: type.id, value: String(type.id)}, `${type.name} (${type.slug})`))),
      (choices.data?.organizations.length ?? 0) > 1 && [
        h('label', {for: 'fleet-organization'}, 'Organization'),
        h('select', {id: 'fleet-organization', value: organization || String(choices.data!.organizations[0].id), onChange: input(setOrganization)},
          choices.data!.organizations.map((org) => h('option', {key: org.id, value: String(org.id)}, org.handle))),
      ],
      h('button', {type: 'submit', disabled: action.busy || !choices.data}, 'Create fleet')),
    h(ErrorLine, {message: action.error ?? choices.error}))
}

export function FleetsView({api}: {api: Api}) {
  const fleets = usePoll(() => listFleetRows(api), [api])
  return h('div', null,
    h('h1', null, 'Fleets'),
    h(ErrorLine, {message: fleets.error}),
    fleets.data ? h(FleetTable, {fleets: fleets.data}) : h('p', null, 'Loading…'),
    h(CreateFleet, {api, after: fleets.reload}))
}
