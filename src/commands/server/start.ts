import {readFile, stat} from 'node:fs/promises'
import path from 'node:path'

import {Flags} from '@oclif/core'

import {FlotillaCommand} from '../../cli/base.js'
import {databaseFlag, databaseUrlOf} from '../../cli/database-flag.js'
import {durationFlag} from '../../cli/duration-flag.js'
import {UsageError} from '../../errors.js'
import type {BuildNetwork} from '../../server/builder/docker-builder.js'

const LOG_LEVELS = ['silent', 'fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const
type LogLevel = (typeof LOG_LEVELS)[number]

async function readPem(file: string, flag: string): Promise<string> {
  const text = await readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`${flag} ${file} cannot be read (${error.code ?? error.message})`)
  })
  if (!text.includes('-----BEGIN ')) throw new UsageError(`${flag} ${file} is not a PEM file`)
  return text
}

export default class ServerStart extends FlotillaCommand {
  static override summary = 'Run the local fleet server'
  static override description = `Serves the balena-compatible fleet API on one HTTP port (also the tunnel proxy of flotilla tunnel), over a SQLite database in the data directory (or a PostgreSQL one: --database postgres://… or FLOTILLA_DATABASE_URL), and an SSH port for devices' links and flotilla ssh.
Releases are built for each fleet's CPU architecture (aarch64 as linux/arm64, armv7hf as linux/arm/v7, …); RUN steps for another CPU than this machine's run under emulation, which needs qemu-user-static and binfmt-support: without them a warning says so at start. Image-only services of a compose file are taken from the engine when it has them for the fleet's platform, else pulled (Docker Hub images from --registry-mirror when given).
On the first start with an empty database it creates the admin user from FLOTILLA_ADMIN_EMAIL, FLOTILLA_ADMIN_PASSWORD and FLOTILLA_ADMIN_USERNAME (default "admin"); without a password it generates one and prints it once.
By default it also runs Debian's docker-registry (when installed: apt-get install docker-registry) on a free loopback port, storing images in the data directory; it lets in only who holds a token from this server's /auth/v1/token: the builder pushing its builds, devices pulling their fleet's releases, fleet members deploying.
An external registry (--registry) must be configured the same way: auth.token with realm <server URL>/auth/v1/token, service <its host:port>, issuer flotilla, and rootcertbundle <data dir>/registry-token.crt (made on the first start).
Several servers may share one PostgreSQL database behind a load balancer (HTTP with connection upgrades, and TCP for the SSH port): give each the balancer's --public-url and --public-ssh-port, and an --internal-url the others can reach; an ssh session, tunnel or action arriving at one server reaches a device linked to another through it, and what one learns (new targets, log lines, revoked keys) the others act on. Their secrets and release assets are in the database; a --manage-registry registry is not, so use an external --registry.
Runs until interrupted (Ctrl-C or SIGTERM). Set FLOTILLA_LOG_LEVEL=debug to log every request to stderr.`

  static override examples = [
    '<%= config.bin %> server start',
    '<%= config.bin %> server start --port 8080 --host 0.0.0.0 --public-url http://192.168.1.10:8080',
    '<%= config.bin %> server start --registry 127.0.0.1:5000',
    '<%= config.bin %> server start --no-registry',
    'FLOTILLA_DATABASE_URL=postgres://flotilla:secret@db.example.com:5432/flotilla <%= config.bin %> server start',
    'FLOTILLA_DATABASE_URL=postgres://… <%= config.bin %> server start --host 10.0.0.5 --public-url https://fleet.example.com --public-ssh-port 22 --internal-url http://10.0.0.5:7171',
    '<%= config.bin %> server start --images-dir ./os-images',
    '<%= config.bin %> server start --host 0.0.0.0 --cert fleet.example.com.pem --key fleet.example.com.key',
    'FLOTILLA_ADMIN_EMAIL=me@example.com FLOTILLA_ADMIN_PASSWORD=secret123 <%= config.bin %> server start --data-dir ./fleet-data',
  ]

  static override flags = {
    port: Flags.integer({description: 'HTTP port of the API (0 picks a free one)', default: 7171, min: 0, max: 65_535}),
    host: Flags.string({description: 'address to listen on', default: '127.0.0.1'}),
    'public-url': Flags.string({description: 'URL clients and devices reach this server at, put in the endpoints and config.json it hands out [default: the listening URL]'}),
    'data-dir': Flags.string({description: 'where the database (unless --database) and secrets live [default: <flotilla data dir>/server]'}),
    database: databaseFlag,
    'ssh-port': Flags.integer({description: 'SSH port: devices\' links, and the gateway of flotilla ssh (0 picks a free one)', default: 2222, min: 0, max: 65_535}),
    'public-ssh-port': Flags.integer({description: 'SSH port clients and devices reach the gateway at, when a load balancer or a port mapping stands in front of --ssh-port [default: --ssh-port]', min: 1, max: 65_535}),
    'internal-url': Flags.string({
      description: 'URL the other servers on the same database reach this one\'s HTTP port at, to route ssh sessions, tunnels and actions to the devices linked here [default: the listening URL]',
    }),
    registry: Flags.string({
      description: 'host:port of an external Docker registry to push images to, configured for this server\'s tokens (see the description) [default: run Debian\'s docker-registry on a loopback port]',
    }),
    'no-registry': Flags.boolean({description: 'run without a registry: images stay in this machine\'s Docker engine, so only devices using that engine can run them'}),
    'registry-mirror': Flags.string({description: 'host:port of a Docker Hub mirror the images of image-only services are pulled from when the engine lacks them'}),
    'max-build-context': Flags.integer({description: 'largest build context accepted from a push, in MiB unpacked', default: 2048, min: 1}),
    'max-upload': Flags.integer({description: 'largest upload accepted from a push, in MiB as sent (gzip\'d)', default: 1024, min: 1}),
    'build-timeout': durationFlag({description: 'how long a release\'s build may take before it fails (90s, 30m, 2h; a bare number is minutes)', defaultMs: 60 * 60_000, defaultHelp: '60m'}),
    'build-network': Flags.string({
      description: 'network of the RUN steps of builds: none, the engine\'s default bridge, or the host\'s (host lets any pushed Dockerfile reach this server\'s loopback ports)',
      options: ['none', 'default', 'host'],
      default: 'default',
    }),
    'device-heartbeat-timeout': Flags.integer({description: 'seconds without a state report after which a device reads as offline', default: 1800, min: 1}),
    'log-heartbeat': Flags.integer({description: 'seconds between the newlines an idle log stream sends', default: 58, min: 1}),
    cert: Flags.string({description: 'serve HTTPS with this certificate (PEM file; with --key)', dependsOn: ['key']}),
    key: Flags.string({description: 'private key of --cert (PEM file)', dependsOn: ['cert']}),
    'images-dir': Flags.string({description: 'folder of OS images to publish for "os versions" and "os download": <dir>/<device-type>/<version>/<image>.img[.gz] (+ .bmap)'}),
  }

