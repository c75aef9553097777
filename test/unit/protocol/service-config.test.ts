import {strict as assert} from 'node:assert'

import {dependenciesOf, engineSettingsOf, networkSettingsOf, parseBytes, parseDurationNs, volumeSettingsOf} from '../../../src/protocol/service-config.js'

describe('compose keys as the engine settings balena applies', () => {
  it('maps each key to its place in the engine create call', () => {
    const settings = engineSettingsOf({
      ports: ['127.0.0.1:8080:80', '9000-9001:9000-9001/udp', 53, {target: 443, published: 8443}],
      expose: ['7000'],
      devices: ['/dev/ttyUSB0', '/dev/zero:/dev/fakezero:r'],
      device_cgroup_rules: ['c 188:* rmw'],
      cap_add: ['SYS_RAWIO'],
      cap_drop: ['NET_RAW'],
      healthcheck: {test: 'pg_isready', interval: '1m30s', timeout: '500ms', start_period: '5s', retries: 3},
      ulimits: {nproc: 65_535, nofile: {soft: 20_000, hard: 40_000}},
      sysctls: ['net.core.somaxconn=1024'],
      shm_size: '64m',
      mem_limit: '1g',
      mem_reservation: 1024,
      cpus: 1.5,
      cpu_shares: 512,
      cpuset: '0,1',
      pids_limit: 100,
      dns: '10.0.0.1',
      dns_search: ['example.com'],
      extra_hosts: ['other=50.31.209.229'],
      hostname: 'box',
      domainname: 'example.com',
      pid: 'host',
      ipc: 'shareable',
      security_opt: ['no-new-privileges:true'],
      init: true,
      read_only: true,
      stop_signal: 'SIGINT',
      stop_grace_period: '1m',
      tmpfs: '/run',
      volumes: ['data:/data', {type: 'tmpfs', target: '/cache', tmpfs: {size: '1m'}}],
      group_add: ['dialout', 20],
      oom_score_adj: 100,
    })
    assert.deepEqual(settings.container, {
      ExposedPorts: {'7000/tcp': {}, '80/tcp': {}, '9000/udp': {}, '9001/udp': {}, '53/tcp': {}, '443/tcp': {}},
      Healthcheck: {Test: ['CMD-SHELL', 'pg_isready'], Interval: 90e9, Timeout: 500e6, StartPeriod: 5e9, Retries: 3},
      Hostname: 'box',
      Domainname: 'example.com',
      StopSignal: 'SIGINT',
      StopTimeout: 60,
    })
    assert.deepEqual(settings.host, {
      CapAdd: ['SYS_RAWIO'],
      CapDrop: ['NET_RAW'],
      CpuShares: 512,
      NanoCpus: 1_500_000_000,
      CpusetCpus: '0,1',
      DeviceCgroupRules: ['c 188:* rmw'],
      Devices: [
        {PathOnHost: '/dev/ttyUSB0', PathInContainer: '/dev/ttyUSB0', CgroupPermissions: 'rwm'},
        {PathOnHost: '/dev/zero', PathInContainer: '/dev/fakezero', CgroupPermissions: 'r'},
      ],
      Dns: ['10.0.0.1'],
      DnsSearch: ['example.com'],
      ExtraHosts: ['other:50.31.209.229'],
      GroupAdd: ['dialout', '20'],
      Init: true,
      IpcMode: 'shareable',
      Memory: 1024 ** 3,
      MemoryReservation: 1024,
      OomScoreAdj: 100,
      PidMode: 'host',
      PidsLimit: 100,
      ReadonlyRootfs: true,
      SecurityOpt: ['no-new-privileges:true'],
      ShmSize: 64 * 1024 ** 2,
      Sysctls: {'net.core.somaxconn': '1024'},
      Tmpfs: {'/run': '', '/cache': `size=${1024 ** 2}`},
      Ulimits: [{Name: 'nproc', Soft: 65_535, Hard: 65_535}, {Name: 'nofile', Soft: 20_000, Hard: 40_000}],
      PortBindings: {
        '80/tcp': [{HostIp: '127.0.0.1', HostPort: '8080'}],
        '9000/udp': [{HostIp: '', HostPort: '9000'}],
        '9001/udp': [{HostIp: '', HostPort: '9001'}],
        '53/tcp': [{HostIp: '', HostPort: ''}],
        '443/tcp': [{HostIp: '', HostPort: '8443'}],
      },
    })
  })

  it('leaves to the engine what the composition does not say', () => {
    assert.deepEqual(engineSettingsOf({image: 'x', command: 'true'}), {container: {}, host: {}})
  })

  it('reads compose sizes and durations', () => {
    assert.equal(parseBytes('512m', 'k'), 512 * 1024 ** 2)
    assert.equal(parseBytes('2gb', 'k'), 2 * 1024 ** 3)
    assert.equal(parseDurationNs('1h2m3.5s', 'k'), 3723.5e9)
    assert.throws(() => parseDurationNs('10', 'stop_grace_period'), /"stop_grace_period" must be a duration/)
  })

  it('reads depends_on as a list or a map, and network_mode service:<name> as a dependency', () => {
    assert.deepEqual(dependenciesOf({depends_on: ['db', 'cache']}), {db: 'service_started', cache: 'service_started'})
    assert.deepEqual(dependenciesOf({depends_on: {db: {condition: 'service_healthy'}, cache: null}, network_mode: 'service:vpn'}), {db: 'service_healthy', cache: 'service_started', vpn: 'service_started'})
  })

  it('maps network and volume definitions with their driver and ipam options', () => {
    assert.deepEqual(networkSettingsOf({internal: true, ipam: {config: [{subnet: '172.28.0.0/16', gateway: '172.28.0.1'}]}}), {
      Driver: 'bridge',
      Options: {},
      Internal: true,
      EnableIPv6: false,
      Labels: {},
      IPAM: {Driver: 'default', Options: {}, Config: [{Subnet: '172.28.0.0/16', Gateway: '172.28.0.1'}]},
    })
    assert.deepEqual(volumeSettingsOf({driver_opts: {type: 'tmpfs', device: 'tmpfs'}}), {Driver: 'local', DriverOpts: {type: 'tmpfs', device: 'tmpfs'}, Labels: {}})
  })
})
