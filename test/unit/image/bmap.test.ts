import assert from 'node:assert/strict'

import {blockMapCandidates, parseBlockMap, withMappedRanges} from '../../../src/image/bmap.js'

const BMAP = `<?xml version="1.0" ?>
<bmap version="2.0">
    <ImageSize> 10000 </ImageSize>
    <BlockSize> 4096 </BlockSize>
    <BlocksCount> 3 </BlocksCount>
    <MappedBlocksCount> 2 </MappedBlocksCount>
    <ChecksumType> sha256 </ChecksumType>
    <BlockMap>
        <Range chksum="aa"> 0 </Range>
        <Range chksum="bb"> 2 </Range>
    </BlockMap>
</bmap>`

describe('image/bmap', function () {
  it('turns block ranges into byte ranges, the last one cut at the image size', function () {
    const map = parseBlockMap(BMAP)
    assert.equal(map.imageSize, 10_000)
    assert.equal(map.blockSize, 4096)
    assert.deepEqual(map.ranges, [{start: 0, end: 4096}, {start: 8192, end: 10_000}])
    assert.equal(map.mappedBytes, 4096 + 1808)
  })

  it('merges adjacent ranges and reads a-b ranges', function () {
    const xml = BMAP.replace('<Range chksum="aa"> 0 </Range>', '<Range>0-1</Range>')
    assert.deepEqual(parseBlockMap(xml).ranges, [{start: 0, end: 10_000}])
  })

  it('rejects files that are not bmaps, and ranges out of order or beyond the image', function () {
    assert.throws(() => parseBlockMap('<html></html>', 'x.bmap'), /x.bmap is not a bmap file: it has no <ImageSize>/)
    assert.throws(() => parseBlockMap(BMAP.replace('> 2 </Range>', '> 0 </Range>')), /out of order or overlapping/)
    assert.throws(() => parseBlockMap(BMAP.replace('> 2 </Range>', '> 9 </Range>')), /beyond the image size/)
  })

  it('looks beside the image the way bmaptool does', function () {
    assert.deepEqual(blockMapCandidates('/d/os.img.gz'), ['/d/os.img.gz.bmap', '/d/os.img.img.bmap', '/d/os.img.bmap', '/d/os.bmap'])
  })
})

describe('image/bmap withMappedRanges', function () {
  it('adds ranges rounded out to whole blocks and merges what touches', function () {
    const map = parseBlockMap(BMAP)
    const wider = withMappedRanges(map, [{start: 4100, end: 5000}])
    assert.deepEqual(wider.ranges, [{start: 0, end: 10_000}])
    assert.equal(wider.mappedBytes, 10_000)
    assert.deepEqual(withMappedRanges(map, []).ranges, map.ranges)
  })
})
