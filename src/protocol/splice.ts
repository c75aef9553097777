import type {Duplex} from 'node:stream'

/**
 * Pipes two duplex streams into each other, as every hop of a tunnel does. A side that ends cleanly passes its end
 * on, and what is still buffered for the other side gets delivered; a side that closes without ending (a reset, a
 * dropped link) or fails takes the other down, so neither is left half-dead. `onClosed` runs once both are closed.
 */
export function splice(a: Duplex, b: Duplex, onClosed?: () => void): void {
  let open = 2
  const destroyBoth = () => {
    a.destroy()
    b.destroy()
  }

  for (const [from, to] of [
    [a, b],
    [b, a],
  ] as const) {
    from.on('error', destroyBoth)
    from.once('close', () => {
      open -= 1
      if (open === 0) onClosed?.()
      if (!to.writableEnded) {
        to.destroy()
        return
      }

      // `from` ended `to` cleanly; whatever `to` still sends has nowhere to go, so drain it until it closes too.
      to.unpipe(from)
      to.resume()
    })
    from.pipe(to)
  }
}
