import assert from 'node:assert/strict'

import {fatLabelOf} from '../../../src/image/boot-partition.js'

function bootSector(typeOffset: number, type: string, label: string): Buffer {
  const sector = Buffer.alloc(512)
  sector.write(label.padEnd(11), typeOffset - 11, 'latin1')
  sector.write(type.padEnd(8), typeOffset, 'latin1')
  sector[510] = 0x55
  sector[511] = 0xaa
  return sector
}

describe('image/boot-partition fatLabelOf', function () {
  it('reads the label of FAT32 and FAT16 boot sectors', function () {
    assert.equal(fatLabelOf(bootSector(0x52, 'FAT32', 'resin-boot')), 'resin-boot')
    assert.equal(fatLabelOf(bootSector(0x36, 'FAT16', 'flash-boot')), 'flash-boot')
  })

  it('knows a sector that is not a FAT boot sector', function () {
    assert.equal(fatLabelOf(Buffer.alloc(512)), undefined)
    const ext = bootSector(0x52, 'EXT4', 'x')
    assert.equal(fatLabelOf(ext), undefined)
  })
})
