/**
 * Splits a JSON array that arrives in pieces (`[{…},{…},…]`) into its elements as soon as each is complete,
 * so a build log streams to the user instead of arriving at the end.
 */
export async function* parseJsonArrayStream<T>(chunks: AsyncIterable<Buffer | string>): AsyncGenerator<T> {
  let buffer = ''
  let depth = 0
  let inString = false
  let escaped = false
  let elementStart = -1
  let opened = false
  let scanned = 0
  for await (const chunk of chunks) {
    buffer += typeof chunk === 'string' ? chunk : chunk.toString('utf8')
    for (let index = scanned; index < buffer.length; index++) {
      const character = buffer[index]
      if (inString) {
        if (escaped) escaped = false
        else if (character === '\\') escaped = true
        else if (character === '"') inString = false
        continue
      }

      if (character === '"') {
        inString = true
        if (depth === 1 && elementStart === -1) elementStart = index
      } else if (character === '[' || character === '{') {
        if (!opened) {
          if (character !== '[') throw new SyntaxError('the build stream is not a JSON array')
          opened = true
          depth = 1
          continue
        }

        if (depth === 1 && elementStart === -1) elementStart = index
        depth++
      } else if (character === ']' || character === '}') {
        if (depth === 1 && elementStart !== -1) {
          yield JSON.parse(buffer.slice(elementStart, index)) as T
          elementStart = -1
        }

        depth--
        if (depth === 1 && elementStart !== -1) {
          yield JSON.parse(buffer.slice(elementStart, index + 1)) as T
          elementStart = -1
        } else if (depth === 0) {
          return
        }
      } else if (depth === 1 && elementStart === -1 && !/[\s,]/.test(character)) {
        elementStart = index
      } else if (depth === 1 && elementStart !== -1 && (character === ',' || /\s/.test(character))) {
        yield JSON.parse(buffer.slice(elementStart, index)) as T
        elementStart = -1
      }
    }

    const keepFrom = elementStart === -1 ? buffer.length : elementStart
    buffer = buffer.slice(keepFrom)
    if (elementStart !== -1) elementStart = 0
    scanned = buffer.length
  }

  if (opened && depth !== 0) throw new SyntaxError('the build stream ended before the array was closed')
}
