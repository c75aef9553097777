import {strict as assert} from 'node:assert'

import {ExpectedError} from '../../../src/errors.js'
import {parseComposition} from '../../../src/project/compose.js'

/** A compose file of one service `main` with the given lines under it, plus top-level sections. */
const composeFile = (serviceLines: string[], topLevel: string[] = []) =>
  ['services:', '  main:', '    image: busybox', ...serviceLines.map((line) => `    ${line}`), ...topLevel, ''].join('\n')

const refused = (text: string, message: RegExp) => assert.throws(() => parseComposition(text, 'docker-compose.yml'), (error: unknown) => error instanceof ExpectedError && message.test(error.message))

describe('push refuses what a device would not apply, naming the service and the key', () => {
  it('accepts every key devices apply', () => {
    const composition = parseComposition(composeFile([
      'ports: ["127.0.0.1:8080:80", "9000-9001:9000-9001/udp", 53, {target: 443, published: 8443}]',
      'expose: ["7000", "7001/udp"]',
      'networks: {backend: {aliases: [db], ipv4_address: 172.28.0.5}}',
      'devices: ["/dev/ttyUSB0:/dev/ttyUSB0:rwm", /dev/gpiomem]',
      'device_cgroup_rules: ["c 188:* rmw"]',
      'cap_add: [SYS_RAWIO]',
      'cap_drop: [NET_RAW]',
      'healthcheck: {test: ["CMD", "true"], interval: 1m30s, timeout: 10s, start_period: 5s, retries: 3}',
      'depends_on: {other: {condition: service_healthy}}',
      'ulimits: {nproc: 65535, nofile: {soft: 20000, hard: 40000}}',
      'sysctls: {net.core.somaxconn: 1024}',
      'shm_size: 64m',
      'mem_limit: 1g',
      'mem_reservation: 512m',
      'cpus: 1.5',
      'cpu_shares: 512',
      'cpu_quota: 50000',
      'cpuset: "0,1"',
      'pids_limit: 100',
      'dns: 10.0.0.1',
      'dns_search: [example.com]',
      'dns_opt: [use-vc]',
      'extra_hosts: ["somehost:162.242.195.82", "other=50.31.209.229"]',
      'hostname: box',
      'domainname: example.com',
      'pid: host',
      'ipc: shareable',
      'security_opt: ["no-new-privileges:true"]',
      'init: true',
      'read_only: true',
      'stop_signal: SIGINT',
      'stop_grace_period: 1m',
      'tmpfs: [/run, "/tmp:size=64k"]',
      'group_add: [dialout, 20]',
      'labels: {io.balena.features.kernel-modules: "1"}',
      'volumes: ["data:/data", {type: volume, source: logs, target: /logs}, {type: tmpfs, target: /cache}]',
      'oom_score_adj: 100',
      'restart: on-failure',
      'privileged: false',
    ], [
      '  other:',
      '    image: busybox',
      'networks:',
      '  backend: {driver: bridge, internal: true, ipam: {driver: default, config: [{subnet: 172.28.0.0/16, gateway: 172.28.0.1}], options: {foo: bar}}, labels: {a: b}}',
      'volumes:',
      '  data: {driver: local, driver_opts: {type: tmpfs, device: tmpfs}}',
      '  logs: {}',
    ]), 'docker-compose.yml')
    assert.deepEqual(Object.keys(composition.services), ['main', 'other'])
    assert.equal(composition.services.main.mem_limit, '1g', 'the composition is stored as written')
  })

  for (const key of ['links', 'stdin_open: true', 'logging: {driver: none}', 'container_name: x', 'volumes_from: [other]', 'memswap_limit: 1g', 'runtime: runc', 'platform: linux/arm64']) {
    const name = key.split(':')[0]
    it(`refuses "${name}", which balena's supervisor does not apply either`, () => {
      const line = key.includes(':') ? key : `${key}: [other]`
      refused(composeFile([line]), new RegExp(`docker-compose\\.yml: service "main" uses "${name}", which devices do not apply — remove it`))
    })
  }

  it('still calls a misspelt key unknown', () => {
    refused(composeFile(['cap_ad: [SYS_RAWIO]']), /service "main" has an unknown key "cap_ad" — check its spelling/)
  })

  it('refuses host paths, short and long, and points at the feature labels', () => {
    refused(composeFile(['volumes: ["/dev/shm:/shm"]']), /service "main" mounts the host path "\/dev\/shm" — devices allow named volumes only; host paths come through io\.balena\.features\.\* labels/)
    refused(composeFile(['volumes: ["./config:/config"]']), /mounts the host path "\.\/config"/)
    refused(composeFile(['volumes: [{type: bind, source: /etc, target: /host-etc}]']), /mounts the host path "\/etc"/)
  })

  it('refuses values the device could not apply, naming the key', () => {
    refused(composeFile(['ports: ["eighty"]']), /service "main": "ports" entry "eighty" is not a port mapping/)
    refused(composeFile(['ports: ["8080-8081:80"]']), /"ports" entry "8080-8081:80" maps ranges of different lengths/)
    refused(composeFile(['mem_limit: lots']), /service "main": "mem_limit" must be a size such as "512m"/)
    refused(composeFile(['stop_grace_period: soon']), /"stop_grace_period" must be a duration/)
    refused(composeFile(['healthcheck: {test: [RUN, "true"]}']), /"healthcheck\.test" must be a command string, or a list starting with CMD/)
    refused(composeFile(['devices: ["ttyUSB0"]']), /"devices" entry "ttyUSB0" must be \/dev\/host/)
    refused(composeFile(['cpus: many']), /"cpus" must be a number of CPUs/)
    refused(composeFile(['network_mode: "container:abc"']), /"network_mode" must be host, bridge, none or service:<name>/)
    refused(composeFile(['depends_on: {other: {condition: service_completed_successfully}}'], ['  other:', '    image: busybox']), /"depends_on\.other\.condition" must be service_started or service_healthy/)
  })

  it('refuses references to what the file does not declare', () => {
    refused(composeFile(['depends_on: [db]']), /service "main" depends on "db", which is not a service of this file/)
    refused(composeFile(['network_mode: "service:db"']), /service "main" depends on "db", which is not a service of this file/)
    refused(composeFile(['networks: [backend]']), /service "main" joins network "backend", which the file does not declare under "networks:"/)
    refused(composeFile(['volumes: ["data:/data"]']), /service "main" mounts volume "data", which the file does not declare under "volumes:"/)
  })

  it('refuses network and volume options devices do not apply', () => {
    refused(composeFile([], ['networks:', '  outside: {external: true}']), /docker-compose\.yml: networks "outside" uses "external", which devices do not apply/)
    refused(composeFile([], ['volumes:', '  data: {name: shared}']), /docker-compose\.yml: volumes "data" uses "name", which devices do not apply/)
    refused(composeFile([], ['networks:', '  backend: {ipam: {config: {subnet: x}}}']), /networks "backend": "ipam\.config" must be a list/)
  })
})
