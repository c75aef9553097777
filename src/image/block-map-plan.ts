import {findBlockMap, withMappedRanges, type BlockMap} from './bmap.js'
import {fatPartitionRanges} from './boot-partition.js'
import {filesystemMappedRanges} from './filesystem-map.js'
import type {ImageSource} from './sources.js'

export interface BlockMapPlan {
  map?: BlockMap
  /** Where the map came from, for messages: the bmap file, or the image's file systems. */
  origin?: string
}

/**
 * Which ranges of the image to write: a .bmap beside it, else (for raw images) the blocks its file systems use; for
 * a compressed image without a bmap, every byte.
 */
export async function planBlockMap(source: ImageSource): Promise<BlockMapPlan> {
  const bmap = await findBlockMap(source.path)
  if (bmap && source.file) {
    // A bmap is made once for the pristine image; `os configure` then writes config.json into blocks of the boot
    // partition that the bmap may call free. So the FAT partitions of a raw image are always written whole.
    return {map: withMappedRanges(bmap.map, await fatPartitionRanges(source.file)), origin: bmap.path}
  }

  if (bmap) return {map: bmap.map, origin: bmap.path}
  if (!source.file || !source.size) return {}
  const empty = {imageSize: source.size, blockSize: 4096, ranges: [], mappedBytes: 0}
  return {map: withMappedRanges(empty, await filesystemMappedRanges(source.file, source.size)), origin: 'the file systems in the image'}
}
