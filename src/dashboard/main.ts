// The dashboard's shell: sign in and out, and the view the address's #fragment names (#/, #/fleet/<id>,
// #/device/<uuid>, #/release/<id>). Ids only in the fragment: the token stays in sessionStorage.
import './style.css'

import {h, render} from 'preact'
import {useEffect, useMemo, useState} from 'preact/hooks'

import {Api, login, storedToken, storeToken} from './api.js'
import {DeviceView} from './device.js'
import {FleetView} from './fleet.js'
import {FleetsView} from './fleets.js'
import {ReleaseView} from './release.js'
import {ErrorLine} from './ui.js'

function SignIn({onToken}: {onToken: (token: string) => void}) {
  const [username, setUsername] = useState('')
  const [password, setPassword] = useState('')
  const [error, setError] = useState<string>()
  const [busy, setBusy] = useState(false)
  const submit = async (event: Event) => {
    event.preventDefault()
    setBusy(true)
    setError(undefined)
    try {
      onToken(await login(username, password))
    } catch (failure) {
      setError((failure as Error).message)
    } finally {
      setBusy(false)
    }
  }

  return h('main', {class: 'signin'},
    h('h1', null, 'Sign in to flotilla'),
    h('form', {onSubmit: submit},
      h('label', {for: 'signin-username'}, 'Email or username'),
      h('input', {id: 'signin-username', autocomplete: 'username', required: true, value: username, onInput: (event: Event) => setUsername((event.target as HTMLInputElement).value)}),
      h('label', {for: 'signin-password'}, 'Password'),
      h('input', {id: 'signin-password', type: 'password', autocomplete: 'current-password', required: true, value: password, onInput: (event: Event) => setPassword((event.target as HTMLInputElement).value)}),
      h('button', {type: 'submit', disabled: busy}, busy ? 'Signing in…' : 'Sign in')),
    h(ErrorLine, {message: error}))
}

function useHash(): string {
  const [hash, setHash] = useState(location.hash)
  useEffect(() => {
    const changed = () => setHash(location.hash)
    addEventListener('hashchange', changed)
    return () => removeEventListener('hashchange', changed)
  }, [])
  return hash
}

function View({api, hash}: {api: Api; hash: string}) {
  const [, kind, id] = /^#\/(fleet|device|release)\/([^/]+)$/.exec(hash) ?? []
  if (kind === 'fleet' && /^\d+$/.test(id)) return h(FleetView, {api, id: Number(id)})
  if (kind === 'device' && /^[\da-f]+$/i.test(id)) return h(DeviceView, {api, uuid: id})
  if (kind === 'release' && /^\d+$/.test(id)) return h(ReleaseView, {api, id: Number(id)})
  return h(FleetsView, {api})
}

function App() {
  const [token, setToken] = useState(storedToken())
  const hash = useHash()
  const signOut = () => {
    storeToken(null)
    setToken(null)
  }

  const api = useMemo(() => (token ? new Api(token, signOut) : undefined), [token])
  if (!api) return h(SignIn, {onToken: (value) => { storeToken(value); setToken(value) }})
  return h('div', null,
    h('header', null,
      h('a', {href: '#/', class: 'brand'}, 'flotilla'),
      h('button', {type: 'button', onClick: () => api.logout().finally(signOut)}, 'Sign out')),
    h('main', null, h(View, {api, hash})))
}

const root = document.getElementById('app')!
root.textContent = ''
render(h(App, null), root)
