// One release: its services and images with their sizes, its build log, finalize or invalidate.
import {h} from 'preact'

import type {Api} from './api.js'
import {buildTime, RELEASE_FIELDS, type ReleaseRow} from './fleet.js'
import {ErrorLine, formatBytes, formatDate, Section, shortId, useAction, usePoll} from './ui.js'

interface ReleaseDetail extends ReleaseRow {
  build_log: string | null
  note: string | null
  belongs_to__application: Array<{id: number; slug: string}>
}

interface ReleaseImageRow {
  id: number
  image: Array<{id: number; image_size: number | null; status: string; is_a_build_of__service: Array<{service_name: string}>}>
}

export function ReleaseView({api, id}: {api: Api; id: number}) {
  const state = usePoll(async () => {
    const [release] = await api.get<ReleaseDetail>('release', {
      $select: `${RELEASE_FIELDS.$select},build_log,note`, $expand: `${RELEASE_FIELDS.$expand},belongs_to__application($select=id,slug)`,
    }, id)
    const images = await api.get<ReleaseImageRow>('image__is_part_of__release', {
      $select: 'id', $filter: `is_part_of__release eq ${id}`,
      $expand: 'image($select=id,image_size,status;$expand=is_a_build_of__service($select=service_name))',
    })
    return {release, images}
  }, [api, id])
  const action = useAction(state.reload)
  const data = state.data
  if (!data) return h('div', null, h(ErrorLine, {message: state.error}), !state.error && h('p', null, 'Loading…'))
  const {release, images} = data
  if (!release) return h('p', {role: 'alert'}, 'No such release, or not yours.')
  const fleet = release.belongs_to__application[0]
  return h('div', null,
    h('p', null, fleet && h('a', {href: `#/fleet/${fleet.id}`}, `← ${fleet.slug}`)),
    h('h1', null, `Release ${shortId(release.commit)}`),
    h(ErrorLine, {message: state.error}),
    h('dl', {class: 'summary'},
      h('dt', null, 'Commit'), h('dd', {class: 'mono'}, release.commit),
      h('dt', null, 'Status'), h('dd', null, release.status, release.is_invalidated ? ' (invalidated)' : '', release.is_final ? ' (final)' : ' (draft)'),
      h('dt', null, 'Created'), h('dd', null, formatDate(release.created_at)),
      h('dt', null, 'Build time'), h('dd', null, buildTime(release)),
      h('dt', null, 'By'), h('dd', null, release.is_created_by__user[0]?.username ?? '—'),
      h('dt', null, 'Note'), h('dd', null, release.note ?? '—')),
    h('div', {class: 'inline'},
      h('button', {type: 'button', disabled: action.busy || release.is_final, onClick: () => action.run(() => api.patch('release', id, {is_final: true}))}, 'Finalize'),
      h('button', {type: 'button', disabled: action.busy, onClick: () => action.run(() => api.patch('release', id, {is_invalidated: !release.is_invalidated}))}, release.is_invalidated ? 'Validate again' : 'Invalidate')),
    h(ErrorLine, {message: action.error}),
    h(Section, {title: 'Services and images'},
      images.length === 0 ? h('p', null, 'No image.') : h('table', null,
        h('thead', null, h('tr', null, h('th', null, 'Service'), h('th', null, 'Image status'), h('th', null, 'Size'))),
        h('tbody', null, images.map((row) => {
          const image = row.image[0]
          return h('tr', {key: row.id},
            h('td', null, image?.is_a_build_of__service[0]?.service_name ?? '—'),
            h('td', null, image?.status ?? '—'),
            h('td', null, formatBytes(image?.image_size)))
        })))),
    h(Section, {title: 'Build log'}, h('pre', {class: 'logs', tabIndex: 0, 'aria-label': 'Build log'}, release.build_log || 'No build log.')))
}
