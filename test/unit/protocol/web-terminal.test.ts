import {strict as assert} from 'node:assert'

import {parseTerminalMessage} from '../../../src/protocol/web-terminal.js'

describe('web terminal messages', () => {
  const uuid = 'ab'.repeat(16)

  it('reads an open message, with or without a service, and a resize', () => {
    assert.deepEqual(parseTerminalMessage(JSON.stringify({type: 'open', token: 't', device: uuid.toUpperCase(), cols: 80, rows: 24})), {type: 'open', token: 't', device: uuid, service: undefined, cols: 80, rows: 24})
    assert.deepEqual(parseTerminalMessage(JSON.stringify({type: 'open', token: 't', device: uuid.slice(0, 7), service: 'main-1', cols: 1, rows: 1000})), {type: 'open', token: 't', device: uuid.slice(0, 7), service: 'main-1', cols: 1, rows: 1000})
    assert.deepEqual(parseTerminalMessage('{"type":"resize","cols":120,"rows":40}'), {type: 'resize', cols: 120, rows: 40})
  })

  it('names what is wrong with anything else', () => {
    const open = {type: 'open', token: 't', device: uuid, cols: 80, rows: 24}
    const cases: Array<[string, string]> = [
      ['not json', 'a terminal message must be JSON'],
      ['null', 'a terminal message must be a JSON object'],
      [JSON.stringify({...open, cols: 0}), 'cols and rows must be whole numbers from 1 to 1000'],
      [JSON.stringify({...open, rows: 1001}), 'cols and rows must be whole numbers from 1 to 1000'],
      [JSON.stringify({...open, rows: 2.5}), 'cols and rows must be whole numbers from 1 to 1000'],
      [JSON.stringify({...open, type: 'exec'}), 'a terminal message is "open" or "resize"'],
      [JSON.stringify({...open, token: ''}), 'the "open" message needs the session token'],
      [JSON.stringify({...open, device: 'abc'}), 'the "open" message needs a device uuid (7 to 62 hex digits)'],
      [JSON.stringify({...open, device: `${uuid}; rm -rf /`}), 'the "open" message needs a device uuid (7 to 62 hex digits)'],
      [JSON.stringify({...open, service: 'main -- rm -rf /'}), 'a service name is letters, digits, "_", "." and "-"'],
      [JSON.stringify({...open, service: 5}), 'a service name is letters, digits, "_", "." and "-"'],
    ]
    for (const [text, error] of cases) assert.deepEqual(parseTerminalMessage(text), {error}, text)
  })
})
