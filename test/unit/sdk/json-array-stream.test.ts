import {strict as assert} from 'node:assert'

import {parseJsonArrayStream} from '../../../src/sdk/json-array-stream.js'

async function collect<T>(pieces: string[]): Promise<T[]> {
  async function* chunks() {
    for (const piece of pieces) yield piece
  }

  const items: T[] = []
  for await (const item of parseJsonArrayStream<T>(chunks())) items.push(item)
  return items
}

function splitEvery(text: string, size: number): string[] {
  const pieces: string[] = []
  for (let index = 0; index < text.length; index += size) pieces.push(text.slice(index, index + size))
  return pieces
}

describe('parseJsonArrayStream', () => {
  const events = [
    {type: 'metadata', resource: 'buildLogId', value: 12},
    {message: '[main] Step 1/2 : FROM busybox'},
    {message: 'a } tricky ] "quoted" \\ string [ {', replace: true},
    {message: 'nested', extra: {list: [1, 2, {deep: true}]}},
    {message: 'done', isSuccess: true},
  ]
  const text = JSON.stringify(events, null, 1)

  it('yields every element of an array that arrives whole', async () => {
    assert.deepEqual(await collect([text]), events)
  })

  for (const size of [1, 2, 7, 64]) {
    it(`yields the same elements when the array arrives in ${size}-character pieces`, async () => {
      assert.deepEqual(await collect(splitEvery(text, size)), events)
    })
  }

  it('yields scalars and an empty array', async () => {
    assert.deepEqual(await collect(['[1, "two", true, null]']), [1, 'two', true, null])
    assert.deepEqual(await collect(['[]']), [])
  })

  it('yields elements before the stream ends', async () => {
    let release: () => void = () => {}
    const gate = new Promise<void>((resolve) => (release = resolve))
    async function* chunks() {
      yield '[{"message":"first"},'
      await gate
      yield '{"message":"second"}]'
    }

    const iterator = parseJsonArrayStream<{message: string}>(chunks())
    assert.deepEqual((await iterator.next()).value, {message: 'first'})
    release()
    assert.deepEqual((await iterator.next()).value, {message: 'second'})
    assert.equal((await iterator.next()).done, true)
  })

  it('fails on a stream that is not an array or that is cut short', async () => {
    await assert.rejects(collect(['{"started":true}']), /not a JSON array/)
    await assert.rejects(collect(['[{"message":"a"},{"mess']), /ended before the array was closed/)
  })
})
