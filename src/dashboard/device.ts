// One device: its status, release, services, live logs, variables, tags, and what can be done to it.
import {h} from 'preact'
import {useState} from 'preact/hooks'

import {type Api, odataValue} from './api.js'
import type {DeviceRow} from './fleet.js'
import {LogPanel} from './logs.js'
import {TerminalPanel} from './terminal.js'
import {ConfirmButton, deviceStatus, ErrorLine, formatDate, NameValueEditor, Section, shortId, StatusBadge, useAction, usePoll} from './ui.js'

interface DeviceDetail extends Omit<DeviceRow, 'is_running__release'> {
  status: string | null
  belongs_to__application: Array<{id: number; app_name: string; slug: string}>
  is_of__device_type: Array<{slug: string}>
  is_running__release: Array<{id: number; commit: string}>
  is_pinned_on__release: Array<{id: number; commit: string}>
  should_be_running__release: {__id: number} | null
}

interface ImageInstallRow {
  id: number
  status: string | null
  download_progress: number | null
  installs__image: Array<{is_a_build_of__service: Array<{service_name: string}>}>
  is_provided_by__release: Array<{commit: string}>
}

type ActionName = 'restart' | 'reboot' | 'shutdown' | 'purge' | 'identify'
const ACTION_PATHS: Record<ActionName, string> = {restart: '/v1/restart', reboot: '/v1/reboot', shutdown: '/v1/shutdown', purge: '/v1/purge', identify: '/v1/blink'}

async function loadDevice(api: Api, uuid: string) {
  const [device] = await api.get<DeviceDetail>('device', {
    $select: 'id,uuid,device_name,is_online,overall_status,update_status,status,os_version,supervisor_version,ip_address,last_connectivity_event,should_be_running__release',
    $expand: 'belongs_to__application($select=id,app_name,slug),is_of__device_type($select=slug),is_running__release($select=id,commit),is_pinned_on__release($select=id,commit)',
    $filter: `uuid eq ${odataValue(uuid)}`,
  })
  if (!device) return {device}
  const fleetId = device.belongs_to__application[0]?.id
  const [installs, services, releases, fleets, variables, tags] = await Promise.all([
    api.get<ImageInstallRow>('image_install', {
      $select: 'id,status,download_progress', $filter: `device eq ${device.id}`,
      $expand: 'installs__image($select=id;$expand=is_a_build_of__service($select=service_name)),is_provided_by__release($select=commit)',
    }),
    api.get<{id: number; service_name: string}>('service', {$select: 'id,service_name', $filter: `application eq ${fleetId}`}),
    api.get<{id: number; commit: string; created_at: string}>('release', {$select: 'id,commit,created_at', $filter: `belongs_to__application eq ${fleetId} and status eq 'success' and is_invalidated eq false`, $orderby: 'created_at desc', $top: 50}),
    api.get<{id: number; slug: string}>('application', {$select: 'id,slug', $filter: "is_of__class eq 'fleet' and is_host eq false", $orderby: 'slug asc'}),
    api.get<{id: number; name: string; value: string}>('device_environment_variable', {$select: 'id,name,value', $filter: `device eq ${device.id}`, $orderby: 'name asc'}),
    api.get<{id: number; tag_key: string; value: string}>('device_tag', {$select: 'id,tag_key,value', $filter: `device eq ${device.id}`, $orderby: 'tag_key asc'}),
  ])
  return {device, installs, services, releases, fleets, variables, tags: tags.map((tag) => ({id: tag.id, name: tag.tag_key, value: tag.value}))}
}

type Loaded = Required<Awaited<ReturnType<typeof loadDevice>>>

function Summary({device, releases}: {device: DeviceDetail; releases: Loaded['releases']}) {
  const targetId = device.should_be_running__release?.__id
  const target = releases.find((release) => release.id === targetId)
  const fleet = device.belongs_to__application[0]
  const rows: Array<[string, unknown]> = [
    ['Status', h(StatusBadge, {status: deviceStatus(device)})],
    ['UUID', h('span', {class: 'mono'}, device.uuid)],
    ['Fleet', fleet ? h('a', {href: `#/fleet/${fleet.id}`}, fleet.slug) : '—'],
    ['Device type', device.is_of__device_type[0]?.slug ?? '—'],
    ['Running release', h('span', {class: 'mono'}, shortId(device.is_running__release[0]?.commit))],
    ['Target release', h('span', {class: 'mono'}, target ? shortId(target.commit) : targetId ? `release ${targetId}` : '—', device.is_pinned_on__release[0] ? ' (pinned)' : '')],
    ['OS', device.os_version ?? '—'],
    ['Agent', device.supervisor_version ?? '—'],
    ['IP address', device.ip_address ?? '—'],
    ['Last seen', formatDate(device.last_connectivity_event)],
  ]
  return h('dl', {class: 'summary'}, rows.map(([label, value]) => [h('dt', {key: `${label}-t`}, label), h('dd', {key: `${label}-d`}, value as string)]))
}

function Services({installs}: {installs: ImageInstallRow[]}) {
  if (installs.length === 0) return h('p', null, 'No service installed yet.')
  return h('div', {class: 'scroll'}, h('table', null,
    h('thead', null, h('tr', null, h('th', null, 'Service'), h('th', null, 'State'), h('th', null, 'Release'))),
    h('tbody', null, installs.map((install) => h('tr', {key: install.id},
      h('td', null, install.installs__image[0]?.is_a_build_of__service[0]?.service_name ?? '—'),
      h('td', null, install.status ?? '—', install.download_progress !== null && install.download_progress !== undefined ? ` (${install.download_progress}%)` : ''),
      h('td', {class: 'mono'}, shortId(install.is_provided_by__release[0]?.commit)))))))
}

