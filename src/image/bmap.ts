import {readFile} from 'node:fs/promises'

import {ExpectedError} from '../errors.js'

/** A byte range of the image: [start, end). */
export interface ByteRange {
  start: number
  end: number
}

/** bmaptool's block map: which blocks of an image hold data; the rest need not be written. */
export interface BlockMap {
  imageSize: number
  blockSize: number
  ranges: ByteRange[]
  mappedBytes: number
}

function field(xml: string, name: string, source: string): number {
  const match = new RegExp(`<${name}>\\s*(\\d+)\\s*</${name}>`).exec(xml)
  if (!match) throw new ExpectedError(`${source} is not a bmap file: it has no <${name}>`)
  return Number(match[1])
}

/** Parses a bmap file (format 1.x or 2.x): block ranges `a-b` or single blocks, inclusive, in blocks of BlockSize. */
export function parseBlockMap(xml: string, source = 'the bmap file'): BlockMap {
  const imageSize = field(xml, 'ImageSize', source)
  const blockSize = field(xml, 'BlockSize', source)
  const ranges: ByteRange[] = []
  for (const match of xml.matchAll(/<Range(?:\s[^>]*)?>\s*(\d+)(?:\s*-\s*(\d+))?\s*<\/Range>/g)) {
    const first = Number(match[1])
    const last = match[2] === undefined ? first : Number(match[2])
    if (last < first) throw new ExpectedError(`${source} has a backwards range ${match[1]}-${match[2]}`)
    const range = {start: first * blockSize, end: Math.min((last + 1) * blockSize, imageSize)}
    const previous = ranges.at(-1)
    if (previous && range.start < previous.end) throw new ExpectedError(`${source} has ranges out of order or overlapping at block ${first}`)
    if (range.start >= imageSize) throw new ExpectedError(`${source} maps block ${first}, beyond the image size ${imageSize}`)
    if (previous && previous.end === range.start) previous.end = range.end
    else ranges.push(range)
  }

  return {imageSize, blockSize, ranges, mappedBytes: ranges.reduce((sum, range) => sum + range.end - range.start, 0)}
}

/** Where bmaptool looks for a bmap beside an image: the image's name with its compression suffixes swapped for .bmap. */
export function blockMapCandidates(imagePath: string): string[] {
  const candidates = [`${imagePath}.bmap`]
  let base = imagePath
  while (/\.(gz|xz|bz2|zip|img|raw)$/i.test(base)) {
    base = base.replace(/\.(gz|xz|bz2|zip|img|raw)$/i, '')
    candidates.push(`${base}.img.bmap`, `${base}.bmap`)
  }

  return [...new Set(candidates)]
}

export async function findBlockMap(imagePath: string): Promise<{path: string; map: BlockMap} | undefined> {
  for (const candidate of blockMapCandidates(imagePath)) {
    let text
    try {
      text = await readFile(candidate, 'utf8')
    } catch {
      continue
    }

    return {path: candidate, map: parseBlockMap(text, candidate)}
  }

  return undefined
}

/** The block map with more ranges mapped (merged, in order), rounded out to whole blocks. */
export function withMappedRanges(map: BlockMap, extra: ByteRange[]): BlockMap {
  const rounded = extra.map((range) => ({start: Math.floor(range.start / map.blockSize) * map.blockSize, end: Math.min(Math.ceil(range.end / map.blockSize) * map.blockSize, map.imageSize)}))
  const ranges: ByteRange[] = []
  for (const range of [...map.ranges, ...rounded].sort((a, b) => a.start - b.start)) {
    const previous = ranges.at(-1)
    if (previous && range.start <= previous.end) previous.end = Math.max(previous.end, range.end)
    else if (range.end > range.start) ranges.push({...range})
  }

  return {...map, ranges, mappedBytes: ranges.reduce((sum, range) => sum + range.end - range.start, 0)}
}
