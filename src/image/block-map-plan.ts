import {findBlockMap, withMappedRanges, type BlockMap} from './bmap.js'
import {fatUsedRanges, filesystemMappedRanges} from './filesystem-map.js'
import type {ImageSource} from './sources.js'

export interface BlockMapPlan {
  map?: BlockMap
  /** Where the map came from, for messages: the bmap file, or the image's file systems. */
  origin?: string
  /**
   * Bytes of the image that hold data, as the bmap or the file systems say: the figure messages give, the same for an
   * image and its compressed forms (a raw image's map adds what its boot partition uses). Undefined when every byte is written.
   */
  dataBytes?: number
}

/**
 * Which ranges of the image to write: a .bmap beside it, else (for raw images) the blocks its file systems use; for
 * a compressed image without a bmap, every byte.
 */
export async function planBlockMap(source: ImageSource): Promise<BlockMapPlan> {
  const bmap = await findBlockMap(source.path)
  if (bmap && source.file) {
    // A bmap is made once for the pristine image; `os configure` then writes config.json into blocks of the boot
    // partition that the bmap may call free. So what the FAT partitions of a raw image use is written too.
    return {map: withMappedRanges(bmap.map, await fatUsedRanges(source.file)), origin: bmap.path, dataBytes: bmap.map.mappedBytes}
  }

  if (bmap) return {map: bmap.map, origin: bmap.path, dataBytes: bmap.map.mappedBytes}
  if (!source.file || !source.size) return {}
  const empty = {imageSize: source.size, blockSize: 4096, ranges: [], mappedBytes: 0}
  const map = withMappedRanges(empty, await filesystemMappedRanges(source.file, source.size))
  return {map, origin: 'the file systems in the image', dataBytes: map.mappedBytes}
}
