import assert from 'node:assert/strict'

import {LABELS} from '../../../src/agent/reconciler.js'
import {directAccessOf, findServiceContainer} from '../../../src/agent/shell-service.js'

function container(id: string, serviceName: string, created: number) {
  return {Id: id, Labels: {[LABELS.serviceName]: serviceName}, Created: created}
}

describe('shell service', () => {
  describe('directAccessOf', () => {
    const base = {apiEndpoint: 'http://127.0.0.1:1'}
    const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHg1sWbJ0n8a4N2Yc3Qq7n3H3v1GmK4XH3Q9n1ZQb2Xx me'

    it('takes the keys of config.json and is closed without them', () => {
      assert.deepEqual(directAccessOf({...base, os: {sshKeys: [key]}}), {authorizedKeys: [key], open: false})
      assert.deepEqual(directAccessOf(base), {authorizedKeys: [], open: false})
    })

    it('is open on a development device without keys, and keyed on one with keys', () => {
      assert.deepEqual(directAccessOf({...base, developmentMode: true}), {authorizedKeys: [], open: true})
      assert.deepEqual(directAccessOf({...base, developmentMode: true, os: {sshKeys: [key]}}), {authorizedKeys: [key], open: false})
    })
  })

  describe('findServiceContainer', () => {
    const older = container('aaaa1111', 'main', 100)
    const newer = container('bbbb2222', 'main', 200)
    const other = container('aaaa3333', 'sidecar', 150)

    it('picks the newest container of the named service', () => {
      assert.equal(findServiceContainer([older, other, newer], 'main'), newer)
    })

    it('takes a unique container id prefix, and nothing for an ambiguous one', () => {
      assert.equal(findServiceContainer([older, other, newer], 'BBBB'), newer)
      assert.equal(findServiceContainer([older, other, newer], 'aaaa'), undefined)
      assert.equal(findServiceContainer([older, other, newer], 'nope'), undefined)
    })
  })
})
