// A device's live logs: the last lines, then each new one as the device sends it; filter by service, pause.
import {h} from 'preact'
import {useEffect, useRef, useState} from 'preact/hooks'

import type {Api, LogLine} from './api.js'
import {ErrorLine, Section} from './ui.js'

/** Lines kept in the page; older ones drop off the top. */
const MAX_LINES = 1000
const SYSTEM = 'system'

export function LogPanel({api, uuid, serviceNames}: {api: Api; uuid: string; serviceNames: Map<number, string>}) {
  const [lines, setLines] = useState<LogLine[]>([])
  const [paused, setPaused] = useState(false)
  const [service, setService] = useState('')
  const [error, setError] = useState<string>()
  const pausedRef = useRef(paused)
  const held = useRef<LogLine[]>([])
  pausedRef.current = paused

  useEffect(() => {
    const controller = new AbortController()
    let pending: LogLine[] = []
    let scheduled = false
    // Lines arriving together are shown together: one render for a burst, not one a line.
    const flush = () => {
      scheduled = false
      const batch = pending
      pending = []
      if (pausedRef.current) held.current.push(...batch)
      else setLines((previous) => [...previous, ...batch].slice(-MAX_LINES))
    }

    setLines([])
    api.streamLogs(uuid, (line) => {
      pending.push(line)
      if (!scheduled) {
        scheduled = true
        setTimeout(flush, 50)
      }
    }, controller.signal).catch((failure: Error) => setError(failure.message))
    return () => controller.abort()
  }, [api, uuid])

  const togglePause = () => {
    if (paused) {
      const resumed = held.current
      held.current = []
      setLines((previous) => [...previous, ...resumed].slice(-MAX_LINES))
    }

    setPaused(!paused)
  }

  const nameOf = (line: LogLine) => (line.isSystem ? SYSTEM : (line.serviceId !== undefined && line.serviceId !== null ? serviceNames.get(line.serviceId) : undefined) ?? '')
  const shown = service === '' ? lines : lines.filter((line) => nameOf(line) === service)
  return h(Section, {title: 'Logs'},
    h('div', {class: 'inline'},
      h('label', {for: 'log-service'}, 'Service'),
      h('select', {id: 'log-service', value: service, onChange: (event: Event) => setService((event.target as HTMLSelectElement).value)},
        h('option', {value: ''}, 'All'),
        h('option', {value: SYSTEM}, 'System'),
        [...new Set(serviceNames.values())].sort().map((name) => h('option', {key: name, value: name}, name))),
      h('button', {type: 'button', 'aria-pressed': paused, onClick: togglePause}, paused ? 'Resume' : 'Pause'),
      paused && h('span', {class: 'muted'}, 'Paused: new lines wait until you resume.')),
    h(ErrorLine, {message: error}),
    h('pre', {class: 'logs', 'aria-live': 'off', tabIndex: 0, 'aria-label': 'Log lines'},
      shown.length === 0 ? h('span', {class: 'muted'}, 'No log line yet.') : shown.map((line, index) => h('div', {key: line.id ?? index, class: line.isStdErr ? 'log-line stderr' : 'log-line'},
        h('span', {class: 'log-time'}, new Date(line.timestamp).toLocaleTimeString()),
        ' ',
        h('span', {class: 'log-service'}, `[${nameOf(line) || 'service'}]`),
        ' ',
        h('span', {class: 'log-message'}, line.message)))))
}