function Actions({api, data, after}: {api: Api; data: Loaded; after: () => void}) {
  const {device} = data
  const fleetId = device.belongs_to__application[0]?.id
  const action = useAction(after)
  const [name, setName] = useState('')
  const [release, setRelease] = useState('')
  const [fleet, setFleet] = useState('')
  const send = (name: ActionName) => action.run(() => api.request('POST', `/supervisor${ACTION_PATHS[name]}`, {
    uuid: device.uuid, method: 'POST', data: name === 'restart' || name === 'purge' ? {appId: fleetId} : {force: false},
  }))
  const value = (setter: (value: string) => void) => (event: Event) => setter((event.target as HTMLInputElement).value)
  const otherFleets = data.fleets.filter((candidate) => candidate.id !== fleetId)
  return h(Section, {title: 'Actions'},
    h('div', {class: 'inline'},
      h('button', {type: 'button', disabled: action.busy, onClick: () => send('restart')}, 'Restart services'),
      h('button', {type: 'button', disabled: action.busy, onClick: () => send('identify')}, 'Identify'),
      h('button', {type: 'button', disabled: action.busy, onClick: () => send('reboot')}, 'Reboot'),
      h(ConfirmButton, {label: 'Shut down', question: 'Shut the device down? It stays off until someone powers it on.', disabled: action.busy, onConfirm: () => send('shutdown')}),
      h(ConfirmButton, {label: 'Purge', question: "Delete the services' data on the device?", disabled: action.busy, onConfirm: () => send('purge')})),
    h('form', {class: 'inline', onSubmit: (event: Event) => { event.preventDefault(); action.run(() => api.patch('device', device.id, {device_name: name.trim()})).then(() => setName('')) }},
      h('label', {for: 'device-rename'}, 'New name'),
      h('input', {id: 'device-rename', required: true, value: name, onInput: value(setName)}),
      h('button', {type: 'submit', disabled: action.busy}, 'Rename')),
    h('div', {class: 'inline'},
      h('label', {for: 'device-pin'}, 'Release'),
      h('select', {id: 'device-pin', value: release || String(data.releases[0]?.id ?? ''), onChange: value(setRelease)},
        data.releases.map((choice) => h('option', {key: choice.id, value: String(choice.id)}, `${shortId(choice.commit)} — ${formatDate(choice.created_at)}`))),
      h('button', {type: 'button', disabled: action.busy || data.releases.length === 0, onClick: () => action.run(() => api.patch('device', device.id, {is_pinned_on__release: Number(release || data.releases[0].id)}))}, 'Pin device to release'),
      h('button', {type: 'button', disabled: action.busy || device.is_pinned_on__release.length === 0, onClick: () => action.run(() => api.patch('device', device.id, {is_pinned_on__release: null}))}, 'Follow fleet')),
    otherFleets.length > 0 && h('div', {class: 'inline'},
      h('label', {for: 'device-move'}, 'Fleet'),
      h('select', {id: 'device-move', value: fleet || String(otherFleets[0].id), onChange: value(setFleet)}, otherFleets.map((choice) => h('option', {key: choice.id, value: String(choice.id)}, choice.slug))),
      h('button', {type: 'button', disabled: action.busy, onClick: () => action.run(() => api.patch('device', device.id, {belongs_to__application: Number(fleet || otherFleets[0].id), is_pinned_on__release: null}))}, 'Move device')),
    h('div', {class: 'inline'},
      h(ConfirmButton, {label: 'Delete', question: `Delete device ${device.device_name}? Its agent can no longer reach the server.`, disabled: action.busy, onConfirm: () => action.run(async () => {
        await api.delete('device', device.id)
        location.hash = fleetId ? `#/fleet/${fleetId}` : '#/'
      })})),
    h(ErrorLine, {message: action.error}))
}

export function DeviceView({api, uuid}: {api: Api; uuid: string}) {
  const state = usePoll(() => loadDevice(api, uuid), [api, uuid])
  const data = state.data
  if (!data) return h('div', null, h(ErrorLine, {message: state.error}), !state.error && h('p', null, 'Loading…'))
  if (!data.device) return h('p', {role: 'alert'}, 'No such device, or not yours.')
  const loaded = data as Loaded
  const serviceNames = new Map(loaded.services.map((service) => [service.id, service.service_name]))
  return h('div', null,
    h('p', null, h('a', {href: `#/fleet/${loaded.device.belongs_to__application[0]?.id}`}, '← Fleet')),
    h('h1', null, loaded.device.device_name),
    h(ErrorLine, {message: state.error}),
    h(Summary, {device: loaded.device, releases: loaded.releases}),
    h(Section, {title: 'Services'}, h(Services, {installs: loaded.installs})),
    h(LogPanel, {api, uuid: loaded.device.uuid, serviceNames}),
    h(TerminalPanel, {api, uuid: loaded.device.uuid, services: [...new Set(serviceNames.values())].sort()}),
    h(Actions, {api, data: loaded, after: state.reload}),
    h(NameValueEditor, {
      label: 'Variables', rows: loaded.variables, after: state.reload,
      onSet: (name, value) => api.upsert('device_environment_variable', {device: loaded.device.id, name}, {value}),
      onRemove: (row) => api.delete('device_environment_variable', row.id),
    }),
    h(NameValueEditor, {
      label: 'Tags', rows: loaded.tags, after: state.reload,
      onSet: (name, value) => api.upsert('device_tag', {device: loaded.device.id, tag_key: name}, {value}),
      onRemove: (row) => api.delete('device_tag', row.id),
    }))
}
