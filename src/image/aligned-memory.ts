import {readSync} from 'node:fs'

/** Long enough to span several memory pages: shorter direct reads may be accepted from unaligned memory. */
const PROBE_BYTES = 64 * 1024
const MALLOC_ALIGNMENT = 16
const PAGE = 4096

/**
 * Buffers whose memory the device accepts for O_DIRECT transfers. Node cannot ask for aligned memory and does not tell
 * a buffer's address, so one slab is allocated and the first offset into it that a direct read from the device
 * accepts is found by trying; every `size` (a multiple of 4096) after it is then aligned too.
 * Returns undefined when no offset works, that is when the device refuses direct I/O altogether.
 */
export function allocateDirectBuffers(fd: number, count: number, size: number): Buffer[] | undefined {
  const slab = Buffer.allocUnsafeSlow(count * size + PAGE)
  for (let shift = 0; shift < PAGE; shift += MALLOC_ALIGNMENT) {
    try {
      readSync(fd, slab, shift, PROBE_BYTES, 0)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EINVAL') continue
      throw error
    }

    return Array.from({length: count}, (_, index) => slab.subarray(shift + index * size, shift + (index + 1) * size))
  }

  return undefined
}
