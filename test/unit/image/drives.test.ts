import assert from 'node:assert/strict'

import {parseLsblk} from '../../../src/image/drives.js'

const LSBLK = JSON.stringify({
  blockdevices: [
    {name: 'zram0', path: '/dev/zram0', size: 4096, rm: false, ro: false, type: 'disk', mountpoints: ['[SWAP]'], 'maj:min': '253:0'},
    {
      name: 'sda', path: '/dev/sda', size: 512110190592, model: 'Samsung SSD  ', vendor: 'ATA     ', tran: 'sata', rm: false, hotplug: false, ro: false, type: 'disk', mountpoints: [null], 'maj:min': '8:0', 'log-sec': 512,
      children: [
        {name: 'sda1', path: '/dev/sda1', size: 536870912, rm: false, ro: false, type: 'part', mountpoints: ['/boot/efi'], 'maj:min': '8:1'},
        {name: 'sda2', path: '/dev/sda2', size: 511571132416, rm: false, ro: false, type: 'part', mountpoints: ['/'], 'maj:min': '8:2'},
      ],
    },
    {name: 'sdb', path: '/dev/sdb', size: 31914983424, model: 'Ultra', vendor: 'SanDisk', tran: 'usb', rm: true, hotplug: true, ro: false, type: 'disk', mountpoints: [null], 'maj:min': '8:16', 'log-sec': 512},
    {name: 'loop3', path: '/dev/loop3', size: 0, rm: false, ro: false, type: 'loop', mountpoints: [null], 'maj:min': '7:3'},
    {name: 'sr0', path: '/dev/sr0', size: 1073741312, rm: true, ro: false, type: 'rom', mountpoints: [null], 'maj:min': '11:0'},
  ],
})

describe('image/drives parseLsblk', function () {
  it('keeps whole disks with a size, with their partitions\' mount points and device numbers', function () {
    const drives = parseLsblk(LSBLK)
    assert.deepEqual(drives.map((drive) => drive.path), ['/dev/sda', '/dev/sdb'])
    const [system, card] = drives
    assert.deepEqual(system.mountpoints, ['/boot/efi', '/'])
    assert.deepEqual(system.devices, ['8:0', '8:1', '8:2'])
    assert.equal(system.model, 'Samsung SSD')
    assert.equal(system.vendor, 'ATA')
    assert.equal(system.removable, false)
    assert.deepEqual(card, {
      path: '/dev/sdb', name: 'sdb', size: 31914983424, model: 'Ultra', vendor: 'SanDisk', transport: 'usb', removable: true, readOnly: false, type: 'disk',
      mountpoints: [], devices: ['8:16'], partitions: [], logicalSectorSize: 512,
    })
  })

  it('reads lsblk versions that print "1"/"0" and a single mountpoint', function () {
    const old = JSON.stringify({blockdevices: [{name: 'sdc', path: '/dev/sdc', size: '1000', rm: '1', ro: '1', type: 'disk', mountpoint: '/media/x', 'maj:min': '8:32'}]})
    const [drive] = parseLsblk(old)
    assert.equal(drive.removable, true)
    assert.equal(drive.readOnly, true)
    assert.deepEqual(drive.mountpoints, ['/media/x'])
  })
})
