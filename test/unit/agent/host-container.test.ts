import assert from 'node:assert/strict'

import {containerIdOfMountinfo} from '../../../src/agent/host-container.js'

const ID = '6ec16df5175984cfb6984e2a4784c27b5fb9f60243e95d0723f19feca305afc6'
const OTHER = 'a'.repeat(64)

describe('containerIdOfMountinfo', () => {
  it('finds the container whose hostname, hosts and resolv.conf the engine mounted, whatever its data root', () => {
    const mountinfo = [
      '1220 1219 0:141 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/X',
      `1230 1220 254:0 /srv/docker/containers/${ID}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw`,
      `1231 1220 254:0 /srv/docker/containers/${ID}/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw`,
    ].join('\n')
    assert.equal(containerIdOfMountinfo(mountinfo), ID)
  })

  it('finds none on a host, nor in a path that only mentions another container', () => {
    assert.equal(containerIdOfMountinfo('22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n'), undefined)
    assert.equal(containerIdOfMountinfo(`1240 1220 254:0 /var/lib/docker/containers/${OTHER}/mounts/shm /mnt/shm rw - ext4 /dev/vda rw\n`), undefined)
    assert.equal(containerIdOfMountinfo(''), undefined)
  })
})
