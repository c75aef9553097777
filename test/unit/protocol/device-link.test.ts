import {strict as assert} from 'node:assert'

import {decodeLinkMessage, encodeLinkMessage, formatGatewayCommand, linkUsername, parseGatewayCommand, uuidOfLinkUsername} from '../../../src/protocol/device-link.js'

const UUID = 'ab12'.repeat(8)

describe('device link protocol', () => {
  it('names a device by its link username, and tells users apart', () => {
    assert.equal(uuidOfLinkUsername(linkUsername(UUID)), UUID)
    assert.equal(uuidOfLinkUsername(`d_${UUID.toUpperCase()}`), UUID)
    assert.equal(uuidOfLinkUsername('d_short'), undefined)
    assert.equal(uuidOfLinkUsername('admin'), undefined)
  })

  it('round-trips control messages and drops what it does not know', () => {
    const action = {type: 'action', action: {action: 'restart', appId: 3}} as const
    assert.deepEqual(decodeLinkMessage(encodeLinkMessage(action)), action)
    assert.deepEqual(decodeLinkMessage(encodeLinkMessage({type: 'update'})), {type: 'update'})
    assert.equal(decodeLinkMessage('{"type":"reboot-the-world"}'), undefined)
    assert.equal(decodeLinkMessage('{"type":"action","action":7}'), undefined)
    assert.equal(decodeLinkMessage('not json'), undefined)
  })

  it('parses what users ask of the gateway: host shells and commands, container shells and commands after --', () => {
    assert.deepEqual(parseGatewayCommand(`host ${UUID}`), {uuid: UUID, service: undefined, command: undefined})
    assert.deepEqual(parseGatewayCommand(`host ${UUID} -- uname -a; exit 3`), {uuid: UUID, service: undefined, command: 'uname -a; exit 3'})
    assert.deepEqual(parseGatewayCommand(`enter ${UUID} 0123abcd -- ls --all`), {uuid: UUID, service: '0123abcd', command: 'ls --all'})
    assert.deepEqual(parseGatewayCommand(`enter ${UUID.slice(0, 7)} main`), {uuid: UUID.slice(0, 7), service: 'main', command: undefined})
    for (const request of [{uuid: UUID}, {uuid: UUID, service: 'main'}, {uuid: UUID, command: 'echo -- x'}, {uuid: UUID, command: '-- x'}, {uuid: UUID, service: 'db', command: 'psql'}]) {
      assert.deepEqual(parseGatewayCommand(formatGatewayCommand(request)), {service: undefined, command: undefined, ...request})
    }
  })

  it("takes balena's host <uuid> <command>: the rest of the line, quotes and all, is the host's command", () => {
    // What balena-cli sends to list a device's containers before `enter <uuid> <containerId>`.
    const listing = '"$(if [ -f /usr/bin/balena ]; then echo "balena"; else echo "docker"; fi)" ps --format "{{.ID}} {{.Names}}"'
    assert.deepEqual(parseGatewayCommand(`host ${UUID} ${listing}`), {uuid: UUID, service: undefined, command: listing})
    assert.deepEqual(parseGatewayCommand(`host ${UUID} uptime`), {uuid: UUID, service: undefined, command: 'uptime'})
    assert.equal(formatGatewayCommand({uuid: UUID, command: 'uname -a'}), `host ${UUID} uname -a`)
    assert.equal(formatGatewayCommand({uuid: UUID, service: 'main'}), `enter ${UUID} main`)
  })

  it('answers anything else with a message saying what it expects', () => {
    for (const line of ['', 'host', `shell ${UUID}`, 'host not-a-uuid', `enter ${UUID} main uname -a`, `enter ${UUID}`, `enter ${UUID} --`]) {
      const parsed = parseGatewayCommand(line)
      assert.ok('error' in parsed, line)
      assert.match(parsed.error, /host <uuid>/)
    }
  })
})