  /** Whether Debian's registry can be run; says what to install when it cannot. */
  private async registryInstalled(): Promise<boolean> {
    const {registryInstalled} = await import('../../server/registry/managed-registry.js')
    if (await registryInstalled()) return true
    this.output.warn('no Docker registry: images stay in this machine\'s engine, so only devices using it can run them — install Debian\'s docker-registry (apt-get install docker-registry), or name one with --registry')
    return false
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(ServerStart)
    const dataDir = path.resolve(flags['data-dir'] ?? path.join(this.config.dataDir, 'server'))
    const databaseUrl = await databaseUrlOf(flags.database, (message) => this.output.warn(message))
    const imagesDir = flags['images-dir'] ? path.resolve(flags['images-dir']) : undefined
    if (imagesDir && !(await stat(imagesDir).catch(() => undefined))?.isDirectory()) throw new UsageError(`--images-dir ${flags['images-dir']} is not a folder`)
    const tls = flags.cert && flags.key ? {cert: await readPem(flags.cert, '--cert'), key: await readPem(flags.key, '--key')} : undefined
    const {createServer, isWildcardAddress} = await import('../../server/app.js')
    const level = process.env.FLOTILLA_LOG_LEVEL || 'warn'
    if (!LOG_LEVELS.includes(level as LogLevel)) throw new UsageError(`FLOTILLA_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, not "${level}"`)
    if (flags.registry && flags['no-registry']) throw new UsageError('--registry and --no-registry contradict each other — give one of them')
    const manageRegistry = !flags.registry && !flags['no-registry'] && (await this.registryInstalled())
    const server = await createServer({
      dataDir,
      databaseUrl,
      host: flags.host,
      publicUrl: flags['public-url'],
      port: flags.port,
      sshPort: flags['ssh-port'],
      publicSshPort: flags['public-ssh-port'],
      internalUrl: flags['internal-url'],
      registry: flags.registry ?? null,
      manageRegistry,
      builder: {
        uploadLimits: {maxBytes: flags['max-build-context'] * 1024 * 1024, maxUploadBytes: flags['max-upload'] * 1024 * 1024, maxEntries: 200_000},
        network: flags['build-network'] as BuildNetwork,
        timeoutMs: flags['build-timeout'],
        registryMirror: flags['registry-mirror'] ?? null,
      },
      logger: {level: level as LogLevel},
      deviceHeartbeatTimeoutMs: flags['device-heartbeat-timeout'] * 1000,
      logStreamHeartbeatMs: flags['log-heartbeat'] * 1000,
      imagesDir,
      tls,
      version: this.config.version,
      admin: {email: process.env.FLOTILLA_ADMIN_EMAIL, password: process.env.FLOTILLA_ADMIN_PASSWORD, username: process.env.FLOTILLA_ADMIN_USERNAME},
    })
    if (server.createdAdmin) {
      const {username, generatedPassword} = server.createdAdmin
      if (generatedPassword) this.output.line(`created admin user "${username}" with password: ${generatedPassword}`)
      else this.output.info(`created admin user "${username}"`)
    }

    let url: string
    try {
      url = await server.listen()
    } catch (error) {
      await server.close()
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EADDRINUSE') this.error(`port ${flags.port} on ${flags.host} is already in use — choose another with --port`, {exit: 1})
      throw error
    }

    this.output.line(`flotilla server listening on ${url}, SSH on port ${server.address().sshPort}`)
    const {startupEmulationWarning} = await import('../../server/builder/emulation.js')
    const emulationWarning = await startupEmulationWarning(process.arch)
    if (emulationWarning) this.output.warn(emulationWarning)
    const {registry} = server.address()
    if (manageRegistry) this.output.info(`Docker registry (token auth) on ${registry}, storing images under ${path.join(dataDir, 'registry')}`)
    else if (registry) this.output.info(`images go to the registry ${registry}, which must trust the tokens signed by ${path.join(dataDir, 'registry-token.crt')}`)
    if (!flags['public-url'] && isWildcardAddress(flags.host)) {
      this.output.warn(`clients and devices are told to reach this server at ${server.publicUrl()}: set --public-url to the address they can reach`)
    }
    await new Promise<void>((resolve) => {
      const stop = () => {
        process.off('SIGINT', stop)
        process.off('SIGTERM', stop)
        resolve()
      }

      process.on('SIGINT', stop)
      process.on('SIGTERM', stop)
    })
    await server.close()
  }
}
