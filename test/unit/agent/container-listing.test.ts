import assert from 'node:assert/strict'

import {formatContainerListing, isContainerListingCommand} from '../../../src/agent/container-listing.js'

/** What balena-cli 22 runs through the gateway (`host <uuid> <command>`) before `balena ssh <uuid> <service>`. */
const BALENA_CLI_LISTING = `"$(if [ -f /usr/bin/balena ]; then echo "balena"; else echo "docker"; fi)" ps --format "{{.ID}} {{.Names}}"`

describe('container listing', () => {
  describe('isContainerListingCommand', () => {
    it("recognises balena-cli's listing, and the same with a plain engine name", () => {
      assert.equal(isContainerListingCommand(BALENA_CLI_LISTING), true)
      assert.equal(isContainerListingCommand(BALENA_CLI_LISTING.replaceAll('"$(', '$(').replace(')" ps', ') ps')), true, 'unquoted, as older versions sent it')
      assert.equal(isContainerListingCommand(`balena ps --format '{{.ID}} {{.Names}}'`), true)
      assert.equal(isContainerListingCommand(`docker  ps --format "{{.ID}} {{.Names}}"\n`), true)
    })

    it('leaves any other command, also one that merely contains the listing, to run as it is', () => {
      for (const command of [
        `${BALENA_CLI_LISTING}; rm -rf /tmp/x`,
        `${BALENA_CLI_LISTING} && id`,
        `id; ${BALENA_CLI_LISTING}`,
        `docker ps -a --format "{{.ID}} {{.Names}}"`,
        `docker ps --format "{{.ID}} {{.Image}}"`,
        `"$(id)" ps --format "{{.ID}} {{.Names}}"`,
        'docker ps',
        'uname -a',
      ]) {
        assert.equal(isContainerListingCommand(command), false, command)
      }
    })
  })

  describe('formatContainerListing', () => {
    it('prints short ids and names without the leading slash, as the engine does', () => {
      const containers = [
        {Id: 'a'.repeat(64), Names: ['/main_7_3_0123456789abcdef0123456789abcdef']},
        {Id: 'b'.repeat(64), Names: ['/sidecar_8_3_0123456789abcdef0123456789abcdef', '/alias']},
      ]
      assert.equal(formatContainerListing(containers), `${'a'.repeat(12)} main_7_3_0123456789abcdef0123456789abcdef\n${'b'.repeat(12)} sidecar_8_3_0123456789abcdef0123456789abcdef,alias\n`)
      assert.equal(formatContainerListing([]), '')
    })
  })
})
