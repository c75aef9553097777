import assert from 'node:assert/strict'

import type {Drive} from '../../../src/image/drives.js'
import {checkDrive, type DriveSafetyContext} from '../../../src/image/safety.js'

const GB = 1_000_000_000

function drive(overrides: Partial<Drive> = {}): Drive {
  return {
    path: '/dev/sdb',
    name: 'sdb',
    size: 32 * GB,
    model: 'Ultra',
    vendor: 'SanDisk',
    transport: 'usb',
    removable: true,
    readOnly: false,
    type: 'disk',
    mountpoints: [],
    devices: ['8:16', '8:17'],
    partitions: [{path: '/dev/sdb1', mountpoints: []}],
    logicalSectorSize: 512,
    ...overrides,
  }
}

const context: DriveSafetyContext = {imageSize: 2 * GB, imageDevice: '8:1', imagePath: '/home/me/os.img', swapDevices: ['/dev/sda3'], allowSystemDrive: false}

describe('image/safety checkDrive', function () {
  it('accepts a removable card that is large enough', function () {
    assert.deepEqual(checkDrive(drive(), context), {refusals: [], warnings: []})
  })

  it('refuses the drive holding / or /boot, whatever the flags', function () {
    for (const mountpoint of ['/', '/boot']) {
      const verdict = checkDrive(drive({mountpoints: [mountpoint]}), {...context, allowSystemDrive: true})
      assert.match(verdict.refusals.join('\n'), new RegExp(`holds ${mountpoint}: it is this computer's system drive`))
    }
  })

  it('refuses a drive holding swap', function () {
    const verdict = checkDrive(drive({path: '/dev/sda', partitions: [{path: '/dev/sda3', mountpoints: []}]}), context)
    assert.match(verdict.refusals.join('\n'), /holds swap space \(\/dev\/sda3\)/)
    assert.match(checkDrive(drive({mountpoints: ['[SWAP]']}), context).refusals.join('\n'), /swap/)
  })

  it('refuses the drive holding the image, and a loop device backed by it', function () {
    assert.match(checkDrive(drive({devices: ['8:0', '8:1']}), context).refusals.join('\n'), /holds the image being flashed/)
    assert.match(checkDrive(drive({type: 'loop', backingFile: '/home/me/os.img'}), context).refusals.join('\n'), /backed by the image/)
  })

  it('refuses a read-only drive', function () {
    assert.match(checkDrive(drive({readOnly: true}), context).refusals.join('\n'), /is read-only/)
  })

  it('refuses a drive smaller than the image, naming both sizes', function () {
    const verdict = checkDrive(drive({size: GB}), context)
    assert.match(verdict.refusals.join('\n'), /too small: it holds 1.0 GB \(1000000000 bytes\), the image needs 2.0 GB \(2000000000 bytes\)/)
  })

  it('refuses a non-removable drive unless allowed, and then warns', function () {
    const fixed = drive({removable: false})
    assert.match(checkDrive(fixed, context).refusals.join('\n'), /not a removable drive.*--allow-system-drive/)
    const allowed = checkDrive(fixed, {...context, allowSystemDrive: true})
    assert.deepEqual(allowed.refusals, [])
    assert.match(allowed.warnings[0], /\/dev\/sdb \(SanDisk Ultra, 32.0 GB\) is not a removable drive/)
  })
})
