// A terminal on a device's host or in one of its services, in the page: xterm.js over the server's WebSocket bridge
// to the same session `flotilla ssh <device> [service]` opens. xterm.js is fetched only when a terminal opens, so
// the pages that have none stay small.
import '@xterm/xterm/css/xterm.css'

import {h} from 'preact'
import {useEffect, useRef, useState} from 'preact/hooks'

import type {TerminalNews} from '../protocol/web-terminal.js'
import type {Api} from './api.js'
import {ErrorLine, Section} from './ui.js'

const HOST = ''

/** xterm's binary events carry bytes as the char codes of a string. */
const bytesOf = (binary: string) => Uint8Array.from(binary, (character) => character.charCodeAt(0) & 0xff)

function newsText(news: TerminalNews): string | undefined {
  if (news.type === 'opened') return 'Connected.'
  if (news.type === 'exit') return news.signal ? `The session ended (signal ${news.signal}).` : `The session ended (exit status ${news.code ?? 'unknown'}).`
  return undefined
}

function TerminalScreen({api, uuid, service}: {api: Api; uuid: string; service: string}) {
  const screen = useRef<HTMLDivElement>(null)
  const [status, setStatus] = useState('Connecting…')
  const [error, setError] = useState<string>()
  useEffect(() => {
    let disposed = false
    const cleanups: Array<() => void> = []
    const start = async () => {
      const [{Terminal}, {FitAddon}] = await Promise.all([import('@xterm/xterm'), import('@xterm/addon-fit')])
      if (disposed || !screen.current) return
      const terminal = new Terminal({cursorBlink: true, fontSize: 14, scrollback: 5000})
      const fit = new FitAddon()
      terminal.loadAddon(fit)
      terminal.open(screen.current)
      fit.fit()
      cleanups.push(() => terminal.dispose())
      const socket = api.openTerminal(uuid, service || undefined, {cols: terminal.cols, rows: terminal.rows})
      cleanups.push(() => socket.close())
      const sendBytes = (bytes: Uint8Array) => socket.readyState === WebSocket.OPEN && socket.send(bytes)
      const encoder = new TextEncoder()
      terminal.onData((data) => sendBytes(encoder.encode(data)))
      terminal.onBinary((data) => sendBytes(bytesOf(data)))
      terminal.onResize(({cols, rows}) => socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify({type: 'resize', cols, rows})))
      socket.addEventListener('message', (event: MessageEvent<ArrayBuffer | string>) => {
        if (typeof event.data !== 'string') return terminal.write(new Uint8Array(event.data))
        const news = JSON.parse(event.data) as TerminalNews
        if (news.type === 'error') setError(news.message)
        const text = newsText(news)
        if (text) setStatus(text)
      })
      socket.addEventListener('close', () => setStatus((previous) => (previous.startsWith('The session ended') ? previous : 'Disconnected.')))
      const observer = new ResizeObserver(() => fit.fit())
      observer.observe(screen.current)
      cleanups.push(() => observer.disconnect())
      terminal.focus()
    }

    start().catch((failure: Error) => setError(`the terminal could not start: ${failure.message}`))
    return () => {
      disposed = true
      for (const cleanup of cleanups.reverse()) cleanup()
    }
  }, [api, uuid, service])

  return h('div', null,
    h('p', {class: 'muted', role: 'status'}, status),
    h(ErrorLine, {message: error}),
    h('div', {class: 'terminal', ref: screen, 'aria-label': `Terminal on ${service || 'the host OS'}`}))
}

/** Choose the host or a service, open a terminal there, close it. */
export function TerminalPanel({api, uuid, services}: {api: Api; uuid: string; services: string[]}) {
  const [target, setTarget] = useState(HOST)
  const [open, setOpen] = useState<{service: string; key: number}>()
  return h(Section, {title: 'Terminal'},
    h('div', {class: 'inline'},
      h('label', {for: 'terminal-target'}, 'Terminal on'),
      h('select', {id: 'terminal-target', value: target, onChange: (event: Event) => setTarget((event.target as HTMLSelectElement).value)},
        h('option', {value: HOST}, 'Host OS'),
        services.map((name) => h('option', {key: name, value: name}, `Service ${name}`))),
      h('button', {type: 'button', onClick: () => setOpen({service: target, key: Date.now()})}, open ? 'Open a new terminal' : 'Open terminal'),
      open && h('button', {type: 'button', onClick: () => setOpen(undefined)}, 'Close terminal')),
    open && h(TerminalScreen, {key: open.key, api, uuid, service: open.service}))
}
