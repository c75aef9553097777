// Pieces every view uses: polling, status words, error lines, name/value editors, confirmations.
// Everything shown goes through Preact's text rendering: device and user values are never markup.
import {h, type ComponentChildren} from 'preact'
import {useCallback, useEffect, useRef, useState} from 'preact/hooks'

/** How often views ask again, so they follow devices coming and going without a reload. */
export const POLL_MS = 3000

/** Loads now and every `intervalMs`; `reload` loads at once (after a change made from the page). */
export function usePoll<T>(load: () => Promise<T>, deps: unknown[], intervalMs = POLL_MS): {data?: T; error?: string; reload: () => void} {
  const [state, setState] = useState<{data?: T; error?: string}>({})
  const loadRef = useRef(load)
  loadRef.current = load
  const reload = useCallback(() => {
    loadRef.current().then(
      (data) => setState({data}),
      (error: Error) => setState((previous) => ({...previous, error: error.message})),
    )
  }, [])
  useEffect(() => {
    setState({})
    reload()
    const timer = setInterval(reload, intervalMs)
    return () => clearInterval(timer)
  }, deps)
  return {...state, reload}
}

/** Runs an action from a button, showing its failure (or nothing) and reloading the view after it. */
export function useAction(after: () => void): {busy: boolean; error?: string; run: (action: () => Promise<unknown>) => Promise<void>} {
  const [busy, setBusy] = useState(false)
  const [error, setError] = useState<string>()
  const run = async (action: () => Promise<unknown>) => {
    setBusy(true)
    setError(undefined)
    try {
      await action()
      after()
    } catch (failure) {
      setError((failure as Error).message)
    } finally {
      setBusy(false)
    }
  }

  return {busy, error, run}
}

export const ErrorLine = ({message}: {message?: string}) => (message ? h('p', {class: 'error', role: 'alert'}, message) : null)

export type StatusWord = 'online' | 'offline' | 'updating' | 'failed'

/**
 * The status a person reads, in four words: updating while it downloads (balena's overall status), failed when its
 * last update was aborted or rejected, otherwise online or offline by its heartbeat. (balena's "reduced
 * functionality", a heartbeat without the device link, still reads as online: the device is working.)
 */
export function deviceStatus(device: {is_online: boolean; overall_status?: string | null; update_status?: string | null}): StatusWord {
  if (device.overall_status === 'updating') return 'updating'
  if (device.update_status === 'aborted' || device.update_status === 'rejected') return 'failed'
  return device.is_online ? 'online' : 'offline'
}

/** A status as a word beside a coloured dot: colour is never the only signal. */
export const StatusBadge = ({status}: {status: string}) => h('span', {class: `status status-${status}`}, h('span', {class: 'dot', 'aria-hidden': 'true'}), status)

export const shortId = (text: string | null | undefined) => (text ? text.slice(0, 7) : '—')

export function formatDate(iso: string | null | undefined): string {
  if (!iso) return '—'
  const date = new Date(iso)
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString()
}

export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }

  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`
}

export const Section = ({title, children}: {title: string; children?: ComponentChildren}) => h('section', {'aria-label': title}, h('h2', null, title), children)

export interface NameValue {
  id: number
  name: string
  value: string
}

/** A list of variables or tags, each removable, and a form that sets one (a new name adds it, a known one changes it). */
export function NameValueEditor(props: {label: string; rows?: NameValue[]; onSet: (name: string, value: string) => Promise<unknown>; onRemove: (row: NameValue) => Promise<unknown>; after: () => void}) {
  const [name, setName] = useState('')
  const [value, setValue] = useState('')
  const action = useAction(props.after)
  const idBase = props.label.toLowerCase().replace(/\W+/g, '-')
  const submit = (event: Event) => {
    event.preventDefault()
    action.run(async () => {
      await props.onSet(name.trim(), value)
      setName('')
      setValue('')
    })
  }

  return h(Section, {title: props.label},
    props.rows === undefined ? h('p', null, 'Loading…') : props.rows.length === 0 ? h('p', null, `No ${props.label.toLowerCase()}.`) :
      h('table', {class: 'pairs'},
        h('thead', null, h('tr', null, h('th', null, 'Name'), h('th', null, 'Value'), h('th', null, h('span', {class: 'visually-hidden'}, 'Actions')))),
        h('tbody', null, props.rows.map((row) => h('tr', {key: row.id},
          h('td', {class: 'mono'}, row.name),
          h('td', {class: 'mono'}, row.value),
          h('td', null,
            h('button', {type: 'button', onClick: () => { setName(row.name); setValue(row.value) }, 'aria-label': `Edit ${row.name}`}, 'Edit'),
            h('button', {type: 'button', disabled: action.busy, onClick: () => action.run(() => props.onRemove(row)), 'aria-label': `Remove ${row.name}`}, 'Remove'))))),
      ),
    h('form', {class: 'inline', onSubmit: submit},
      h('label', {for: `${idBase}-name`}, 'Name'),
      h('input', {id: `${idBase}-name`, required: true, value: name, onInput: (event: Event) => setName((event.target as HTMLInputElement).value)}),
      h('label', {for: `${idBase}-value`}, 'Value'),
      h('input', {id: `${idBase}-value`, value, onInput: (event: Event) => setValue((event.target as HTMLInputElement).value)}),
      h('button', {type: 'submit', disabled: action.busy}, `Set ${props.label === 'Tags' ? 'tag' : 'variable'}`)),
    h(ErrorLine, {message: action.error}),
  )
}

/** A button that asks "are you sure?" in the page (no browser dialog) before doing something that cannot be undone. */
export function ConfirmButton(props: {label: string; question: string; onConfirm: () => void; disabled?: boolean}) {
  const [asking, setAsking] = useState(false)
  if (!asking) return h('button', {type: 'button', class: 'danger', disabled: props.disabled, onClick: () => setAsking(true)}, `${props.label}…`)
  return h('span', {class: 'confirm', role: 'group', 'aria-label': props.question},
    h('span', null, props.question),
    h('button', {type: 'button', class: 'danger', onClick: () => { setAsking(false); props.onConfirm() }}, `Yes, ${props.label.toLowerCase()}`),
    h('button', {type: 'button', onClick: () => setAsking(false)}, 'Cancel'))
}
